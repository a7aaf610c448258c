"""The converters' fast paths for common values (plain strings, integers, known object keys, values
taken as they are) decide exactly as the general path does."""

import datetime as dt
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from braze_integration import payloads
from braze_integration.payloads import BrazeType, PayloadError, convert_value


def test_an_object_key_found_valid_once_does_not_let_an_invalid_one_through():
    assert convert_value(BrazeType.OBJECT, {"size": "M"}) == {"size": "M"}
    assert "size" in payloads._GOOD_KEYS
    with pytest.raises(PayloadError, match=r"object key 'si ze'"):
        convert_value(BrazeType.OBJECT, {"size": "M", "si ze": "L"}, where="prefs")


def test_a_key_ending_in_a_newline_is_refused():
    with pytest.raises(PayloadError, match=r"object key"):
        convert_value(BrazeType.OBJECT, {"colour\n": "red"}, where="prefs")


def test_the_key_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(payloads, "_GOOD_KEYS", set())
    monkeypatch.setattr(payloads, "_GOOD_KEYS_MAX", 3)
    convert_value(BrazeType.OBJECT, {f"k{i}": i for i in range(10)})
    assert len(payloads._GOOD_KEYS) == 3


@pytest.mark.parametrize(("value", "problem"), [
    ({"a": "x" * 256}, r"prefs\.a: is 256 characters long"),
    ({"a": [1, 2**63]}, r"prefs\.a\[1\]: is outside the 64-bit integer range"),
    ({"a": {"b": -(2**63) - 1}}, r"prefs\.a\.b: is outside the 64-bit integer range"),
])
def test_nested_values_at_braze_limits_are_refused_with_their_path(value, problem):
    with pytest.raises(PayloadError, match=problem):
        convert_value(BrazeType.OBJECT, value, where="prefs")


def test_nested_values_within_the_limits_are_kept_as_they_are():
    value = {"a": "x" * 255, "n": [2**63 - 1, -(2**63), True, 1.5], "flag": False}
    assert convert_value(BrazeType.OBJECT, value) == value


def test_array_elements_take_the_same_checks_on_the_fast_path():
    assert convert_value(BrazeType.ARRAY, ["a", "x" * 255, 3, True]) == ["a", "x" * 255, 3, True]
    with pytest.raises(PayloadError, match=r"tags\[1\]: is 256 characters long"):
        convert_value(BrazeType.ARRAY, ["a", "x" * 256], where="tags")
    with pytest.raises(PayloadError, match=r"tags\[0\]: arrays hold strings and numbers only"):
        convert_value(BrazeType.ARRAY, [None], where="tags")


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=300),
                    st.decimals(allow_nan=False, allow_infinity=False, places=2))


NESTED = st.recursive(
    SCALARS | st.dates() | st.sampled_from([2**63, -(2**63) - 1, "x" * 255, "x" * 256]),
    lambda children: st.lists(children, max_size=5) | st.tuples(children)
    | st.dictionaries(st.sampled_from(["a", "b c", "d.e", "$f", "g", 7]), children, max_size=4),
    max_leaves=25)


@given(value=NESTED)
def test_a_nested_value_kept_as_it_is_is_exactly_what_the_full_walk_builds(value):
    """The check that keeps an object as it is (no copy) agrees with the walk that converts it: same
    value, same node count, and it never keeps what the walk would change or refuse."""
    nodes = payloads._as_is_nodes(value, 0)
    try:
        walked, walked_nodes = payloads._nested_walk(value, 0)
    except payloads._NestedProblem:
        assert nodes == -1
        return
    if nodes >= 0:
        assert (walked, walked_nodes) == (value, nodes)
        assert json.dumps(walked) == json.dumps(value)  # a tuple or a date would differ here


def test_a_nested_value_taken_as_is_is_not_copied_and_one_to_convert_is():
    plain = {"a": [1, "x", {"b": None}]}
    assert convert_value(BrazeType.OBJECT, plain) is plain
    with_date = {"a": dt.date(2024, 1, 2)}
    assert convert_value(BrazeType.OBJECT, with_date) == {"a": {"$time": "2024-01-02T00:00:00Z"}}
    assert with_date == {"a": dt.date(2024, 1, 2)}


@given(braze_type=st.sampled_from(sorted(payloads.TAKEN_AS_IS)), value=SCALARS)
def test_a_value_taken_as_is_is_exactly_what_its_converter_returns(braze_type, value):
    """The fast check in front of a type's converter never lets through what the converter would change
    or refuse."""
    if not payloads.TAKEN_AS_IS[braze_type](value):
        return
    converted = convert_value(braze_type, value)
    assert type(converted) is type(value) and converted == value


@pytest.mark.parametrize(("braze_type", "value"), [
    (BrazeType.STRING, "x" * 256), (BrazeType.INTEGER, 2**63), (BrazeType.INTEGER, True),
    (BrazeType.FLOAT, float("inf")), (BrazeType.FLOAT, 3), (BrazeType.BOOLEAN, "true"),
])
def test_values_at_or_past_a_limit_go_through_the_converter(braze_type, value):
    assert not payloads.TAKEN_AS_IS[braze_type](value)


def test_sizes_are_the_utf_8_bytes_braze_counts_not_ascii_escapes():
    emoji = "\U0001F600"  # 4 bytes in UTF-8, 12 as an ASCII escape
    # 36 strings of 250 emoji: about 36 KB as Braze counts it, 108 KB if escaped.
    within = {f"k{i}": emoji * 250 for i in range(36)}
    assert convert_value(BrazeType.OBJECT, within) == within
    # 103 of them: 103 KB, with fewer nodes than an ASCII value needs to get there.
    with pytest.raises(PayloadError, match=r"prefs: is 103,\d{3} bytes of JSON; Braze takes at most 100 KB"):
        convert_value(BrazeType.OBJECT, {f"k{i}": emoji * 250 for i in range(103)}, where="prefs")


def test_purchase_properties_stop_at_50_kb_and_event_properties_at_100_kb_nested_or_not():
    plain = {f"p{i:03d}": "x" * 250 for i in range(220)}  # 57,201 bytes, no nesting
    with pytest.raises(PayloadError, match=r"properties: is 57,201 bytes of JSON; Braze takes at most 50 KB"):
        payloads.purchase_object("m-1", product_id="sku", currency="EUR", price=1, time="2026-01-01T00:00:00Z",
                                 properties=plain)
    event = payloads.event_object("m-1", name="visit", time="2026-01-01T00:00:00Z", properties=plain)
    assert event["properties"] == plain
    with pytest.raises(PayloadError, match=r"Braze takes at most 100 KB"):
        payloads.event_object("m-1", name="visit", time="2026-01-01T00:00:00Z",
                              properties={f"p{i:03d}" + "k" * 196: "x" * 255 for i in range(255)})  # 117 KB

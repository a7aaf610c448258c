"""The converters' fast paths for common values (plain strings, integers, known object keys) decide
exactly as the general path does."""

import pytest

from braze_integration import payloads
from braze_integration.payloads import BrazeType, PayloadError, convert_value


def test_an_object_key_found_valid_once_does_not_let_an_invalid_one_through():
    assert convert_value(BrazeType.OBJECT, {"size": "M"}) == {"size": "M"}
    assert "size" in payloads._GOOD_KEYS
    with pytest.raises(PayloadError, match=r"object key 'si ze'"):
        convert_value(BrazeType.OBJECT, {"size": "M", "si ze": "L"}, where="prefs")


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

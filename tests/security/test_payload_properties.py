"""Hostile values through payload building, and hostile bodies through the sandbox's validator.

Properties (hypothesis, no database):
- ``convert_value`` / ``event_object`` / ``purchase_object`` either build something or raise
  ``PayloadError`` naming the field; nothing else escapes.
- Whatever they build can be encoded and is accepted by the sandbox's validator, i.e. what we send
  is valid for Braze; what they refuse, they refuse with a reason.
- The validator itself, fed any JSON body, answers with valid objects / per-object errors or raises
  ``RequestRejected``, and nothing else.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from braze_integration.payloads import (
    BrazeType,
    PayloadError,
    attributes_object,
    convert_value,
    encode,
    event_object,
    purchase_object,
)
from braze_integration.sandbox.validation import RequestRejected, validate_track_request

# Budgets that keep the file to a few seconds; hypothesis' example database stays off (no files left behind).
FAST = settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
PER_TYPE = settings(FAST, max_examples=50)

# Keys a program might hold: empty, dotted, '$'-prefixed, spaces, control characters, very long.
weird_keys = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["", " ", "a.b", "$time", "$add", "inc", "add", "x" * 300, "\x00", "é", "key with space"]
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([10**400, -(10**400), 2**63, -(2**63) - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.sampled_from([Decimal("1e400"), Decimal("-1e400"), Decimal("1e-400"), Decimal("sNaN")]),
    st.text(max_size=20),
    st.text(min_size=250, max_size=300),
    st.sampled_from(
        ["1e999", "-1e999", "NaN", "Infinity", "1e400", " 42 ", "4.0", "true", "False", "2024-02-30"]
    ),
    st.dates(),
    st.datetimes(),
    st.datetimes(timezones=st.timezones()),
    st.sampled_from(
        ["2024-01-01", "2024-01-01T10:00:00Z", "2024-01-01T10:00:00+14:00", "0001-01-01T00:00:00-01:00"]
    ),
)
json_ish = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.tuples(children, children),
        st.dictionaries(weird_keys, children, max_size=6),
    ),
    max_leaves=30,
)


def nested(depth: int, leaf=1):
    value = leaf
    for _ in range(depth):
        value = {"k": value}
    return value


def assert_braze_accepts(obj: dict, array: str) -> None:
    body = json.loads(encode({array: [obj]}))  # encodable (no NaN/inf), and as Braze would parse it
    result = validate_track_request(body)
    assert not result.errors, (result.errors, obj)


@pytest.mark.parametrize("braze_type", list(BrazeType))
@PER_TYPE
@given(value=json_ish)
@example(value=10**400)
@example(value=Decimal("1e400"))
@example(value="1e999999999")
@example(value="-1e999999")
@example(value=["x" * 256])
@example(value={"inc": 5})
@example(value={"$time": "2024-01-01"})
@example(value=[{"a": float("nan")}])
@example(value={"a": {"b": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}})
def test_convert_value_builds_what_braze_accepts_or_refuses_naming_the_field(braze_type, value):
    check_convert_value(braze_type, value)


def check_convert_value(braze_type, value):
    try:
        converted = convert_value(braze_type, value, where="loyalty_x")
    except PayloadError as err:
        assert err.field.startswith("loyalty_x") and err.problem
        return
    assert_braze_accepts(attributes_object("m-1", {"loyalty_x": converted}), "attributes")


# Deep values are tried outside hypothesis: its reporting would recurse through them itself.
@pytest.mark.parametrize("depth", [30, 300, 700, 5000])
def test_deeply_nested_values_are_built_valid_or_refused_never_a_crash(depth):
    for braze_type in BrazeType:
        check_convert_value(braze_type, nested(depth))
        check_convert_value(braze_type, [nested(depth)])
    try:
        obj = event_object("m-1", name="x", time="2024-01-01T00:00:00Z", properties={"a": nested(depth)})
    except PayloadError as err:
        assert err.field.startswith("properties.a")
    else:
        assert_braze_accepts(obj, "events")


def test_a_value_nested_deeper_than_python_can_walk_is_refused_not_a_crash():
    with pytest.raises(PayloadError) as refused:
        convert_value(BrazeType.OBJECT, nested(5000), where="loyalty_summary")
    assert refused.value.field.startswith("loyalty_summary")


def test_a_huge_number_is_refused_or_finite_never_infinite():
    for braze_type in (BrazeType.FLOAT, BrazeType.INTEGER):
        for value in (10**400, Decimal("1e400"), "1e400"):
            try:
                converted = convert_value(braze_type, value, where="n")
            except PayloadError:
                continue
            assert math.isfinite(converted), (braze_type, value, converted)


properties = st.one_of(st.none(), st.dictionaries(weird_keys, json_ish, max_size=8), json_ish)
times = st.one_of(
    st.datetimes(timezones=st.timezones()),
    st.datetimes(),
    st.dates(),
    st.text(max_size=30),
    st.sampled_from(["2024-01-01T10:00:00Z", "2024-13-01", "now", ""]),
)
ids = st.one_of(st.text(min_size=0, max_size=20), st.sampled_from(["m-1", "x" * 1000, "é" * 300]))


@FAST
@given(
    external_id=ids,
    name=st.one_of(st.text(max_size=300), st.sampled_from(["", "$x", "purchase"])),
    time=times,
    props=properties,
    app_id=st.sampled_from(["", "app-1"]),
)
@example(external_id="m-1", name="x", time="2024-01-01T00:00:00Z", props={"big": 10**400}, app_id="")
@example(external_id="m-1", name="x", time="2024-01-01T00:00:00Z", props={"f": float("inf")}, app_id="")
@example(external_id="m-1", name="x", time="2024-01-01T00:00:00Z", props={"t": (Decimal("1E+400"),)}, app_id="")
@example(external_id="m-1", name="x", time="2024-01-01T00:00:00Z", props={"o": {"n": [10**400]}}, app_id="")
def test_event_object_is_valid_for_braze_or_refused_naming_the_field(external_id, name, time, props, app_id):
    try:
        obj = event_object(external_id, name=name, time=time, properties=props, app_id=app_id)
    except PayloadError as err:
        assert err.field and err.problem
        return
    assert_braze_accepts(obj, "events")


@FAST
@given(
    external_id=ids,
    product_id=st.one_of(st.text(max_size=300), scalars),
    currency=st.one_of(st.sampled_from(["EUR", "eur", "EURO", "", "€"]), scalars),
    price=scalars,
    quantity=scalars,
    time=times,
    props=properties,
)
@example(
    external_id="m-1",
    product_id="p",
    currency="EUR",
    price=10**400,
    quantity=1,
    time="2024-01-01T00:00:00Z",
    props=None,
)
@example(
    external_id="m-1",
    product_id="p",
    currency="EUR",
    price=Decimal("1e400"),
    quantity=1,
    time="2024-01-01T00:00:00Z",
    props=None,
)
@example(
    external_id="m-1",
    product_id="p",
    currency="EUR",
    price=1,
    quantity="1e999999999",
    time="2024-01-01T00:00:00Z",
    props=None,
)
def test_purchase_object_is_valid_for_braze_or_refused_naming_the_field(
    external_id, product_id, currency, price, quantity, time, props
):
    try:
        obj = purchase_object(
            external_id,
            product_id=product_id,
            currency=currency,
            price=price,
            quantity=quantity,
            time=time,
            properties=props,
        )
    except PayloadError as err:
        assert err.field and err.problem
        return
    assert_braze_accepts(obj, "purchases")


# --- the sandbox's validator ----------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=10),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(weird_keys, children, max_size=5)
    ),
    max_leaves=40,
)
track_keys = st.sampled_from(
    [
        "external_id",
        "name",
        "time",
        "product_id",
        "currency",
        "price",
        "quantity",
        "properties",
        "app_id",
        "user_alias",
        "braze_id",
        "_merge_objects",
        "_update_existing_only",
        "loyalty_x",
        "$add",
        "inc",
    ]
)
track_objects = st.dictionaries(st.one_of(track_keys, weird_keys), json_values, max_size=8)
track_bodies = st.one_of(
    json_values,
    st.dictionaries(
        st.sampled_from(["attributes", "events", "purchases", "other"]),
        st.one_of(st.lists(st.one_of(track_objects, json_values), max_size=5), json_values),
        max_size=3,
    ),
)


@settings(FAST, max_examples=150)
@given(body=track_bodies)
def test_the_sandbox_validator_answers_any_json_body_with_its_documented_rejection(body):
    check_validator(json.dumps(body))


@pytest.mark.parametrize("depth", [30, 300, 700])
def test_the_sandbox_validator_answers_deep_bodies_with_its_documented_rejection(depth):
    deep = nested(depth)
    for body in (
        {"attributes": [{"external_id": "m", "x": deep}]},
        {"attributes": [{"external_id": "m", "x": [deep]}]},
        {"events": [{"external_id": "m", "name": "e", "time": "2024-01-01", "properties": {"p": deep}}]},
        {
            "attributes": [
                {
                    "external_id": "m",
                    "_merge_objects": True,
                    "x": {"$update": [{"$identifier_key": "k", "$identifier_value": 1, "$new_object": deep}]},
                }
            ]
        },
    ):
        check_validator(json.dumps(body))


def check_validator(raw: str) -> None:
    try:
        decoded = json.loads(raw)  # as the sandbox's server does; deeper than it can decode is its 400
    except RecursionError:
        return
    try:
        result = validate_track_request(decoded)
    except RequestRejected as rejection:
        assert rejection.message
        return
    assert result.processed_count >= 1
    for error in result.errors:
        assert error["type"] and error["input_array"] in ("attributes", "events", "purchases")

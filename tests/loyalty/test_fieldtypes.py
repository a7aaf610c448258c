"""loyaltysync.fieldtypes: each loyalty type's check and conversion, and the errors (no database)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from loyaltysync.fieldtypes import (
    FieldType,
    TypeProblem,
    coerce,
    json_type,
    number_from_text,
    parse_moment,
    string_problem,
    to_boolean,
)

T = FieldType


@pytest.mark.parametrize(
    ("field_type", "value", "stored"),
    [
        (T.STRING, "Berlin", "Berlin"),
        (T.INTEGER, "42", 42),
        (T.INTEGER, 7.0, 7),
        (T.FLOAT, "19.5", 19.5),
        (T.FLOAT, Decimal("2.5"), 2.5),
        (T.BOOLEAN, "TRUE", True),
        (T.DATE, dt.datetime(2021, 6, 30, 12, tzinfo=dt.UTC), "2021-06-30"),
        (T.DATE, "2021-06-30", "2021-06-30"),
        (T.DATETIME, "2026-01-02T10:00:00+01:00", "2026-01-02T09:00:00Z"),
        (T.DATETIME, "2026-01-02T10:00:00", "2026-01-02T10:00:00Z"),
        (T.ARRAY, ["a", 1, 2.5], ["a", 1, 2.5]),
        (T.OBJECT, {"a": {"b": 1}}, {"a": {"b": 1}}),
        (T.ARRAY_OF_OBJECTS, [{"a": 1}], [{"a": 1}]),
    ],
)
def test_coerce_converts_each_type_for_storage(field_type, value, stored):
    assert coerce(field_type, value) == stored


@pytest.mark.parametrize("field_type", T.values)
def test_none_clears_a_value_of_every_type(field_type):
    assert coerce(field_type, None) is None


@pytest.mark.parametrize(
    ("field_type", "value", "message"),
    [
        (T.STRING, 12, "Expected a string."),
        (T.STRING, "x" * 256, "At most 255 characters (got 256)."),
        (T.INTEGER, True, "Expected an integer, got a boolean."),
        (T.INTEGER, "4.5", "Expected an integer."),
        (T.FLOAT, "nan", "Expected a finite number."),
        (T.BOOLEAN, "yes", "Expected true or false."),
        (T.DATE, "30.06.2021", "Expected a date as YYYY-MM-DD."),
        (T.DATETIME, "yesterday", "Expected a date and time in ISO 8601, e.g. 2026-11-25T10:00:00Z."),
        (T.ARRAY, [None], "Element 0: expected a string or a number."),
        (T.OBJECT, {"a.b": 1}, "Key 'a.b': keys must be 1-255 characters without spaces, '.' or '$'."),
        (T.OBJECT, {"colour\n": 1}, "Key 'colour\\n': keys must be 1-255 characters without spaces, '.' or '$'."),
        (T.ARRAY_OF_OBJECTS, [{"a": 1}, "b"], "Element 1: expected an object."),
        ("colour", "red", "Unknown field type 'colour'."),
    ],
)
def test_coerce_refuses_bad_values_saying_why(field_type, value, message):
    with pytest.raises(ValidationError) as caught:
        coerce(field_type, value)
    assert caught.value.messages == [message]


def test_to_boolean_reads_booleans_and_their_text_only():
    assert (to_boolean(True), to_boolean("False"), to_boolean("true")) == (True, False, True)
    for value in ("yes", 1, None):
        with pytest.raises(TypeProblem, match="expected true or false"):
            to_boolean(value)


def test_number_from_text_reads_numbers_and_names_the_problem():
    assert number_from_text(" 1e3 ") == Decimal(1000)
    with pytest.raises(TypeProblem) as caught:
        number_from_text("ten")
    assert caught.value.code == "invalid"
    with pytest.raises(TypeProblem) as caught:
        number_from_text("Infinity")
    assert caught.value.code == "not_finite"


def test_parse_moment_reads_dates_and_times_as_utc_when_no_zone_is_given():
    assert parse_moment("2024-02-29") == dt.date(2024, 2, 29)
    assert parse_moment("2024-02-29T10:00:00Z") == dt.datetime(2024, 2, 29, 10, tzinfo=dt.UTC)
    assert parse_moment("2024-02-29T10:00:00").tzinfo == dt.UTC
    assert parse_moment("29.02.2024") is None and parse_moment(5) is None


def test_string_problem_and_json_type_describe_values_for_messages():
    assert string_problem("ok") is None
    assert string_problem("a\x00b") == "must not contain NUL characters."
    assert string_problem("\ud800") == "contains invalid Unicode (an unpaired surrogate)."
    assert [json_type(v) for v in (None, True, 1, "a", [], {})] == [
        "null", "a boolean", "a number", "a string", "a list", "an object"]


def test_object_sizes_are_the_utf_8_bytes_braze_counts():
    """36 KB of emoji would be 108 KB as ASCII escapes: the value is within Braze's 100 KB."""
    emoji = "\U0001F600"
    value = {f"k{i}": emoji * 250 for i in range(36)}
    assert coerce(T.OBJECT, value) == value
    assert coerce(T.ARRAY_OF_OBJECTS, [value]) == [value]
    with pytest.raises(ValidationError, match="At most 100 KB"):
        coerce(T.OBJECT, {f"k{i}": emoji * 250 for i in range(103)})

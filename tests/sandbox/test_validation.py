"""Pure tests of the sandbox's request validation (no server, no database)."""

from __future__ import annotations

from typing import Any

import pytest

from braze_integration.sandbox.validation import (
    MAX_INPUT_LENGTH_MESSAGE,
    NO_VALID_DATA_MESSAGE,
    RequestRejected,
    ValidationLimits,
    attributes_object_error,
    event_object_error,
    object_counts,
    parse_iso8601,
    purchase_object_error,
    validate_track_request,
)

TIME = "2026-11-25T10:00:00Z"


def attrs(**values: Any) -> dict[str, Any]:
    return {"external_id": "member-1", **values}


def event(**values: Any) -> dict[str, Any]:
    return {"external_id": "member-1", "name": "points_earned", "time": TIME, **values}


def purchase(**values: Any) -> dict[str, Any]:
    return {
        "external_id": "member-1",
        "product_id": "voucher-10",
        "currency": "EUR",
        "price": 10.0,
        "time": TIME,
        **values,
    }


# --- request level -------------------------------------------------------------------------


def test_given_empty_attributes_array_when_validated_then_rejected_as_no_valid_data() -> None:
    with pytest.raises(RequestRejected) as caught:
        validate_track_request({"attributes": []})
    assert caught.value.message == NO_VALID_DATA_MESSAGE
    assert caught.value.errors == []


def test_given_body_without_any_array_when_validated_then_rejected_as_no_valid_data() -> None:
    with pytest.raises(RequestRejected) as caught:
        validate_track_request({"something": 1})
    assert caught.value.message == NO_VALID_DATA_MESSAGE


@pytest.mark.parametrize("body", [[], "text", 3, None])
def test_given_body_that_is_not_an_object_when_validated_then_rejected(body: Any) -> None:
    with pytest.raises(RequestRejected):
        validate_track_request(body)


def test_given_attributes_that_is_not_an_array_when_validated_then_rejected() -> None:
    with pytest.raises(RequestRejected) as caught:
        validate_track_request({"attributes": {"external_id": "member-1"}})
    assert "attributes" in caught.value.message


def test_given_75_objects_across_arrays_when_validated_then_all_accepted() -> None:
    body = {
        "attributes": [attrs(tier="gold")] * 25,
        "events": [event()] * 25,
        "purchases": [purchase()] * 25,
    }
    result = validate_track_request(body)
    assert (len(result.attributes), len(result.events), len(result.purchases)) == (25, 25, 25)
    assert result.errors == []


def test_given_76_objects_in_total_when_validated_then_max_input_length_exceeded() -> None:
    body = {"attributes": [attrs(tier="gold")] * 40, "events": [event()] * 36}
    with pytest.raises(RequestRejected) as caught:
        validate_track_request(body)
    assert caught.value.message == MAX_INPUT_LENGTH_MESSAGE


def test_given_per_array_rule_when_75_in_each_array_then_accepted() -> None:
    limits = ValidationLimits(per_array_limit=75)
    body = {
        "attributes": [attrs(tier="gold")] * 75,
        "events": [event()] * 75,
        "purchases": [purchase()] * 75,
    }
    result = validate_track_request(body, limits)
    assert result.processed_count == 225


def test_given_per_array_rule_when_76_in_one_array_then_max_input_length_exceeded() -> None:
    limits = ValidationLimits(per_array_limit=75)
    with pytest.raises(RequestRejected) as caught:
        validate_track_request({"events": [event()] * 76}, limits)
    assert caught.value.message == MAX_INPUT_LENGTH_MESSAGE


def test_given_some_invalid_objects_when_validated_then_errors_name_array_and_index() -> None:
    body = {
        "attributes": [attrs(tier="gold"), {"tier": "no identifier"}, attrs(points=3)],
        "events": [event(), event(name="")],
    }
    result = validate_track_request(body)
    assert [obj.get("tier") for obj in result.attributes] == ["gold", None]
    assert len(result.events) == 1
    assert [(error["input_array"], error["index"]) for error in result.errors] == [
        ("attributes", 1),
        ("events", 1),
    ]
    assert "external_id" in result.errors[0]["type"]


def test_given_only_invalid_objects_when_validated_then_rejected_with_the_errors() -> None:
    with pytest.raises(RequestRejected) as caught:
        validate_track_request({"attributes": [attrs(bio="x" * 256)]})
    assert caught.value.message == NO_VALID_DATA_MESSAGE
    [error] = caught.value.errors
    assert (error["input_array"], error["index"]) == ("attributes", 0)
    assert "bio" in error["type"]


def test_given_body_when_counting_objects_then_invalid_and_excess_objects_count_too() -> None:
    body = {"attributes": [{}, {}], "events": "nonsense", "purchases": [1]}
    assert object_counts(body) == {"attributes": 2, "events": 0, "purchases": 1}
    assert object_counts(None) == {"attributes": 0, "events": 0, "purchases": 0}


def test_given_small_body_size_when_validated_then_size_checks_are_skipped() -> None:
    limits = ValidationLimits(max_nested_object_bytes=10)
    body = {"attributes": [attrs(address={"city": "Amsterdam"})]}
    with pytest.raises(RequestRejected):
        validate_track_request(body, limits)
    # The caller vouches the whole body is only 5 bytes, so no nested object can exceed 10.
    assert validate_track_request(body, limits, body_size=5).processed_count == 1


# --- identifiers ---------------------------------------------------------------------------


def test_given_no_identifier_when_checked_then_error() -> None:
    assert attributes_object_error({"tier": "gold"}) is not None


def test_given_two_identifiers_when_checked_then_error() -> None:
    problem = attributes_object_error(attrs(braze_id="abc", tier="gold"))
    assert problem is not None and "Exactly one" in problem


def test_given_external_id_of_987_bytes_when_checked_then_valid_and_988_bytes_error() -> None:
    # "é" is two bytes in UTF-8: the limit is on bytes, not characters.
    assert attributes_object_error({"external_id": "a" + "é" * 493, "x": 1}) is None
    problem = attributes_object_error({"external_id": "é" * 494, "x": 1})
    assert problem is not None and "987" in problem


@pytest.mark.parametrize("external_id", [123, "", None, ["member-1"]])
def test_given_external_id_that_is_not_a_non_empty_string_when_checked_then_error(
    external_id: Any,
) -> None:
    assert attributes_object_error({"external_id": external_id, "x": 1}) is not None


def test_given_user_alias_or_braze_id_when_checked_then_valid() -> None:
    alias = {"alias_name": "member-1", "alias_label": "loyalty"}
    assert attributes_object_error({"user_alias": alias, "tier": "gold"}) is None
    assert attributes_object_error({"braze_id": "5f2a", "tier": "gold"}) is None


def test_given_user_alias_without_label_when_checked_then_error() -> None:
    assert attributes_object_error({"user_alias": {"alias_name": "m"}, "tier": "gold"}) is not None


def test_given_update_existing_only_that_is_not_boolean_when_checked_then_error() -> None:
    assert attributes_object_error(attrs(_update_existing_only="yes", tier="gold")) is not None


# --- attribute names and scalar values -----------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {"points": 10, "ratio": 0.5, "opted_in": True, "tier": "gold", "nickname": None},
        {"member_since": "2026-11-25T10:00:00Z", "dob": "1990-01-31"},
        {"first_name": "Ada", "email": "ada@example.com", "country": "NL", "language": "nl"},
        {"tier": "x" * 255},
    ],
)
def test_given_valid_scalar_attributes_when_checked_then_no_error(values: dict[str, Any]) -> None:
    assert attributes_object_error(attrs(**values)) is None


def test_given_string_of_256_characters_when_checked_then_error_names_the_attribute() -> None:
    problem = attributes_object_error(attrs(tier="x" * 256))
    assert problem is not None and "'tier'" in problem and "255" in problem


def test_given_attribute_name_starting_with_dollar_when_checked_then_error() -> None:
    problem = attributes_object_error(attrs(**{"$points": 1}))
    assert problem is not None and "$" in problem


def test_given_attribute_name_of_256_characters_when_checked_then_error() -> None:
    assert attributes_object_error(attrs(**{"a" * 255: 1})) is None
    assert attributes_object_error(attrs(**{"a" * 256: 1})) is not None


def test_given_empty_attribute_name_when_checked_then_error() -> None:
    assert attributes_object_error(attrs(**{"": 1})) is not None


# --- arrays ---------------------------------------------------------------------------------


def test_given_array_at_max_length_when_checked_then_valid_and_one_more_error() -> None:
    limits = ValidationLimits(max_array_length=25)
    assert attributes_object_error(attrs(tags=[str(i) for i in range(25)]), limits) is None
    problem = attributes_object_error(attrs(tags=[str(i) for i in range(26)]), limits)
    assert problem is not None and "25" in problem


def test_given_array_mixing_scalars_and_objects_when_checked_then_error() -> None:
    assert attributes_object_error(attrs(tags=["a", {"b": 1}])) is not None


def test_given_array_element_longer_than_255_when_checked_then_error() -> None:
    assert attributes_object_error(attrs(tags=["x" * 256])) is not None


def test_given_add_and_remove_operations_when_checked_then_valid() -> None:
    assert attributes_object_error(attrs(tags={"add": ["a"]}, badges={"remove": ["b"]})) is None
    assert attributes_object_error(attrs(tags={"add": ["a"], "remove": ["b"]})) is None


def test_given_add_that_is_not_an_array_when_checked_then_error() -> None:
    assert attributes_object_error(attrs(tags={"add": "a"})) is not None


@pytest.mark.parametrize("amount", ["1", True, None, [1]])
def test_given_inc_with_a_non_number_when_checked_then_error(amount: Any) -> None:
    assert attributes_object_error(attrs(visits={"inc": amount})) is not None


def test_given_inc_with_a_number_when_checked_then_valid() -> None:
    assert attributes_object_error(attrs(visits={"inc": -2.5})) is None


# --- nested objects and arrays of objects --------------------------------------------------


def test_given_nested_object_with_valid_time_when_checked_then_valid() -> None:
    address = {"city": "Oslo", "moved_in": {"$time": TIME}, "geo": {"lat": 59.9}}
    assert attributes_object_error(attrs(address=address)) is None


def test_given_nested_object_with_malformed_time_when_checked_then_the_object_fails() -> None:
    problem = attributes_object_error(attrs(tier="gold", address={"moved_in": {"$time": "soon"}}))
    assert problem is not None and "$time" in problem


def test_given_time_object_at_top_level_when_checked_then_error() -> None:
    problem = attributes_object_error(attrs(member_since={"$time": TIME}))
    assert problem is not None and "$time" in problem


@pytest.mark.parametrize("key", ["home city", "home.city", "$city", ""])
def test_given_nested_key_with_space_dot_or_dollar_when_checked_then_error(key: str) -> None:
    assert attributes_object_error(attrs(address={"ok": {key: 1}})) is not None


def test_given_nested_object_over_100_kb_when_checked_then_error() -> None:
    big = {f"k{i}": "x" * 200 for i in range(600)}  # about 125 KB once encoded
    problem = attributes_object_error(attrs(profile=big))
    assert problem is not None and "bytes" in problem


def test_given_array_of_objects_with_time_when_checked_then_valid() -> None:
    pets = [{"name": "Rex", "born": {"$time": TIME}}, {"name": "Tom"}]
    assert attributes_object_error(attrs(pets=pets)) is None


def test_given_array_of_objects_with_bad_key_when_checked_then_error() -> None:
    assert attributes_object_error(attrs(pets=[{"pet name": "Rex"}])) is not None


def test_given_dollar_add_and_remove_when_checked_then_valid() -> None:
    add = {"$add": [{"id": 1, "name": "Rex"}]}
    remove = {"$remove": [{"$identifier_key": "id", "$identifier_value": 1}]}
    assert attributes_object_error(attrs(pets=add, toys=remove)) is None


def test_given_dollar_remove_without_identifier_value_when_checked_then_error() -> None:
    remove = {"$remove": [{"$identifier_key": "id"}]}
    assert attributes_object_error(attrs(pets=remove)) is not None


def test_given_dollar_update_without_merge_objects_when_checked_then_error() -> None:
    update = {"$update": [{"$identifier_key": "id", "$identifier_value": 1, "$new_object": {"age": 3}}]}
    problem = attributes_object_error(attrs(pets=update))
    assert problem is not None and "_merge_objects" in problem
    assert attributes_object_error(attrs(pets=update, _merge_objects=True)) is None


def test_given_merge_objects_that_is_not_boolean_when_checked_then_error() -> None:
    assert attributes_object_error(attrs(address={"city": "Oslo"}, _merge_objects=1)) is not None


def test_given_unknown_dollar_operator_when_checked_then_error() -> None:
    assert attributes_object_error(attrs(pets={"$push": [{"id": 1}]})) is not None


# --- events ---------------------------------------------------------------------------------


def test_given_complete_event_when_checked_then_valid() -> None:
    properties = {"points": 50, "store": "Oslo", "items": ["a"], "meta": {"x": 1}}
    assert event_object_error(event(properties=properties, app_id="app")) is None


@pytest.mark.parametrize(
    "moment", [TIME, "2026-11-25T10:00:00+01:00", "2026-11-25", "2026-11-25T10:00:00.123456"]
)
def test_given_iso_8601_time_when_event_checked_then_valid(moment: str) -> None:
    assert event_object_error(event(time=moment)) is None


@pytest.mark.parametrize("moment", [None, "yesterday", 1732528800, "2026-13-01"])
def test_given_missing_or_malformed_time_when_event_checked_then_error(moment: Any) -> None:
    obj = event(time=moment)
    if moment is None:
        del obj["time"]
    problem = event_object_error(obj)
    assert problem is not None and "time" in problem


@pytest.mark.parametrize("name", [None, "", "$internal", "x" * 256, 5])
def test_given_bad_event_name_when_checked_then_error(name: Any) -> None:
    obj = event(name=name)
    if name is None:
        del obj["name"]
    assert event_object_error(obj) is not None


@pytest.mark.parametrize("key", ["time", "event_name", "$x", ""])
def test_given_reserved_or_bad_property_key_when_event_checked_then_error(key: str) -> None:
    assert event_object_error(event(properties={key: 1})) is not None


def test_given_257_properties_when_event_checked_then_error() -> None:
    assert event_object_error(event(properties={f"p{i}": i for i in range(256)})) is None
    assert event_object_error(event(properties={f"p{i}": i for i in range(257)})) is not None


def test_given_properties_over_100_kb_when_event_checked_then_error() -> None:
    properties = {"list": ["x" * 200] * 600}
    assert event_object_error(event(properties=properties)) is not None


def test_given_property_string_longer_than_255_when_event_checked_then_error() -> None:
    assert event_object_error(event(properties={"note": "x" * 255})) is None
    assert event_object_error(event(properties={"note": "x" * 256})) is not None


def test_given_properties_that_are_not_an_object_when_event_checked_then_error() -> None:
    assert event_object_error(event(properties=["a"])) is not None


def test_given_event_without_identifier_when_checked_then_error() -> None:
    obj = event()
    del obj["external_id"]
    assert event_object_error(obj) is not None


# --- purchases ------------------------------------------------------------------------------


def test_given_complete_purchase_when_checked_then_valid() -> None:
    assert purchase_object_error(purchase(quantity=100, properties={"store": "Oslo"})) is None


@pytest.mark.parametrize("currency", ["eur", "EURO", "E1R", None, 978])
def test_given_currency_not_three_uppercase_letters_when_checked_then_error(currency: Any) -> None:
    problem = purchase_object_error(purchase(currency=currency))
    assert problem is not None and "currency" in problem


@pytest.mark.parametrize("quantity", [0, 101, 1.5, True, "2"])
def test_given_quantity_outside_1_to_100_when_checked_then_error(quantity: Any) -> None:
    problem = purchase_object_error(purchase(quantity=quantity))
    assert problem is not None and "quantity" in problem


@pytest.mark.parametrize("price", ["10.00", None, True])
def test_given_price_that_is_not_a_number_when_checked_then_error(price: Any) -> None:
    assert purchase_object_error(purchase(price=price)) is not None


@pytest.mark.parametrize("missing", ["product_id", "currency", "price", "time"])
def test_given_required_field_missing_when_purchase_checked_then_error(missing: str) -> None:
    obj = purchase()
    del obj[missing]
    problem = purchase_object_error(obj)
    assert problem is not None and missing in problem


@pytest.mark.parametrize("key", ["time", "product_id", "quantity", "event_name", "price", "currency"])
def test_given_reserved_property_key_when_purchase_checked_then_error(key: str) -> None:
    problem = purchase_object_error(purchase(properties={key: 1}))
    assert problem is not None and "reserved" in problem


def test_given_properties_over_50_kb_when_purchase_checked_then_error() -> None:
    assert purchase_object_error(purchase(properties={"list": ["x" * 200] * 200})) is None
    assert purchase_object_error(purchase(properties={"list": ["x" * 200] * 300})) is not None


# --- dates ----------------------------------------------------------------------------------


def test_given_trailing_z_when_parsing_iso_8601_then_utc() -> None:
    parsed = parse_iso8601("2026-11-25T10:00:00Z")
    assert parsed is not None and parsed.utcoffset() is not None
    assert parsed.utcoffset().total_seconds() == 0
    assert parse_iso8601("not a date") is None

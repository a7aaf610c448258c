"""The rules engine: pure, no database."""

from __future__ import annotations

import pytest

from workflows.conditions import (
    MISSING,
    AttributeSchema,
    AttrType,
    Condition,
    ConditionError,
    ConditionSet,
    build_condition,
    lookup,
    parse_text,
)

CONTEXT = {
    "member": {"tier": "Gold", "points_spendable": 120, "birth_date": "1990-05-17", "opted_in_at": "2024-03-01T10:00:00Z",
               "custom_fields": {"vip": True, "tags": ["a", "b"]}, "email": "ada@example.com", "phone": None},
    "event": {"total": 99.9, "items": [{"product_id": "sku-1"}], "data": {"total": 99.9}},
    "previous": {"tier": "Silver", "points_spendable": 120},
}
SCHEMA = AttributeSchema(
    known={"member.tier": AttrType.STRING, "member.points_spendable": AttrType.NUMBER,
           "member.birth_date": AttrType.DATE, "member.opted_in_at": AttrType.DATETIME,
           "member.custom_fields": AttrType.OBJECT, "member.custom_fields.vip": AttrType.BOOLEAN,
           "member.custom_fields.tags": AttrType.LIST, "member.email": AttrType.STRING, "member.phone": AttrType.STRING,
           "previous.tier": AttrType.STRING},
    open_prefixes={"event.data.": AttrType.ANY, "event.": AttrType.ANY},
)


def test_lookup_follows_dotted_paths_into_dicts_and_lists():
    assert lookup(CONTEXT, "member.tier") == "Gold"
    assert lookup(CONTEXT, "event.items.0.product_id") == "sku-1"
    assert lookup(CONTEXT, "member.nope") is MISSING
    assert lookup(CONTEXT, "member.tier.deeper") is MISSING


@pytest.mark.parametrize(("attribute", "operator", "value", "expected"), [
    ("member.tier", "equals", "Gold", True),
    ("member.tier", "equals", "gold", False),
    ("member.tier", "not_equals", "Silver", True),
    ("member.points_spendable", "gt", 100, True),
    ("member.points_spendable", "gt", 120, False),
    ("member.points_spendable", "gte", 120, True),
    ("member.points_spendable", "lt", 120.5, True),
    ("member.points_spendable", "lte", 119, False),
    ("member.tier", "in", ["Gold", "Platinum"], True),
    ("member.tier", "not_in", ["Gold", "Platinum"], False),
    ("member.email", "contains", "@example", True),
    ("member.custom_fields.tags", "contains", "b", True),
    ("member.custom_fields", "contains", "vip", True),
    ("member.custom_fields.vip", "equals", True, True),
    ("member.birth_date", "lt", "2000-01-01", True),
    ("member.opted_in_at", "gte", "2024-03-01", True),  # a date against a date and time compares the days
    ("member.opted_in_at", "gt", "2024-03-01T10:00:01Z", False),
    ("member.phone", "exists", True, False),
    ("member.phone", "exists", False, True),
    ("member.email", "exists", None, True),  # no value means "exists: true"
])
def test_given_a_condition_when_evaluated_then_it_answers_by_its_operator(attribute, operator, value, expected):
    condition = build_condition(SCHEMA, attribute, operator, value)

    assert condition.evaluate(CONTEXT) is expected


def test_free_form_event_data_compares_numbers_and_does_not_match_other_types():
    assert build_condition(SCHEMA, "event.total", "gt", 50).evaluate(CONTEXT)
    assert build_condition(SCHEMA, "event.data.total", "lte", 99.9).evaluate(CONTEXT)
    # a list compared with a number does not match, and does not raise
    assert not build_condition(SCHEMA, "event.items", "gt", 1).evaluate(CONTEXT)


def test_a_missing_attribute_does_not_match_except_negated_operators():
    assert not build_condition(SCHEMA, "event.data.missing", "equals", 1).evaluate(CONTEXT)
    assert not build_condition(SCHEMA, "event.data.missing", "gt", 1).evaluate(CONTEXT)
    assert build_condition(SCHEMA, "event.data.missing", "not_equals", 1).evaluate(CONTEXT)
    assert build_condition(SCHEMA, "event.data.missing", "not_in", [1]).evaluate(CONTEXT)


def test_changed_compares_the_member_with_the_previous_values():
    assert Condition("member.tier", "changed", None, AttrType.STRING).evaluate(CONTEXT)
    assert not Condition("member.points_spendable", "changed", None, AttrType.NUMBER).evaluate(CONTEXT)
    assert Condition("member.points_spendable", "changed", False, AttrType.NUMBER).evaluate(CONTEXT)
    # no previous values (not a field change): nothing changed
    assert not Condition("member.tier", "changed", True, AttrType.STRING).evaluate({"member": {"tier": "Gold"}})


def test_numbers_compare_by_value_not_by_representation():
    assert Condition("x", "equals", 1, AttrType.NUMBER).evaluate({"x": 1.0})
    assert not Condition("x", "equals", 1, AttrType.ANY).evaluate({"x": True})  # true is not 1


def test_condition_sets_combine_with_and_or_and_nest():
    gold = build_condition(SCHEMA, "member.tier", "equals", "Gold")
    rich = build_condition(SCHEMA, "member.points_spendable", "gt", 1000)
    vip = build_condition(SCHEMA, "member.custom_fields.vip", "equals", True)

    assert not ConditionSet((gold, rich), "and").evaluate(CONTEXT)
    assert ConditionSet((gold, rich), "or").evaluate(CONTEXT)
    assert ConditionSet((ConditionSet((rich, vip), "or"), gold), "and").evaluate(CONTEXT)
    assert ConditionSet(()).evaluate(CONTEXT)  # no conditions: every trigger runs


def test_a_set_round_trips_through_its_dict_form():
    original = ConditionSet((build_condition(SCHEMA, "member.tier", "in", ["Gold"]),
                             ConditionSet((build_condition(SCHEMA, "event.total", "gt", 5),), "or")), "and")

    rebuilt = ConditionSet.from_dict(original.to_dict())

    assert rebuilt == original
    assert rebuilt.evaluate(CONTEXT)


def test_explain_names_the_failing_condition_and_the_actual_value():
    rule = ConditionSet((build_condition(SCHEMA, "member.points_spendable", "gt", 500),))

    assert rule.explain(CONTEXT) == "member.points_spendable gt 500 is false (member.points_spendable is 120)"
    assert rule.explain({"member": {"points_spendable": 501}}) == ""


@pytest.mark.parametrize(("attribute", "operator", "value", "field", "words"), [
    ("member.shoe_size", "equals", "1", "attribute", 'Unknown attribute "member.shoe_size"'),
    ("member..tier", "equals", "1", "attribute", "dotted path"),
    ("", "equals", "1", "attribute", "must not be empty"),
    ("member.tier", "gt", "Gold", "operator", '"gt" does not fit member.tier (string)'),
    ("member.custom_fields.vip", "contains", "x", "operator", "does not fit"),
    ("member.tier", "like", "Gold", "operator", '"like" is not an operator'),
    ("event.total", "changed", None, "operator", "member attributes"),
    ("member.points_spendable", "equals", "many", "value", "expected a number"),
    ("member.points_spendable", "in", [], "value", "non-empty list"),
    ("member.birth_date", "lt", "yesterday", "value", "expected a date"),
    ("member.birth_date", "lt", "2020-01-01T10:00:00Z", "value", "without a time"),
    ("member.custom_fields.vip", "equals", "yes", "value", "true or false"),
    ("member.tier", "exists", "sure", "value", "true, false or nothing"),
    ("event.total", "gt", "lots", "value", "a number or a date"),
])
def test_a_rule_that_does_not_fit_raises_one_error_naming_the_field(attribute, operator, value, field, words):
    with pytest.raises(ConditionError) as caught:
        build_condition(SCHEMA, attribute, operator, value)

    assert caught.value.field == field
    assert words in caught.value.message


def test_unknown_attribute_error_lists_known_ones_of_the_same_root():
    with pytest.raises(ConditionError) as caught:
        build_condition(SCHEMA, "member.tierr", "equals", "Gold")

    assert "member.tier" in caught.value.message


def test_paths_below_an_object_attribute_are_allowed_untyped():
    assert SCHEMA.type_of("member.custom_fields.other") == AttrType.ANY
    assert SCHEMA.type_of("member.tier.name") is None  # below a string: nothing


@pytest.mark.parametrize(("attr_type", "operator", "text", "expected"), [
    ("number", "gt", "500", 500),
    ("number", "gt", " 2.5 ", 2.5),
    ("boolean", "equals", "True", True),
    ("string", "equals", " Gold", " Gold"),
    ("string", "in", "Gold, Silver", ["Gold", "Silver"]),
    ("number", "in", "[1, 2]", [1, 2]),
    ("number", "in", "1, 2", [1, 2]),
    ("date", "lt", "2026-01-31", "2026-01-31"),
    ("any", "equals", "100", 100),
    ("any", "equals", '"100"', "100"),
    ("any", "equals", "Gold", "Gold"),
    ("any", "exists", "", None),
    ("object", "equals", '{"a": 1}', {"a": 1}),
])
def test_text_from_a_form_is_read_by_the_attribute_type(attr_type, operator, text, expected):
    assert parse_text(attr_type, operator, text) == expected


def test_text_that_does_not_read_as_the_type_names_the_value():
    with pytest.raises(ConditionError) as caught:
        parse_text("number", "equals", "ten")

    assert caught.value.field == "value"
    assert "not a number" in caught.value.message


def test_build_condition_with_text_checks_the_operator_before_the_value():
    with pytest.raises(ConditionError) as caught:
        build_condition(SCHEMA, "member.tier", "gt", text="not a number either")

    assert caught.value.field == "operator"

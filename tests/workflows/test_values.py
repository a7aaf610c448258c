"""Value specs and templates: pure, no database."""

from __future__ import annotations

import time

import pytest

from workflows.conditions import MISSING
from workflows.values import (
    MAX_RENDER_SECONDS,
    TemplateLimitExceeded,
    ValueSpec,
    ValueSpecError,
    render_template,
    resolve_values,
)

CONTEXT = {
    "member": {"first_name": "Ada", "tier": "Gold", "points_spendable": 120, "custom_fields": {"shoe_size": 38}},
    "event": {"total": 99.9, "currency": "EUR", "occurred_at": "2026-03-04T10:00:00Z",
              "items": [{"product_id": "sku-1", "price": 49.95, "quantity": 2, "bought_on": "2026-03-04"}]},
    "trigger": {"kind": "event"},
}


@pytest.mark.parametrize(("spec", "expected"), [
    (ValueSpec("amount", "float", "event", path="total"), 99.9),
    (ValueSpec("amount", "integer", "member", path="points_spendable"), 120),
    (ValueSpec("size", "string", "member", path="custom_fields.shoe_size"), "38"),
    (ValueSpec("day", "date", "event", path="occurred_at"), "2026-03-04T10:00:00Z"),
    (ValueSpec("items", "array_of_objects", "event", path="items"),
     [{"product_id": "sku-1", "price": 49.95, "quantity": 2, "bought_on": "2026-03-04"}]),
    (ValueSpec("flag", "boolean", "constant", constant="true"), True),
    (ValueSpec("n", "integer", "constant", constant="7"), 7),
    (ValueSpec("tags", "array", "constant", constant='["a", 1]'), ["a", 1]),
    (ValueSpec("meta", "object", "constant", constant='{"source": "loyalty"}'), {"source": "loyalty"}),
    (ValueSpec("greeting", "string", "template", template="{{ member.first_name }} is {{ member.tier|lower }}"),
     "Ada is gold"),
    (ValueSpec("doubled", "integer", "template", template="{{ member.points_spendable|add:member.points_spendable }}"),
     240),
    (ValueSpec("skus", "array", "template",
               template='[{% for i in event.items %}"{{ i.product_id }}"{% if not forloop.last %},{% endif %}{% endfor %}]'),
     ["sku-1"]),
])
def test_given_a_spec_when_resolved_then_the_value_has_its_braze_form(spec, expected):
    assert spec.resolve(CONTEXT) == expected


def test_a_missing_value_is_left_out_unless_required():
    optional = ValueSpec("x", "string", "event", path="nope")
    required = ValueSpec("x", "string", "event", path="nope", required=True)

    assert optional.resolve(CONTEXT) is MISSING
    assert resolve_values([optional, ValueSpec("t", "string", "member", path="tier")], CONTEXT) == {"t": "Gold"}
    with pytest.raises(ValueSpecError) as caught:
        required.resolve(CONTEXT)
    assert caught.value.field == "path"
    assert "x has no value (event.nope is empty or missing)" in caught.value.message


def test_an_empty_template_result_counts_as_no_value():
    assert ValueSpec("x", "string", "template", template="{{ member.nothing }}").resolve(CONTEXT) is MISSING


def test_a_value_of_the_wrong_type_raises_naming_the_attribute():
    spec = ValueSpec("amount", "integer", "event", path="total")  # 99.9 is not an integer

    with pytest.raises(ValueSpecError) as caught:
        spec.resolve(CONTEXT)

    assert caught.value.field == "path"
    assert caught.value.message == "amount: expected an integer, got 99.9"


def test_a_date_from_a_template_is_sent_as_an_iso_date():
    spec = ValueSpec("day", "date", "template", template="{{ event.occurred_at|slice:':10' }}")

    assert spec.resolve(CONTEXT) == "2026-03-04"


@pytest.mark.parametrize(("kwargs", "field", "words"), [
    ({"name": "", "braze_type": "string", "source": "constant"}, "name", "must not be empty"),
    ({"name": "x", "braze_type": "decimal", "source": "constant"}, "braze_type", "not a Braze type"),
    ({"name": "x", "braze_type": "string", "source": "guess"}, "source", "not a value source"),
    ({"name": "x", "braze_type": "string", "source": "event", "path": ""}, "path", "must not be empty"),
    ({"name": "x", "braze_type": "string", "source": "member", "path": "tier name"}, "path", "dotted path"),
    ({"name": "x", "braze_type": "integer", "source": "constant", "constant": "ten"}, "constant", "expected a number"),
    ({"name": "x", "braze_type": "object", "source": "constant", "constant": "{oops"}, "constant", "must be JSON"),
    ({"name": "x", "braze_type": "array", "source": "constant", "constant": '[{"a": 1}]'}, "constant",
     "arrays hold strings and numbers only"),
    ({"name": "x", "braze_type": "string", "source": "template", "template": "{% if %}"}, "template", "does not compile"),
    ({"name": "x", "braze_type": "string", "source": "template", "template": "   "}, "template", "must not be empty"),
])
def test_a_bad_spec_is_refused_when_built_naming_the_field(kwargs, field, words):
    with pytest.raises(ValueSpecError) as caught:
        ValueSpec(**kwargs)

    assert caught.value.field == field
    assert words in caught.value.message


@pytest.mark.parametrize("source", [
    "{% load static %}", "{% include 'base.html' %}", "{% extends 'base.html' %}", "{% debug %}",
    "{% url 'admin:index' %}", "{% csrf_token %}",
])
def test_templates_cannot_load_include_or_dump_anything(source):
    with pytest.raises(ValueSpecError) as caught:
        ValueSpec("x", "string", "template", template=source)

    assert caught.value.field == "template"


def test_templates_cannot_change_the_context():
    context = {"member": {"first_name": "Ada"}, "event": {"items": [1, 2]}}

    text = render_template("{{ member.clear }}{{ event.items.pop }}{{ member.first_name }}", context)

    assert text == "Ada"
    assert context == {"member": {"first_name": "Ada"}, "event": {"items": [1, 2]}}


def test_templates_do_not_escape_html():
    assert render_template("{{ member.name }}", {"member": {"name": "A & B <co>"}}) == "A & B <co>"


@pytest.mark.parametrize(("usage", "name", "ok"), [
    ("attribute", "last_purchase_amount", True),
    ("attribute", "external_id", False),
    ("attribute", "$price", False),
    ("event_property", "time", False),
    ("event_property", "tier", True),
    ("purchase_property", "price", False),
    ("purchase_property", "product_name", True),
])
def test_names_are_checked_for_where_they_are_used(usage, name, ok):
    spec = ValueSpec(name, "string", "constant", constant="x")
    if ok:
        spec.check_name(usage)
    else:
        with pytest.raises(ValueSpecError) as caught:
            spec.check_name(usage)
        assert caught.value.field == "name"


def test_a_spec_round_trips_through_its_dict_form():
    spec = ValueSpec("greeting", "string", "template", template="Hi {{ member.first_name }}", required=True)

    assert ValueSpec.from_dict(spec.to_dict()) == spec


# --- the cost of a template: every render is bounded ---------------------------------------------------

def test_a_width_beyond_the_limit_is_refused_when_the_spec_is_built():
    with pytest.raises(ValueSpecError) as caught:
        ValueSpec("x", "string", "template", template="{{ member.first_name|ljust:'50000000' }}")

    assert caught.value.field == "template"
    assert caught.value.message == 'The filter "ljust:50000000" asks for a width of 50,000,000; at most 1,000.'


def test_a_width_from_the_data_is_checked_before_the_filter_runs():
    with pytest.raises(TemplateLimitExceeded) as caught:
        render_template("{% if member.first_name|center:member.width %}x{% endif %}",
                        {"member": {"first_name": "Ada", "width": 50_000_000}})  # inside an if: Django swallows errors

    assert "a width of 50,000,000; at most 1,000" in caught.value.message


@pytest.mark.parametrize(("source", "words"), [
    ("{% for a in event.items %}{% for b in a.parts %}{% for c in b.parts %}{{ c }}{% endfor %}{% endfor %}"
     "{% endfor %}", "Loops nest at most 2 deep"),
    ("{{ member.points|stringformat:'0100000000d' }}", 'The filter "stringformat" cannot be used'),
    ("{{ member.total|floatformat:'100000' }}", "decimal places of 100,000; at most 20"),
])
def test_templates_beyond_the_static_limits_are_refused_when_built(source, words):
    with pytest.raises(ValueSpecError) as caught:
        ValueSpec("x", "string", "template", template=source)

    assert caught.value.field == "template"
    assert words in caught.value.message


def test_nested_loops_over_large_arrays_stop_at_the_iteration_budget_quickly():
    spec = ValueSpec("x", "string", "template",
                     template="{% for a in event.items %}{% for b in event.items %}.{% endfor %}{% endfor %}")
    context = {"event": {"items": list(range(5000))}}  # 25 million iterations without a budget

    started = time.monotonic()
    with pytest.raises(TemplateLimitExceeded) as caught:
        spec.resolve(context)

    assert time.monotonic() - started < 1.0
    assert caught.value.message == "x: The template went over the limit of 10,000 loop iterations."


def test_a_slow_render_within_the_other_limits_stops_at_the_time_limit():
    # 9,900 iterations (within the budget), each joining 15,000 strings without output: minutes of CPU unbounded.
    source = ('{% for a in event.few %}{% for b in event.few %}{% if event.many|join:"," == "" %}{% endif %}'
              "{% endfor %}{% endfor %}")
    context = {"event": {"few": list(range(99)), "many": [str(n) for n in range(15_000)]}}

    started = time.monotonic()
    with pytest.raises(TemplateLimitExceeded) as caught:
        render_template(source, context)

    assert time.monotonic() - started < MAX_RENDER_SECONDS + 0.5
    assert caught.value.message == f"The template took longer than the limit of {MAX_RENDER_SECONDS:g} s to render."


def test_output_and_values_built_by_filters_are_capped():
    doubling = ("{% with b=member.name|add:member.name %}{% with c=b|add:b %}{% with d=c|add:c %}{{ d }}"
                "{% endwith %}{% endwith %}{% endwith %}")
    with pytest.raises(TemplateLimitExceeded) as caught:
        render_template(doubling, {"member": {"name": "x" * 40_000}})
    assert caught.value.message == 'The filter "add" made a value of 160,000 characters or items; at most 102,400.'

    with pytest.raises(TemplateLimitExceeded) as caught:
        render_template('{% for i in event.items %}{{ event.items|join:"," }}{% endfor %}',
                        {"event": {"items": list(range(5000))}})
    assert caught.value.message == "The template rendered more than the limit of 102,400 characters."


def test_templates_within_the_limits_still_render():
    source = ('{% for i in event.items %}{{ i.product_id|ljust:8 }}{{ i.price|floatformat:2 }};{% endfor %}'
              "{{ member.first_name|upper|center:9 }}")

    assert render_template(source, CONTEXT) == "sku-1   49.95;   ADA   "

"""`braze_config` with triggers and steps: files of before still import, every step kind round-trips
byte for byte, and loops and bad steps are refused with their place."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from loyaltysync.models import CustomAction, CustomField, FieldType, Tier
from tests.config.test_braze_config import export, import_problems, run, write
from workflows.models import Action, Workflow

pytestmark = pytest.mark.django_db(transaction=True)

EVERY_STEP = {
    "name": "Every step", "description": "", "active": True, "priority": 100, "logic": "and",
    "triggers": [{"kind": "event", "action": "opt_in"},
                 {"kind": "field_change", "field": "custom_fields.segment", "from": "", "to": "vip"}],
    "conditions": [],
    "steps": [
        {"kind": "wait", "seconds": 604800},
        {"kind": "filter", "logic": "and",
         "conditions": [{"attribute": "member.purchase_count", "operator": "equals", "value": "0"}],
         "else": [{"kind": "trigger_event", "action": "bought_in_time"}]},
        {"kind": "add_points", "points": 50, "reason": "Nudge"},
        {"kind": "deduct_points", "points": 5, "reason": ""},
        {"kind": "set_tier", "tier": "Gold", "days": 30},
        {"kind": "update_field", "field": "custom_fields.visits", "value": "3", "template": ""},
        {"kind": "send_event", "event_name": "loyalty_nudge", "values": [
            {"name": "points", "type": "integer", "source": "member", "path": "points_spendable",
             "required": False}]},
    ],
}


@pytest.fixture
def program(transactional_db):
    Tier.objects.create(name="Gold", points_threshold=2000, multiplier=Decimal("1.5"))
    CustomField.objects.create(key="segment", label="Segment", type=FieldType.STRING)
    CustomField.objects.create(key="visits", label="Visits", type=FieldType.INTEGER)
    for name in ("bought_in_time", "ping", "pong"):
        CustomAction.objects.create(name=name)


def config(*workflows) -> dict:
    return {"connection": None, "field_mappings": [], "workflows": list(workflows)}


def test_every_step_kind_round_trips_byte_for_byte(program, tmp_path):
    run("import", write(tmp_path, config(EVERY_STEP)))
    first = export()

    assert json.loads(first)["workflows"] == [EVERY_STEP]
    Workflow.objects.all().delete()
    run("import", write(tmp_path, json.loads(first), "again.json"))
    assert export() == first
    filter_step = Action.objects.get(kind="filter")
    assert [a.kind for a in filter_step.else_steps.all()] == ["trigger_event"]
    assert filter_step.filter_conditions.get().attribute == "member.purchase_count"


def test_a_file_of_before_with_one_trigger_and_actions_imports_and_exports_in_the_new_shape(program, tmp_path):
    old = {"name": "Welcome", "trigger": {"kind": "event", "action": "opt_in"},
           "actions": [{"kind": "send_event", "event_name": "joined", "values": []}]}

    run("import", write(tmp_path, config(old)))

    [workflow] = json.loads(export())["workflows"]
    assert workflow["triggers"] == [{"kind": "event", "action": "opt_in"}]
    assert workflow["steps"] == [{"kind": "send_event", "event_name": "joined", "values": []}]
    assert "trigger" not in workflow and "actions" not in workflow
    out, _ = run("import", write(tmp_path, json.loads(export()), "new.json"))
    assert out.startswith("No changes")


def test_workflows_that_start_each_other_in_a_loop_are_refused(program, tmp_path):
    ping = {"name": "Ping", "triggers": [{"kind": "event", "action": "ping"}],
            "steps": [{"kind": "trigger_event", "action": "pong"}]}
    pong = {"name": "Pong", "triggers": [{"kind": "event", "action": "pong"}],
            "steps": [{"kind": "trigger_event", "action": "ping"}]}

    problems = import_problems(write(tmp_path, config(ping, pong)))

    assert problems == [
        'workflows[0].steps: can start itself: "Ping" (trigger_event -> event pong) -> "Pong" '
        '(trigger_event -> event ping) -> "Ping"',
        'workflows[1].steps: can start itself: "Pong" (trigger_event -> event ping) -> "Ping" '
        '(trigger_event -> event pong) -> "Pong"',
    ]
    assert not Workflow.objects.exists()


def test_bad_steps_are_refused_naming_their_place(program, tmp_path):
    bad = {"name": "Bad", "triggers": [{"kind": "event", "action": "opt_in"}],
           "steps": [{"kind": "wait", "seconds": 5},
                     {"kind": "set_tier", "tier": "Platinum"},
                     {"kind": "filter", "else": [{"kind": "trigger_event", "action": "checkout"}]},
                     {"kind": "update_field", "field": "custom_fields.visits", "value": "many"}]}

    problems = import_problems(write(tmp_path, config(bad)))

    assert [p.split(": ", 1)[0] for p in problems] == [
        "workflows[0].steps[0].seconds", "workflows[0].steps[1].tier", "workflows[0].steps[2].else[0].action",
        "workflows[0].steps[3].value"]
    assert "at least 60 seconds" in problems[0]
    assert "has an effect in the loyalty program" in problems[2]

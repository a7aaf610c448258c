"""Creating workflows in tests: the workflow's fields and its (first) trigger's in one call."""

from __future__ import annotations

from workflows.models import Trigger, Workflow

# The names tests used when the trigger was a set of columns on the workflow -> the Trigger field.
TRIGGER_FIELDS = {"trigger_kind": "kind", "trigger_action": "action", "trigger_field": "field",
                  "trigger_from": "from_value", "trigger_to": "to_value", "schedule_frequency": "frequency",
                  "schedule_time": "time", "schedule_weekday": "weekday", "schedule_day": "day",
                  "schedule_month": "month"}


def make_workflow(**fields) -> Workflow:
    """``make_workflow(name="W", trigger_kind="event", trigger_action="checkout", priority=5)``."""
    trigger = {TRIGGER_FIELDS[name]: fields.pop(name) for name in list(fields) if name in TRIGGER_FIELDS}
    workflow = Workflow.objects.create(**fields)
    Trigger.objects.create(workflow=workflow, **trigger)
    workflow.refresh_from_db()  # the trigger moved the version on
    return workflow


def trigger_of(**fields) -> Trigger:
    """An unsaved trigger from the old column names (for validation tests)."""
    return Trigger(**{TRIGGER_FIELDS.get(name, name): value for name, value in fields.items()})

"""The step kinds of a workflow beyond the Braze actions: what each one holds and how it is checked.

A workflow is an ordered list of steps. The Braze actions (sync data, send event, send purchase)
queue outbox items; the others wait, filter, or change the member through the loyalty services
(``runner.py`` runs them). ``STEP_FIELDS`` is the one list of each kind's settings, by the names
the configuration file uses and the ``Action`` fields that hold them: the model, the admin's
fields-per-kind script, the snapshot and ``braze_config`` all read it.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError

from loyaltysync.fieldtypes import coerce
from loyaltysync.models import CustomAction, CustomField, FieldType, Tier

from .context import CUSTOM_PREFIX
from .values import ValueSpecError, compile_template

SYNC_DATA, SEND_EVENT, SEND_PURCHASE = "sync_data", "send_event", "send_purchase"
WAIT, FILTER = "wait", "filter"
ADD_POINTS, DEDUCT_POINTS, SET_TIER, UPDATE_FIELD, TRIGGER_EVENT = (
    "add_points", "deduct_points", "set_tier", "update_field", "trigger_event")
BRAZE_KINDS = frozenset({SYNC_DATA, SEND_EVENT, SEND_PURCHASE})
LOYALTY_KINDS = frozenset({ADD_POINTS, DEDUCT_POINTS, SET_TIER, UPDATE_FIELD, TRIGGER_EVENT})

MIN_WAIT_SECONDS = 60  # Antavo's shortest wait: one minute
MAX_POINTS = 100_000_000
# Actions the loyalty domain gives an effect (or records itself): a workflow records custom actions only.
EFFECT_ACTIONS = frozenset({"opt_in", "opt_out", "profile", "checkout", "refund", "partial_refund", "point_add",
                            "point_spend", "point_sub", "tier_reached", "tier_lost", "points_spendable",
                            "points_expired"})
STRUCTURED_TYPES = frozenset({FieldType.ARRAY, FieldType.OBJECT, FieldType.ARRAY_OF_OBJECTS})

# Step kind -> {the file's key: the Action field}. Braze actions keep theirs in braze_config.ACTION_KEYS.
STEP_FIELDS: dict[str, dict[str, str]] = {
    WAIT: {"seconds": "seconds"},
    FILTER: {"logic": "logic"},
    ADD_POINTS: {"points": "points", "reason": "reason"},
    DEDUCT_POINTS: {"points": "points", "reason": "reason"},
    SET_TIER: {"tier": "tier", "days": "tier_days"},
    UPDATE_FIELD: {"field": "field", "value": "value", "template": "template"},
    TRIGGER_EVENT: {"action": "action"},
}
# Step kind -> the Action fields the admin shows for it (the rest are hidden by workflow_steps.js).
ADMIN_FIELDS: dict[str, list[str]] = {
    SYNC_DATA: ["merge_objects", "values_list"],
    SEND_EVENT: ["event_name", "values_list"],
    SEND_PURCHASE: ["items_path", "currency_path", "values_list"],
    WAIT: ["wait_days", "wait_hours", "wait_minutes"],
    **{kind: list(fields.values()) for kind, fields in STEP_FIELDS.items() if kind != WAIT},
}


def duration_text(seconds: int | None) -> str:
    """``604800`` -> ``"7 days"``, ``5400`` -> ``"1 hour 30 minutes"``."""
    if not seconds:
        return "0 minutes"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n} {unit}{'' if n == 1 else 's'}" for n, unit in
             ((days, "day"), (hours, "hour"), (minutes, "minute"), (secs, "second")) if n]
    return " ".join(parts)


def step_label(kind: str, kind_label: str, keys: dict[str, Any]) -> str:
    """A step in a few words, as the run log and the flow picture show it."""
    match kind:
        case "wait":
            return f"Wait {duration_text(keys.get('seconds'))}"
        case "add_points" | "deduct_points":
            return f"{'Add' if kind == ADD_POINTS else 'Deduct'} {keys.get('points')} points"
        case "set_tier":
            days = keys.get("days")
            return f"Set tier {keys.get('tier')}" + (f" for {days} days" if days else "")
        case "update_field":
            return f"Set {keys.get('field')}"
        case "trigger_event":
            return f"Record event {keys.get('action')}"
        case "filter":
            return "Filter"
    return kind_label


def custom_field_key(field: str) -> str:
    return field[len(CUSTOM_PREFIX):] if field.startswith(CUSTOM_PREFIX) else ""


def custom_value(field_type: str, text: str) -> Any:
    """The text of an update-field step (a constant or a rendered template) as the field's value;
    raises ``ValidationError`` in the words of the loyalty domain."""
    value: Any = text
    if field_type in STRUCTURED_TYPES:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValidationError(f"Expected JSON ({err.msg}).") from None
    return coerce(field_type, value)


def step_problems(kind: str, step: Any) -> dict[str, str]:
    """What is wrong with a step of ``kind`` (an ``Action``), by field."""
    errors: dict[str, str] = {}
    match kind:
        case "wait":
            if step.seconds is None or step.seconds < MIN_WAIT_SECONDS:
                errors["seconds"] = f"A wait is at least {MIN_WAIT_SECONDS} seconds (one minute)."
        case "add_points" | "deduct_points":
            if not step.points or step.points > MAX_POINTS:
                errors["points"] = f"Give the points: a whole number from 1 to {MAX_POINTS}."
            step.reason = (step.reason or "").strip()
        case "set_tier":
            step.tier = (step.tier or "").strip()
            names = list(Tier.objects.values_list("name", flat=True))
            if step.tier not in names:
                shown = ", ".join(names) or "none defined yet"
                errors["tier"] = (f'"{step.tier}" is not a tier; use one of: {shown}.' if step.tier
                                  else f"Choose the tier: {shown}.")
            if step.tier_days == 0:
                errors["tier_days"] = "Hold the tier at least one day, or leave it empty."
        case "update_field":
            errors.update(_update_field_problems(step))
        case "trigger_event":
            step.action = (step.action or "").strip()
            from .models import ACTION_NAME

            if not ACTION_NAME.match(step.action):
                errors["action"] = "An action is 1-64 lower-case letters, digits or underscores, starting with a letter."
            elif step.action in EFFECT_ACTIONS:
                errors["action"] = (f'"{step.action}" has an effect in the loyalty program or is recorded by it; '
                                    "record a custom action.")
            elif step.action not in _declared_actions(step):
                errors["action"] = (f'"{step.action}" is not a declared custom action; declare it in the admin '
                                    "(Custom actions) first.")
    return errors


def _declared_actions(step: Any) -> set[str]:
    """The custom actions a step may record: those being imported with it, else the declared ones."""
    workflow = step._meta.get_field("workflow").get_cached_value(step, None)  # the one being edited, if any
    pending = getattr(workflow, "pending_custom_actions", None)
    return set(pending) if pending is not None else set(CustomAction.objects.values_list("name", flat=True))


def _update_field_problems(step: Any) -> dict[str, str]:
    step.field = (step.field or "").strip()
    types = dict(CustomField.objects.values_list("key", "type"))
    key = custom_field_key(step.field)
    if key not in types:
        shown = ", ".join(f"{CUSTOM_PREFIX}{name}" for name in sorted(types)) or "none defined yet"
        return {"field": f'"{step.field}" is not a custom field; use one of: {shown}.' if step.field
                else f"Choose the custom field: {shown}."}
    if step.value and step.template:
        return {"template": "Give a constant value or a template, not both."}
    if step.template:
        try:
            compile_template(step.template)
        except ValueSpecError as err:
            return {"template": f"The template {err.message}"}
        return {}
    if step.value == "":
        return {}  # clears the field
    try:
        custom_value(types[key], step.value)
    except ValidationError as err:
        return {"value": f"{step.field} ({types[key]}): {' '.join(err.messages)}"}
    return {}

"""The shape of the configuration file's workflow part: the keys of each object, their types and
defaults, and which model field each trigger key fills."""

from __future__ import annotations

import re

from braze_integration.config import Key

from .models import ActionKind, TriggerKind, Weekday

TOP_KEYS = {"connection": Key(object), "field_mappings": Key(object), "workflows": Key(object),
            "custom_actions": Key(object, None)}
WORKFLOW_KEYS = {
    "name": Key(str), "description": Key(str, ""), "active": Key(bool, True), "priority": Key(int, 100),
    "triggers": Key(list, None), "logic": Key(str, "and"), "conditions": Key(list, []), "steps": Key(list, None),
    # The shape of files written before several triggers and steps: read, never written.
    "trigger": Key(object, None), "actions": Key(list, None),
}
KIND_KEYS = {"kind": Key(str)}
TIME_KEY = Key(str, "09:00")
# Trigger keys by kind -> (the file's key, the Trigger field).
TRIGGER_KEYS: dict[str, dict[str, tuple[Key, str]]] = {
    TriggerKind.EVENT: {"action": (Key(str, ""), "action")},
    TriggerKind.FIELD_CHANGE: {"field": (Key(str, ""), "field"), "from": (Key(str, ""), "from_value"),
                               "to": (Key(str, ""), "to_value")},
    TriggerKind.DATE: {"frequency": (Key(str, ""), "frequency"), "time": (TIME_KEY, "time"),
                       "weekday": (Key(str, None, nullable=True), "weekday"),
                       "day": (Key(int, None, nullable=True), "day"),
                       "month": (Key(int, None, nullable=True), "month")},
    TriggerKind.ANNIVERSARY: {"field": (Key(str, ""), "field"), "time": (TIME_KEY, "time")},
}
ACTION_KEYS: dict[str, dict[str, Key]] = {
    ActionKind.SYNC_DATA: {"merge_objects": Key(bool, False)},
    ActionKind.SEND_EVENT: {"event_name": Key(str, "")},
    ActionKind.SEND_PURCHASE: {"items_path": Key(str, "items"), "currency_path": Key(str, "currency")},
}
# The other steps' keys, by the names in steps.STEP_FIELDS; a filter also has "conditions" and "else".
STEP_KEYS: dict[str, dict[str, Key]] = {
    ActionKind.WAIT: {"seconds": Key(int)},
    ActionKind.FILTER: {"logic": Key(str, "and")},
    ActionKind.ADD_POINTS: {"points": Key(int), "reason": Key(str, "")},
    ActionKind.DEDUCT_POINTS: {"points": Key(int), "reason": Key(str, "")},
    ActionKind.SET_TIER: {"tier": Key(str), "days": Key(int, None, nullable=True)},
    ActionKind.UPDATE_FIELD: {"field": Key(str), "value": Key(str, ""), "template": Key(str, "")},
    ActionKind.TRIGGER_EVENT: {"action": Key(str)},
}
FILTER_KEYS = {"conditions": Key(list, []), "else": Key(list, [])}
CONDITION_KEYS = {"attribute": Key(str), "operator": Key(str, "equals"), "value": Key(str, "")}
VALUE_KEYS = {"name": Key(str), "type": Key(str), "source": Key(str), "path": Key(str, ""),
              "constant": Key(str, ""), "template": Key(str, ""), "required": Key(bool, False)}
VALUE_OPTIONAL_TEXTS = ("path", "constant", "template")  # written only when not empty
WEEKDAYS = {label.lower(): value for value, label in Weekday.choices}
TIME_TEXT = re.compile(r"^\d{2}:\d{2}(:\d{2})?\Z")
# Trigger fields -> the file's keys where they differ.
TRIGGER_FIELD_KEYS = {model_field: key for keys in TRIGGER_KEYS.values() for key, (_spec, model_field) in keys.items()}

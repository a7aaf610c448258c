"""Configuration as code: the whole configuration (connection, field mappings, workflows) as one
JSON file, and back.

The Braze part comes from ``braze_integration.config``; this module adds the workflows and puts
the file together. A workflow is identified by its name: importing updates the workflow of that
name, creates the ones that are new and deletes the ones the file does not have. Every object is
validated by its model's ``full_clean()`` (the admin's rules) before anything is written, and a
file with any problem changes nothing.

A workflow in the file::

    {"name": "Welcome", "description": "", "active": true, "priority": 20, "logic": "and",
     "trigger": {"kind": "event", "action": "opt_in"},
     "conditions": [{"attribute": "member.tier", "operator": "equals", "value": "Gold"}],
     "actions": [{"kind": "send_event", "event_name": "joined",
                  "values": [{"name": "tier", "type": "string", "source": "member", "path": "tier",
                              "required": false}]}]}

The trigger holds the keys of its kind only (``TRIGGER_KEYS``), an action those of its kind
(``ACTION_KEYS``); positions are the order of the lists.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from braze_integration import services as braze_services
from braze_integration.config import (
    API_KEY_ENV_DEFAULT,
    BrazeImport,
    ConfigInvalid,
    Key,
    Problems,
    Read,
    braze_config_apply,
    braze_config_export,
    braze_config_read,
    config_dump,
    config_parse,
    full_resync_cost,
    model_problems,
    place_index,
    place_key,
    read_list,
    read_object,
    show,
)
from braze_integration.models import mapped_attribute_collision
from loyaltysync.models import Member

from . import services
from .config_custom_actions import (
    custom_actions_apply,
    custom_actions_export,
    custom_actions_read,
    trigger_action_problem,
)
from .models import ACTION_NAME, Action, ActionKind, ActionValue, Condition, TriggerKind, Weekday, Workflow

TOP_KEYS = {"connection": Key(object), "field_mappings": Key(object), "workflows": Key(object),
            "custom_actions": Key(object, None)}
WORKFLOW_KEYS = {
    "name": Key(str), "description": Key(str, ""), "active": Key(bool, True), "priority": Key(int, 100),
    "trigger": Key(object), "logic": Key(str, "and"), "conditions": Key(list, []), "actions": Key(list, []),
}
_KIND = {"kind": Key(str)}
_TIME = Key(str, "09:00")
# Trigger keys by kind -> (the file's key, the Workflow field).
TRIGGER_KEYS: dict[str, dict[str, tuple[Key, str]]] = {
    TriggerKind.EVENT: {"action": (Key(str, ""), "trigger_action")},
    TriggerKind.FIELD_CHANGE: {"field": (Key(str, ""), "trigger_field"), "from": (Key(str, ""), "trigger_from"),
                               "to": (Key(str, ""), "trigger_to")},
    TriggerKind.DATE: {"frequency": (Key(str, ""), "schedule_frequency"), "time": (_TIME, "schedule_time"),
                       "weekday": (Key(str, None, nullable=True), "schedule_weekday"),
                       "day": (Key(int, None, nullable=True), "schedule_day"),
                       "month": (Key(int, None, nullable=True), "schedule_month")},
    TriggerKind.ANNIVERSARY: {"field": (Key(str, ""), "trigger_field"), "time": (_TIME, "schedule_time")},
}
ACTION_KEYS: dict[str, dict[str, Key]] = {
    ActionKind.SYNC_DATA: {"merge_objects": Key(bool, False)},
    ActionKind.SEND_EVENT: {"event_name": Key(str, "")},
    ActionKind.SEND_PURCHASE: {"items_path": Key(str, "items"), "currency_path": Key(str, "currency")},
}
CONDITION_KEYS = {"attribute": Key(str), "operator": Key(str, "equals"), "value": Key(str, "")}
VALUE_KEYS = {"name": Key(str), "type": Key(str), "source": Key(str), "path": Key(str, ""),
              "constant": Key(str, ""), "template": Key(str, ""), "required": Key(bool, False)}
VALUE_OPTIONAL_TEXTS = ("path", "constant", "template")  # written only when not empty
WEEKDAYS = {label.lower(): value for value, label in Weekday.choices}
_TIME_TEXT = re.compile(r"^\d{2}:\d{2}(:\d{2})?$")
# Workflow fields whose errors belong to a trigger key.
_TRIGGER_PLACES = {model_field: f"trigger.{key}" for keys in TRIGGER_KEYS.values()
                   for key, (_spec, model_field) in keys.items()} | {"trigger_kind": "trigger.kind"}


# --- export -------------------------------------------------------------------------------------

def _time_text(value: dt.time) -> str:
    return value.strftime("%H:%M" if value.second == 0 else "%H:%M:%S")


def _trigger_data(workflow: Workflow) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": workflow.trigger_kind}
    for key, (_spec, model_field) in TRIGGER_KEYS.get(workflow.trigger_kind, {}).items():
        value = getattr(workflow, model_field)
        if model_field == "schedule_time":
            value = _time_text(value)
        elif model_field == "schedule_weekday" and value is not None:
            value = Weekday(value).label.lower()
        data[key] = value
    return data


def _value_data(value: ActionValue) -> dict[str, Any]:
    data = {"name": value.name, "type": value.braze_type, "source": value.source, "required": value.required}
    data.update({key: getattr(value, key) for key in VALUE_OPTIONAL_TEXTS if getattr(value, key)})
    return data


def _action_data(action: Action, values: list[ActionValue]) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": action.kind, "values": [_value_data(value) for value in values]}
    data.update({key: getattr(action, key) for key in ACTION_KEYS.get(action.kind, {})})
    return data


def _workflow_data(workflow: Workflow, conditions: list[Condition],
                   actions: list[tuple[Action, list[ActionValue]]]) -> dict[str, Any]:
    return {
        "name": workflow.name,
        "description": workflow.description,
        "active": workflow.active,
        "priority": workflow.priority,
        "trigger": _trigger_data(workflow),
        "logic": workflow.logic,
        "conditions": [{"attribute": c.attribute, "operator": c.operator, "value": c.value} for c in conditions],
        "actions": [_action_data(action, values) for action, values in actions],
    }


def workflows_export() -> list[dict[str, Any]]:
    """Every workflow as the file holds it, by name; conditions and actions in the order they run."""
    # Sorted here, not by the database: collations differ between databases.
    workflows = sorted(Workflow.objects.prefetch_related("conditions", "actions__values"), key=lambda w: w.name)
    return [
        _workflow_data(workflow, list(workflow.conditions.all()),
                       [(action, list(action.values.all())) for action in workflow.actions.all()])
        for workflow in workflows
    ]


def config_export(*, api_key_env: str = API_KEY_ENV_DEFAULT) -> str:
    """The whole configuration as the file's text: byte-identical for equal configurations, no
    database ids, no API key (``api_key_env`` names the variable an import reads it from)."""
    return config_dump({**braze_config_export(api_key_env=api_key_env), "custom_actions": custom_actions_export(),
                        "workflows": workflows_export()})


# --- import -------------------------------------------------------------------------------------

@dataclass
class _WorkflowEntry:
    workflow: Workflow
    conditions: list[Condition]
    actions: list[tuple[Action, list[ActionValue]]]
    data: dict[str, Any]
    existing: dict[str, Any] | None
    place: str = ""


@dataclass
class ConfigImport:
    """What an import changed (or, with ``dry_run``, would change)."""

    dry_run: bool
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    remote_fields_to_resync: list[str] = field(default_factory=list)
    remote_fields_to_clear: list[str] = field(default_factory=list)  # attributes no mapping sends any more
    workspace_changed: bool = False
    full_resync_cost: str = ""  # braze_resync --all, in words, when the workspace changed


def config_import(*, text: str, dry_run: bool = False, environ: Mapping[str, str] | None = None) -> ConfigImport:
    """Apply a configuration file: the active connection (created or updated; the API key from the
    environment variable the file names), its field mappings and the workflows, replaced by the file's.

    Everything is checked first with the admin's rules; any problem raises ``ConfigInvalid`` with
    every problem and its place, and nothing changes. One transaction. ``dry_run`` only reports.
    """
    data = config_parse(text)
    problems = Problems()
    top = read_object(data, "", TOP_KEYS, problems)
    if top is None:
        raise ConfigInvalid(problems.items)
    with transaction.atomic():
        braze = braze_config_read(connection_data=top.values.get("connection"),
                                  mappings_data=top.values.get("field_mappings", []), problems=problems,
                                  environ=os.environ if environ is None else environ,
                                  connection_given="connection" not in top.bad)
        actions = custom_actions_read(top.values.get("custom_actions"), problems, given="custom_actions" in data)
        entries = _workflows_read(top.values.get("workflows", []), problems)
        _mapped_attributes_check(braze, entries, problems)
        _trigger_actions_check(entries, actions.declared, problems)
        if problems:
            raise ConfigInvalid(problems.items)
        report = ConfigImport(dry_run=dry_run, changes=[*braze.changes, *actions.changes],
                              warnings=list(braze.warnings))
        removed = _workflow_changes(entries, report)
        if braze.connection is not None and braze.connection.active and Member.objects.exists():
            report.remote_fields_to_resync = list(braze.remote_fields_to_resync)
            report.remote_fields_to_clear = list(braze.remote_fields_to_clear)
        if not dry_run:
            custom_actions_apply(actions)
            _apply(braze, entries, removed)
        if braze.workspace_changed and Member.objects.exists():
            report.workspace_changed = True
            report.full_resync_cost = full_resync_cost()
    if not dry_run:
        braze_services.sync_config_invalidate()
        services.workflow_config_changed()
    return report


def _workflows_read(value: Any, problems: Problems) -> list[_WorkflowEntry]:
    existing = {workflow["name"]: workflow for workflow in workflows_export()}
    entries: list[_WorkflowEntry] = []
    seen: dict[str, str] = {}
    for index, item in enumerate(read_list(value, "workflows", problems)):
        place = place_index("workflows", index)
        entry = _workflow_read(item, place, problems, existing)
        if entry is None:
            continue
        name = entry.workflow.name
        if name and name in seen:
            problems.add(place_key(place, "name"), f"{show(name)} is used twice (also {seen[name]}): "
                                                   "workflows are identified by their names")
        seen.setdefault(name, place)
        entries.append(entry)
    return entries


def _workflow_read(item: Any, place: str, problems: Problems,
                   existing: dict[str, dict[str, Any]]) -> _WorkflowEntry | None:
    read = read_object(item, place, WORKFLOW_KEYS, problems)
    if read is None:
        return None
    name = read.values.get("name", "")
    workflow = Workflow.objects.filter(name=name).first() if isinstance(name, str) and name else None
    workflow = workflow or Workflow()
    for key in ("name", "description", "active", "priority", "logic"):
        if key in read.values:
            setattr(workflow, key, read.values[key])
    skip = set(read.bad)
    kind_known = _trigger_read(read.values.get("trigger"), place_key(place, "trigger"), workflow, problems, skip,
                               missing="trigger" in read.bad)
    model_problems(workflow, place, problems, keys=_TRIGGER_PLACES, skip=skip,
                   exclude=[name for name, key in _TRIGGER_PLACES.items() if key in skip] + list(read.bad))
    conditions: list[Condition] = []
    for index, row in enumerate(read.values.get("conditions", [])):
        condition = _row_read(row, place_index(place_key(place, "conditions"), index), CONDITION_KEYS, problems,
                              Condition(workflow=workflow, position=index), check=kind_known, parent="workflow")
        if condition is not None:
            conditions.append(condition)
    actions = []
    for index, row in enumerate(read.values.get("actions", [])):
        action = _action_read(row, place_index(place_key(place, "actions"), index), workflow, index, problems,
                              check=kind_known)
        if action is not None:
            actions.append(action)
    data = _workflow_data(workflow, conditions, actions)
    return _WorkflowEntry(workflow, conditions, actions, data, existing.get(workflow.name), place)


def _trigger_read(value: Any, place: str, workflow: Workflow, problems: Problems, skip: set[str], *,
                  missing: bool) -> bool:
    """Set the trigger's fields on ``workflow``; whether its kind is known (rows can only be checked then)."""
    kind = value.get("kind") if isinstance(value, dict) else None
    if not isinstance(kind, str) or kind not in TRIGGER_KEYS:
        if isinstance(value, dict):
            problems.add(place_key(place, "kind"), f"expected one of {', '.join(TRIGGER_KEYS)}")
        elif not missing:
            read_object(value, place, {}, problems)  # says what it is instead of an object
        skip.update(_TRIGGER_PLACES.values())  # the trigger's rules depend on its kind
        return False
    keys = TRIGGER_KEYS[kind]
    read = read_object(value, place, _KIND | {key: spec for key, (spec, _f) in keys.items()}, problems)
    workflow.trigger_kind = kind
    default = Workflow()
    for model_field in _TRIGGER_PLACES:  # fields of other kinds go back to their defaults
        if model_field != "trigger_kind":
            setattr(workflow, model_field, getattr(default, model_field))
    for key, (_spec, model_field) in keys.items():
        if key in read.bad:
            skip.add(f"trigger.{key}")
            continue
        converted = _trigger_value(key, read.values[key], place_key(place, key), problems)
        if converted is _BAD:
            skip.add(f"trigger.{key}")
        else:
            setattr(workflow, model_field, converted)
    return True


_BAD = object()


def _trigger_value(key: str, value: Any, place: str, problems: Problems) -> Any:
    if key == "time":
        try:
            if not _TIME_TEXT.match(value):
                raise ValueError
            return dt.time.fromisoformat(value)
        except ValueError:
            problems.add(place, f"{show(value)} is not a time of day (HH:MM)")
            return _BAD
    if key == "weekday" and value is not None:
        if value not in WEEKDAYS:
            problems.add(place, f"{show(value)} is not a weekday (one of {', '.join(WEEKDAYS)})")
            return _BAD
        return WEEKDAYS[value]
    return value


def _row_read(row: Any, place: str, keys: Mapping[str, Key], problems: Problems, instance, *, check: bool,
              parent: str, model_keys: Mapping[str, str] | None = None) -> Any:
    """Read a condition or action value into ``instance`` and validate it; ``None`` if unreadable."""
    read = read_object(row, place, keys, problems)
    if read is None:
        return None
    file_to_model = {key: model for model, key in (model_keys or {}).items()}
    for key, value in read.values.items():
        setattr(instance, file_to_model.get(key, key), value)
    if check:
        model_problems(instance, place, problems, keys=model_keys, skip=read.bad,
                       exclude=[parent, *(file_to_model.get(key, key) for key in read.bad)])
    return instance


def _action_read(row: Any, place: str, workflow: Workflow, index: int, problems: Problems, *,
                 check: bool) -> tuple[Action, list[ActionValue]] | None:
    kind = row.get("kind") if isinstance(row, dict) else None
    if not isinstance(kind, str) or kind not in ACTION_KEYS:
        if isinstance(row, dict):
            problems.add(place_key(place, "kind"), f"expected one of {', '.join(ACTION_KEYS)}")
        else:
            read_object(row, place, {}, problems)
        return None
    keys = _KIND | {"values": Key(list, [])} | ACTION_KEYS[kind]
    read: Read | None = read_object(row, place, keys, problems)
    action = Action(workflow=workflow, position=index)
    for key, value in read.values.items():
        if key != "values":
            setattr(action, key, value)
    if check:
        model_problems(action, place, problems, skip=read.bad, exclude=["workflow", *read.bad])
    values: list[ActionValue] = []
    seen: dict[str, str] = {}
    for value_index, value_row in enumerate(read.values.get("values", [])):
        value_place = place_index(place_key(place, "values"), value_index)
        value = _row_read(value_row, value_place, VALUE_KEYS, problems,
                          ActionValue(action=action, position=value_index), check=check, parent="action",
                          model_keys={"braze_type": "type"})
        if value is None:
            continue
        if value.name in seen:
            problems.add(place_key(value_place, "name"),
                         f"{show(value.name)} is used twice (also {seen[value.name]})")
        seen.setdefault(value.name, value_place)
        values.append(value)
    return action, values


def _mapped_attributes_check(braze: BrazeImport, entries: list[_WorkflowEntry], problems: Problems) -> None:
    """A sync-data action of the file must not send an attribute a mapping of the file sends (the rule
    ``FieldMapping`` and ``ActionValue`` check against the database, here within the file that replaces it)."""
    mapped = {mapping.remote_field: (index, mapping) for index, mapping in enumerate(braze.mappings)}
    for entry in entries:
        for action, values in entry.actions:
            if action.kind != ActionKind.SYNC_DATA:
                continue
            action_place = place_index(place_key(entry.place, "actions"), action.position)
            owner = f'workflow {show(entry.workflow.name)}, action {action.position + 1} (sync data)'
            for value in values:
                if value.name not in mapped:
                    continue
                index, mapping = mapped[value.name]
                problems.add(place_key(place_index(place_key(action_place, "values"), value.position), "name"),
                             mapped_attribute_collision(name=value.name, loyalty_field=mapping.loyalty_field,
                                                        owner=owner) + f" (the mapping is field_mappings[{index}])")


def _trigger_actions_check(entries: list[_WorkflowEntry], declared: set[str], problems: Problems) -> None:
    """An event trigger names an action events can have: built in, the engine's, or declared (in the file's
    ``custom_actions``, else the database's); otherwise the workflow would never run."""
    for entry in entries:
        workflow = entry.workflow
        if workflow.trigger_kind != TriggerKind.EVENT or not ACTION_NAME.match(workflow.trigger_action or ""):
            continue  # no action, or one the workflow's own validation refused already
        if problem := trigger_action_problem(workflow.trigger_action, declared):
            problems.add(place_key(entry.place, "trigger.action"), problem)


def _workflow_changes(entries: list[_WorkflowEntry], report: ConfigImport) -> list[str]:
    """Add the workflows' change lines to ``report``; returns the names of the workflows to delete."""
    names = {entry.workflow.name for entry in entries}
    for entry in sorted(entries, key=lambda e: e.workflow.name):
        if entry.existing is None:
            report.changes.append(f"workflows: added {show(entry.workflow.name)}")
        elif entry.existing != entry.data:
            report.changes.append(f"workflows: changed {show(entry.workflow.name)} "
                                  f"({_differences(entry.existing, entry.data)})")
    removed = sorted(set(Workflow.objects.values_list("name", flat=True)) - names)
    report.changes.extend(f"workflows: removed {show(name)}" for name in removed)
    return removed


def _differences(before: dict[str, Any], after: dict[str, Any]) -> str:
    parts = []
    for key in before:
        if before[key] == after[key]:
            continue
        if key == "trigger" and before[key]["kind"] == after[key]["kind"]:
            parts.extend(f"trigger.{k} {show(before[key].get(k))} -> {show(after[key].get(k))}"
                         for k in before[key] if before[key].get(k) != after[key].get(k))
        elif isinstance(before[key], (list, dict)) or key == "description":
            parts.append(key)
        else:
            parts.append(f"{key} {show(before[key])} -> {show(after[key])}")
    return ", ".join(parts)


def _apply(braze: BrazeImport, entries: list[_WorkflowEntry], removed: list[str]) -> None:
    braze_config_apply(plan=braze)
    Workflow.objects.filter(name__in=removed).delete()
    for entry in entries:
        if entry.existing == entry.data:
            continue  # unchanged: its version stays
        workflow = entry.workflow
        workflow.save()
        workflow.conditions.all().delete()
        workflow.actions.all().delete()
        for condition in entry.conditions:
            condition.workflow = workflow
            condition.save()
        for action, values in entry.actions:
            action.workflow = workflow
            action.save()
            for value in values:
                value.action = action
                value.save()

"""Configuration as code: the whole configuration (connection, field mappings, workflows) as one
JSON file, and back.

The Braze part comes from ``braze_integration.config``; this module adds the workflows and puts
the file together. A workflow is identified by its name: importing updates the workflow of that
name, creates the ones that are new and deletes the ones the file does not have. Every object is
validated by its model's ``full_clean()`` (the admin's rules) before anything is written, and a
file with any problem changes nothing.

A workflow in the file::

    {"name": "Welcome", "description": "", "active": true, "priority": 20, "logic": "and",
     "triggers": [{"kind": "event", "action": "opt_in"}],
     "conditions": [{"attribute": "member.tier", "operator": "equals", "value": "Gold"}],
     "steps": [{"kind": "wait", "seconds": 3600},
               {"kind": "send_event", "event_name": "joined",
                "values": [{"name": "tier", "type": "string", "source": "member", "path": "tier",
                            "required": false}]}]}

A trigger holds the keys of its kind only (``TRIGGER_KEYS``), a step those of its kind
(``ACTION_KEYS`` for the Braze actions, ``steps.STEP_FIELDS`` for the others; a filter also has
``conditions`` and its ``else`` steps); positions are the order of the lists. Files written
before workflows had several triggers and steps (``"trigger": {...}``, ``"actions": [...]``)
are read as one trigger and those steps; exports write the new keys.
"""

from __future__ import annotations

import datetime as dt
import os
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
from . import steps as step_kinds
from .config_custom_actions import (
    custom_actions_apply,
    custom_actions_export,
    custom_actions_read,
    trigger_action_problem,
)
from .config_format import (  # noqa: F401  (the file's shape, read by the editor and the import)
    ACTION_KEYS,
    CONDITION_KEYS,
    FILTER_KEYS,
    KIND_KEYS,
    STEP_KEYS,
    TIME_KEY,
    TIME_TEXT,
    TOP_KEYS,
    TRIGGER_FIELD_KEYS,
    TRIGGER_KEYS,
    VALUE_KEYS,
    VALUE_OPTIONAL_TEXTS,
    WEEKDAYS,
    WORKFLOW_KEYS,
)
from .loops import Shape, loops_find, shape_of
from .models import (
    ACTION_NAME,
    Action,
    ActionKind,
    ActionValue,
    Condition,
    Trigger,
    TriggerKind,
    Weekday,
    Workflow,
)

# --- export -------------------------------------------------------------------------------------

def _time_text(value: dt.time) -> str:
    return value.strftime("%H:%M" if value.second == 0 else "%H:%M:%S")


def _trigger_data(trigger: Trigger) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": trigger.kind}
    for key, (_spec, model_field) in TRIGGER_KEYS.get(trigger.kind, {}).items():
        value = getattr(trigger, model_field)
        if model_field == "time":
            value = _time_text(value)
        elif model_field == "weekday" and value is not None:
            value = Weekday(value).label.lower()
        data[key] = value
    return data


def _value_data(value: ActionValue) -> dict[str, Any]:
    data = {"name": value.name, "type": value.braze_type, "source": value.source, "required": value.required}
    data.update({key: getattr(value, key) for key in VALUE_OPTIONAL_TEXTS if getattr(value, key)})
    return data


def _condition_data(condition: Condition) -> dict[str, Any]:
    return {"attribute": condition.attribute, "operator": condition.operator, "value": condition.value}


@dataclass
class _StepNode:
    """A step as read from the file or the database: its row, values, filter conditions and else branch."""

    action: Action
    values: list[ActionValue] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    else_steps: list[_StepNode] = field(default_factory=list)
    place: str = ""  # where it is in the file


def _step_data(node: _StepNode) -> dict[str, Any]:
    action = node.action
    if action.kind in ACTION_KEYS:
        data: dict[str, Any] = {"kind": action.kind, "values": [_value_data(value) for value in node.values]}
        data.update({key: getattr(action, key) for key in ACTION_KEYS[action.kind]})
        return data
    data = {"kind": action.kind, **action.step_keys()}
    if action.kind == ActionKind.FILTER:
        data["conditions"] = [_condition_data(c) for c in node.conditions]
        data["else"] = [_step_data(child) for child in node.else_steps]
    return data


def _workflow_data(workflow: Workflow, triggers: list[Trigger], conditions: list[Condition],
                   steps: list[_StepNode]) -> dict[str, Any]:
    return {
        "name": workflow.name,
        "description": workflow.description,
        "active": workflow.active,
        "priority": workflow.priority,
        "triggers": [_trigger_data(trigger) for trigger in triggers],
        "logic": workflow.logic,
        "conditions": [_condition_data(c) for c in conditions],
        "steps": [_step_data(node) for node in steps],
    }


def _saved_steps(workflow: Workflow) -> tuple[list[Condition], list[_StepNode]]:
    """The workflow's entry conditions and its step tree, from prefetched rows."""
    rows = list(workflow.conditions.all())
    actions = list(workflow.actions.all())
    nodes = {action.pk: _StepNode(action, list(action.values.all()),
                                  [row for row in rows if row.step_id == action.pk]) for action in actions}
    main = []
    for action in actions:
        parent = nodes.get(action.else_of_id) if action.else_of_id else None
        (parent.else_steps if parent else main).append(nodes[action.pk])
    return [row for row in rows if row.step_id is None], main


def workflows_export() -> list[dict[str, Any]]:
    """Every workflow as the file holds it, by name; triggers, conditions and steps in their order."""
    # Sorted here, not by the database: collations differ between databases.
    workflows = sorted(Workflow.objects.prefetch_related("triggers", "conditions", "actions__values"),
                       key=lambda w: w.name)
    out = []
    for workflow in workflows:
        conditions, steps = _saved_steps(workflow)
        out.append(_workflow_data(workflow, list(workflow.triggers.all()), conditions, steps))
    return out


def config_export(*, api_key_env: str = API_KEY_ENV_DEFAULT) -> str:
    """The whole configuration as the file's text: byte-identical for equal configurations, no
    database ids, no API key (``api_key_env`` names the variable an import reads it from)."""
    return config_dump({**braze_config_export(api_key_env=api_key_env), "custom_actions": custom_actions_export(),
                        "workflows": workflows_export()})


# --- import -------------------------------------------------------------------------------------

@dataclass
class _WorkflowEntry:
    workflow: Workflow
    triggers: list[Trigger]
    conditions: list[Condition]
    steps: list[_StepNode]
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
        entries = _workflows_read(top.values.get("workflows", []), problems, actions.declared)
        if not problems:
            _loops_check(entries, problems)
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


def _workflows_read(value: Any, problems: Problems, declared: set[str]) -> list[_WorkflowEntry]:
    existing = {workflow["name"]: workflow for workflow in workflows_export()}
    entries: list[_WorkflowEntry] = []
    seen: dict[str, str] = {}
    for index, item in enumerate(read_list(value, "workflows", problems)):
        place = place_index("workflows", index)
        entry = _workflow_read(item, place, problems, existing, declared)
        if entry is None:
            continue
        name = entry.workflow.name
        if name and name in seen:
            problems.add(place_key(place, "name"), f"{show(name)} is used twice (also {seen[name]}): "
                                                   "workflows are identified by their names")
        seen.setdefault(name, place)
        entries.append(entry)
    return entries


def _workflow_read(item: Any, place: str, problems: Problems, existing: dict[str, dict[str, Any]],
                   declared: set[str]) -> _WorkflowEntry | None:
    read = read_object(item, place, WORKFLOW_KEYS, problems)
    if read is None:
        return None
    name = read.values.get("name", "")
    workflow = Workflow.objects.filter(name=name).first() if isinstance(name, str) and name else None
    workflow = workflow or Workflow()
    for key in ("name", "description", "active", "priority", "logic"):
        if key in read.values:
            setattr(workflow, key, read.values[key])
    model_problems(workflow, place, problems, skip=set(read.bad), exclude=list(read.bad))
    triggers_data, triggers_place = _old_or_new(read, place, problems, "triggers", "trigger", single=True)
    steps_data, steps_place = _old_or_new(read, place, problems, "steps", "actions", single=False)
    triggers: list[Trigger] = []
    kinds_known = triggers_data is not None
    for index, row in enumerate(triggers_data or []):
        trigger = _trigger_read(row, place_index(triggers_place, index) if triggers_place.endswith("triggers")
                                else triggers_place, workflow, index, problems)
        if trigger is None:
            kinds_known = False
        else:
            triggers.append(trigger)
    if triggers_data is not None and not triggers_data:
        problems.add(triggers_place, "a workflow needs at least one trigger")
    workflow.pending_trigger_kinds = [trigger.kind for trigger in triggers]
    workflow.pending_custom_actions = declared  # trigger_event steps may name the file's declared actions
    conditions: list[Condition] = []
    for index, row in enumerate(read.values.get("conditions", [])):
        condition = _row_read(row, place_index(place_key(place, "conditions"), index), CONDITION_KEYS, problems,
                              Condition(workflow=workflow, position=index), check=kinds_known,
                              parent="workflow", also_exclude=["step"])
        if condition is not None:
            conditions.append(condition)
    steps = _steps_read(steps_data or [], steps_place, workflow, None, problems, check=kinds_known)
    data = _workflow_data(workflow, triggers, conditions, steps)
    return _WorkflowEntry(workflow, triggers, conditions, steps, data, existing.get(workflow.name), place)


def _old_or_new(read: Read, place: str, problems: Problems, new: str, old: str, *, single: bool
                ) -> tuple[list[Any] | None, str]:
    """The list under the new key, or (files of before) under the old one; where it is."""
    if read.values.get(new) is not None and read.values.get(old) is not None:
        problems.add(place_key(place, old), f'give "{new}" or "{old}" (the older form), not both')
        return None, place_key(place, new)
    if read.values.get(old) is not None:
        value = read.values[old]
        return ([value] if single else value), place_key(place, old)
    if read.values.get(new) is None:
        if new in read.bad or old in read.bad:
            return None, place_key(place, new)
        if single:
            problems.add(place_key(place, new), "required")
            return None, place_key(place, new)
        return [], place_key(place, new)
    return read.values[new], place_key(place, new)


def _trigger_read(value: Any, place: str, workflow: Workflow, index: int, problems: Problems) -> Trigger | None:
    """One trigger; ``None`` when its kind is unknown (the workflow's rows cannot be checked then)."""
    kind = value.get("kind") if isinstance(value, dict) else None
    if not isinstance(kind, str) or kind not in TRIGGER_KEYS:
        if isinstance(value, dict):
            problems.add(place_key(place, "kind"), f"expected one of {', '.join(TRIGGER_KEYS)}")
        else:
            read_object(value, place, {}, problems)  # says what it is instead of an object
        return None
    keys = TRIGGER_KEYS[kind]
    read = read_object(value, place, KIND_KEYS | {key: spec for key, (spec, _f) in keys.items()}, problems)
    trigger = Trigger(workflow=workflow, position=index, kind=kind)
    trigger.file_place = place  # where problems found later (the declared actions) are reported
    skip = set(read.bad)
    for key, (_spec, model_field) in keys.items():
        if key in read.bad:
            continue
        converted = _trigger_value(key, read.values[key], place_key(place, key), problems)
        if converted is _BAD:
            skip.add(key)
        else:
            setattr(trigger, model_field, converted)
    model_problems(trigger, place, problems, keys=TRIGGER_FIELD_KEYS, skip=skip,
                   exclude=["workflow", *(keys[key][1] for key in skip if key in keys)])
    return trigger


_BAD = object()


def _trigger_value(key: str, value: Any, place: str, problems: Problems) -> Any:
    if key == "time":
        try:
            if not TIME_TEXT.match(value):
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
              parent: str, model_keys: Mapping[str, str] | None = None, also_exclude: list[str] | None = None) -> Any:
    """Read a condition or action value into ``instance`` and validate it; ``None`` if unreadable."""
    read = read_object(row, place, keys, problems)
    if read is None:
        return None
    file_to_model = {key: model for model, key in (model_keys or {}).items()}
    for key, value in read.values.items():
        setattr(instance, file_to_model.get(key, key), value)
    if check:
        model_problems(instance, place, problems, keys=model_keys, skip=read.bad,
                       exclude=[parent, *(also_exclude or []), *(file_to_model.get(key, key) for key in read.bad)])
    return instance


def _steps_read(rows: list[Any], place: str, workflow: Workflow, else_of: Action | None, problems: Problems, *,
                check: bool) -> list[_StepNode]:
    nodes = []
    for index, row in enumerate(read_list(rows, place, problems)):
        node = _step_read(row, place_index(place, index), workflow, index, else_of, problems, check=check)
        if node is not None:
            nodes.append(node)
    return nodes


def _step_read(row: Any, place: str, workflow: Workflow, index: int, else_of: Action | None, problems: Problems, *,
               check: bool) -> _StepNode | None:
    kind = row.get("kind") if isinstance(row, dict) else None
    if not isinstance(kind, str) or (kind not in ACTION_KEYS and kind not in STEP_KEYS):
        if isinstance(row, dict):
            problems.add(place_key(place, "kind"), f"expected one of {', '.join([*ACTION_KEYS, *STEP_KEYS])}")
        else:
            read_object(row, place, {}, problems)
        return None
    braze = kind in ACTION_KEYS
    keys = KIND_KEYS | ({"values": Key(list, [])} | ACTION_KEYS[kind] if braze else STEP_KEYS[kind])
    if kind == ActionKind.FILTER:
        keys = keys | FILTER_KEYS
    read: Read = read_object(row, place, keys, problems)
    action = Action(workflow=workflow, position=index, kind=kind, else_of=else_of)
    model_keys = {} if braze else {model: key for key, model in step_kinds.STEP_FIELDS[kind].items()}
    for key, value in read.values.items():
        if key not in ("values", "conditions", "else"):
            setattr(action, {v: k for k, v in model_keys.items()}.get(key, key), value)
    if check:
        model_problems(action, place, problems, keys=model_keys, skip=read.bad,
                       exclude=["workflow", "else_of", *read.bad])
    node = _StepNode(action, place=place)
    if kind == ActionKind.FILTER:
        for row_index, condition_row in enumerate(read.values.get("conditions", [])):
            condition = _row_read(condition_row, place_index(place_key(place, "conditions"), row_index),
                                  CONDITION_KEYS, problems, Condition(workflow=workflow, step=action, position=row_index),
                                  check=check, parent="workflow", also_exclude=["step"])
            if condition is not None:
                node.conditions.append(condition)
        node.else_steps = _steps_read(read.values.get("else", []), place_key(place, "else"), workflow, action,
                                      problems, check=check)
        return node
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
        node.values.append(value)
    return node


def _all_steps(nodes: list[_StepNode]) -> list[_StepNode]:
    out = []
    for node in nodes:
        out.append(node)
        out.extend(_all_steps(node.else_steps))
    return out


def entry_shape(entry: _WorkflowEntry) -> Shape:
    return shape_of(entry.workflow.name, [(t.kind, t.action, t.field) for t in entry.triggers],
                    [(node.action.kind, node.action.step_keys()) for node in _all_steps(entry.steps)])


def _loops_check(entries: list[_WorkflowEntry], problems: Problems) -> None:
    """Refuse workflows that can start themselves (the file replaces every workflow)."""
    loops = loops_find(entry_shape(entry) for entry in entries if entry.workflow.active)
    for entry in entries:
        if entry.workflow.name in loops:
            problems.add(place_key(entry.place, "steps"), loops[entry.workflow.name])


def _mapped_attributes_check(braze: BrazeImport, entries: list[_WorkflowEntry], problems: Problems) -> None:
    """A sync-data step of the file must not send an attribute a mapping of the file sends (the rule
    ``FieldMapping`` and ``ActionValue`` check against the database, here within the file that replaces it)."""
    mapped = {mapping.remote_field: (index, mapping) for index, mapping in enumerate(braze.mappings)}
    for entry in entries:
        for node in _all_steps(entry.steps):
            action = node.action
            if action.kind != ActionKind.SYNC_DATA:
                continue
            owner = f'workflow {show(entry.workflow.name)}, action {action.position + 1} (sync data)'
            for value in node.values:
                if value.name not in mapped:
                    continue
                index, mapping = mapped[value.name]
                problems.add(place_key(place_index(place_key(node.place, "values"), value.position), "name"),
                             mapped_attribute_collision(name=value.name, loyalty_field=mapping.loyalty_field,
                                                        owner=owner) + f" (the mapping is field_mappings[{index}])")


def _trigger_actions_check(entries: list[_WorkflowEntry], declared: set[str], problems: Problems) -> None:
    """An event trigger names an action events can have: built in, the engine's, or declared (in the file's
    ``custom_actions``, else the database's); otherwise the workflow would never run."""
    for entry in entries:
        for trigger in entry.triggers:
            if trigger.kind != TriggerKind.EVENT or not ACTION_NAME.match(trigger.action or ""):
                continue  # no action, or one the trigger's own validation refused already
            if problem := trigger_action_problem(trigger.action, declared):
                problems.add(place_key(getattr(trigger, "file_place", entry.place), "action"), problem)


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
        if before[key] == after.get(key):
            continue
        if key == "triggers" and [t["kind"] for t in before[key]] == [t["kind"] for t in after[key]]:
            for index, (old, new) in enumerate(zip(before[key], after[key], strict=True)):
                parts.extend(f"triggers[{index}].{k} {show(old.get(k))} -> {show(new.get(k))}"
                             for k in old if old.get(k) != new.get(k))
        elif isinstance(before[key], (list, dict)) or key == "description":
            parts.append(key)
        else:
            parts.append(f"{key} {show(before[key])} -> {show(after.get(key))}")
    return ", ".join(parts)


def _apply(braze: BrazeImport, entries: list[_WorkflowEntry], removed: list[str]) -> None:
    braze_config_apply(plan=braze)
    Workflow.objects.filter(name__in=removed).delete()
    for entry in entries:
        if entry.existing == entry.data:
            continue  # unchanged: its version stays
        workflow = entry.workflow
        workflow.save()
        workflow.triggers.all().delete()
        workflow.conditions.all().delete()
        workflow.actions.all().delete()
        for trigger in entry.triggers:
            trigger.workflow = workflow
            trigger.save()
        for condition in entry.conditions:
            condition.workflow = workflow
            condition.save()
        _steps_save(workflow, entry.steps, None)


def _steps_save(workflow: Workflow, nodes: list[_StepNode], else_of: Action | None) -> None:
    for node in nodes:
        action = node.action
        action.workflow, action.else_of = workflow, else_of
        action.save()
        for value in node.values:
            value.action = action
            value.save()
        for condition in node.conditions:
            condition.workflow, condition.step = workflow, action
            condition.save()
        _steps_save(workflow, node.else_steps, action)

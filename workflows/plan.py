"""A workflow snapshot compiled into something that runs: pure, no database, no HTTP.

``WorkflowPlan.compile(snapshot)`` builds the conditions and value specs once (raising
``WorkflowInvalid`` in plain words when a rule no longer holds, e.g. a custom field was deleted);
``plan.run(context)`` evaluates the conditions against a run's context and builds the outbox
payloads of every action. A run is all or nothing: if one value cannot be sent, nothing is queued
and the run reports which value and why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from braze_integration.payloads import PayloadError, attributes_object, event_object, purchase_object
from braze_integration.standard_fields import standard_attributes

from .conditions import MISSING, Condition, ConditionError, ConditionSet, Logic, lookup, parse_text
from .values import ValueSpec, ValueSpecError, resolve_values

MAX_PURCHASE_QUANTITY = 100  # Braze's limit per purchase object; larger quantities are split
# One step's purchase objects at most (a quantity of 100,000 in all). Each is a data point in Braze and
# an outbox item here; a line of a million units is a shop's mistake to refuse, not 10,000 objects to send.
MAX_PURCHASE_OBJECTS = 1_000


class WorkflowInvalid(ValueError):
    """The snapshot cannot be run; the message says which rule and why."""


@dataclass(frozen=True)
class Intent:
    """One thing to queue in the Braze outbox. ``key`` is unique within the run (the action and item)."""

    kind: str
    payload: dict[str, Any]
    key: str
    summary: str


@dataclass
class RunResult:
    matched: bool
    intents: list[Intent] = field(default_factory=list)
    reason: str = ""  # why the conditions did not match
    error: str = ""


@dataclass(frozen=True)
class ActionPlan:
    id: int
    kind: str
    specs: tuple[ValueSpec, ...]
    label: str
    event_name: str = ""
    merge_objects: bool = False
    items_path: str = "items"
    currency_path: str = "currency"

    def intents(self, context: Mapping[str, Any], external_id: str) -> list[Intent]:
        """Raises ``ValueSpecError`` or ``PayloadError`` when a value cannot be sent."""
        time = context.get("time")
        if self.kind == "sync_data":
            values = standard_attributes(resolve_values(self.specs, context))
            if not values:
                return []
            attributes_object(external_id, values)
            return [Intent("attributes", {"attributes": values, "merge_objects": self.merge_objects}, str(self.id),
                           "attributes " + ", ".join(values))]
        if self.kind == "send_event":
            properties = resolve_values(self.specs, context)
            event_object(external_id, name=self.event_name, time=time, properties=properties)
            return [Intent("event", {"name": self.event_name, "time": time, "properties": properties}, str(self.id),
                           f"event {self.event_name}")]
        if self.kind == "send_purchase":
            return self._purchases(context, external_id)
        raise ValueSpecError("kind", f'"{self.kind}" is not an action kind')

    def _purchases(self, context: Mapping[str, Any], external_id: str) -> list[Intent]:
        event = context.get("event") or {}
        items = lookup(event, self.items_path)
        if items is MISSING or items is None:
            return []
        if not isinstance(items, list | tuple):
            raise ValueSpecError("items_path", f"event.{self.items_path} is not a list of items")
        currency = lookup(event, self.currency_path)
        time = context.get("time")
        out: list[Intent] = []
        objects = 0
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise ValueSpecError("items_path", f"event.{self.items_path}[{index}] is not an object")
            properties = resolve_values(self.specs, {**context, "item": item})
            quantity = item.get("quantity", 1)
            if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
                raise PayloadError(f"{self.items_path}[{index}].quantity", f"expected a positive integer, got {quantity!r}")
            parts = math.ceil(quantity / MAX_PURCHASE_QUANTITY)
            objects += parts
            if objects > MAX_PURCHASE_OBJECTS:
                raise PayloadError(f"{self.items_path}[{index}].quantity",
                                   f"{quantity} brings the items to more than {MAX_PURCHASE_OBJECTS * MAX_PURCHASE_QUANTITY:,} "
                                   f"units: Braze takes at most {MAX_PURCHASE_QUANTITY} a purchase, and one step sends "
                                   f"at most {MAX_PURCHASE_OBJECTS:,} purchases")
            for part in range(parts):
                count = min(MAX_PURCHASE_QUANTITY, quantity - part * MAX_PURCHASE_QUANTITY)
                obj = purchase_object(external_id, product_id=_text(item.get("product_id")), currency=currency,
                                      price=item.get("price"), quantity=count, time=time, properties=properties)
                payload = {key: obj[key] for key in ("product_id", "currency", "price", "quantity")}
                payload.update(time=time, properties=properties)
                key = f"{self.id}:item:{index}" + (f":part:{part}" if parts > 1 else "")
                out.append(Intent("purchase", payload, key, f"purchase {payload['product_id']} x{count}"))
        return out


def _text(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


@dataclass(frozen=True)
class StepPlan:
    """One step of the compiled program. ``next`` is the step after it (``None``: the run ends);
    a filter goes to ``else_next`` when its conditions fail (``None``: the run ends, as a success)."""

    index: int
    id: int
    kind: str
    label: str
    next: int | None
    else_next: int | None = None
    action: ActionPlan | None = None
    conditions: ConditionSet | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkflowPlan:
    id: int
    name: str
    version: int
    priority: int
    triggers: tuple[Mapping[str, Any], ...]
    conditions: ConditionSet
    steps: tuple[StepPlan, ...]
    trigger_conditions: Mapping[int, tuple[Condition, ...]] = field(default_factory=dict)

    @property
    def actions(self) -> tuple[ActionPlan, ...]:
        return tuple(step.action for step in self.steps if step.action is not None)

    @classmethod
    def compile(cls, snapshot: Mapping[str, Any]) -> WorkflowPlan:
        """Build the plan from ``Workflow.snapshot()``; raises ``WorkflowInvalid``."""
        triggers = tuple(snapshot.get("triggers") or [])
        conditions = _condition_set(snapshot.get("conditions") or [], snapshot.get("logic"), "Condition")
        program: list[StepPlan | None] = []
        _emit(snapshot.get("steps") or [], None, program, "Step ")
        return cls(id=snapshot["id"], name=snapshot.get("name", ""), version=snapshot.get("version", 0),
                   priority=snapshot.get("priority", 0), triggers=triggers, conditions=conditions,
                   steps=tuple(step for step in program if step is not None),
                   trigger_conditions={trigger.get("id"): tuple(cls._trigger_conditions(trigger))
                                       for trigger in triggers})

    def entry(self, trigger_id: int | None) -> ConditionSet:
        """What must hold for a run started by this trigger: its from / to values and the conditions."""
        return ConditionSet((*self.trigger_conditions.get(trigger_id, ()), self.conditions), Logic.AND)

    @staticmethod
    def _trigger_conditions(trigger: Mapping[str, Any]) -> list[Condition]:
        """A field change's from / to values are conditions on ``previous.<field>`` / ``member.<field>``."""
        if trigger.get("kind") != "field_change":
            return []
        out = []
        field_type = trigger.get("type")
        for key, prefix in (("from", "previous."), ("to", "member.")):
            text = trigger.get(key) or ""
            if text == "":
                continue
            if field_type is None:
                raise WorkflowInvalid(f'Trigger: "{trigger.get("field")}" is not a member field any more.')
            try:
                value = parse_text(field_type, "equals", text)
                out.append(Condition(prefix + trigger["field"], "equals", value, field_type))
            except ConditionError as err:
                raise WorkflowInvalid(f"Trigger {key} value: {err.message}") from None
        return out

    def run(self, context: Mapping[str, Any], *, external_id: str, trigger_id: int | None = None) -> RunResult:
        """Evaluate the entry conditions and build every Braze action's payloads (the steps that are
        not Braze actions are left to the runner). Never raises for data: problems are in ``error``."""
        entry = self.entry(trigger_id)
        if not entry.evaluate(context):
            return RunResult(matched=False, reason=entry.explain(context))
        intents: list[Intent] = []
        for action in self.actions:
            try:
                intents.extend(action.intents(context, external_id))
            except ValueSpecError as err:
                return RunResult(matched=True, error=f"{action.label}: {err.message}")
            except PayloadError as err:
                return RunResult(matched=True, error=f"{action.label}: {err.field}: {err.problem}")
        return RunResult(matched=True, intents=intents)


def _condition_set(rows: list[Mapping[str, Any]], logic: str | None, place: str) -> ConditionSet:
    built: list[Condition] = []
    for index, row in enumerate(rows, start=1):
        try:
            if row.get("type") is None:
                raise ConditionError("attribute", f'Unknown attribute "{row.get("attr")}".')
            built.append(Condition(row["attr"], row["op"], parse_text(row["type"], row["op"], row.get("text", "")),
                                   row["type"]))
        except (ConditionError, KeyError) as err:
            raise WorkflowInvalid(f"{place} {index} ({row.get('attr')}): {_message(err)}") from None
    try:
        return ConditionSet(tuple(built), logic or Logic.AND)
    except ConditionError as err:
        raise WorkflowInvalid(f"{place}s: {err.message}") from None


def _emit(steps: list[Mapping[str, Any]], after: int | None, program: list[StepPlan | None], prefix: str) -> int | None:
    """Append ``steps`` to the flat program (each filter's else branch after them); returns the index
    of the first one, or ``after`` when there are none. A branch ends the run when it is done."""
    indexes = []
    for _step in steps:
        indexes.append(len(program))
        program.append(None)
    for position, (index, step) in enumerate(zip(indexes, steps, strict=True)):
        following = indexes[position + 1] if position + 1 < len(indexes) else after
        label = f"{prefix}{position + 1} ({step.get('kind')}" + (
            f" {step['event_name']})" if step.get("event_name") else ")")
        program[index] = _step_plan(step, index, following, label, program)
    return indexes[0] if indexes else after


def _step_plan(step: Mapping[str, Any], index: int, following: int | None, label: str,
               program: list[StepPlan | None]) -> StepPlan:
    kind = step.get("kind")
    if kind in ("sync_data", "send_event", "send_purchase"):
        specs = []
        for spec in step.get("values") or []:
            try:
                specs.append(ValueSpec.from_dict(spec))
            except ValueSpecError as err:
                raise WorkflowInvalid(f"{label}, value {spec.get('name')!r}: {err.field}: {err.message}") from None
        action = ActionPlan(
            id=step["id"], kind=kind, specs=tuple(specs), label=label,
            event_name=step.get("event_name", ""), merge_objects=bool(step.get("merge_objects")),
            items_path=step.get("items_path") or "items", currency_path=step.get("currency_path") or "currency")
        return StepPlan(index, step["id"], kind, label, following, action=action)
    if kind == "filter":
        conditions = _condition_set(step.get("conditions") or [], step.get("logic"), f"{label}: condition")
        else_next = _emit(step.get("else") or [], None, program, f"{label.split(' (')[0]} else ")
        return StepPlan(index, step["id"], kind, label, following, else_next=else_next, conditions=conditions)
    if kind in ("wait", "add_points", "deduct_points", "set_tier", "update_field", "trigger_event"):
        settings = {key: value for key, value in step.items() if key not in ("id", "kind")}
        return StepPlan(index, step["id"], kind, label, following, settings=settings)
    raise WorkflowInvalid(f'{label}: "{kind}" is not a step kind.')


def _message(err: Exception) -> str:
    return err.message if isinstance(err, ConditionError) else f"missing {err}"

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
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise ValueSpecError("items_path", f"event.{self.items_path}[{index}] is not an object")
            properties = resolve_values(self.specs, {**context, "item": item})
            quantity = item.get("quantity", 1)
            if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
                raise PayloadError(f"{self.items_path}[{index}].quantity", f"expected a positive integer, got {quantity!r}")
            parts = math.ceil(quantity / MAX_PURCHASE_QUANTITY)
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
class WorkflowPlan:
    id: int
    name: str
    version: int
    priority: int
    trigger: Mapping[str, Any]
    conditions: ConditionSet
    actions: tuple[ActionPlan, ...]

    @classmethod
    def compile(cls, snapshot: Mapping[str, Any]) -> WorkflowPlan:
        """Build the plan from ``Workflow.snapshot()``; raises ``WorkflowInvalid``."""
        trigger = snapshot.get("trigger") or {}
        rows: list[Condition] = []
        for index, row in enumerate(snapshot.get("conditions") or [], start=1):
            try:
                if row.get("type") is None:
                    raise ConditionError("attribute", f'Unknown attribute "{row.get("attr")}".')
                rows.append(Condition(row["attr"], row["op"], parse_text(row["type"], row["op"], row.get("text", "")),
                                      row["type"]))
            except (ConditionError, KeyError) as err:
                raise WorkflowInvalid(f"Condition {index} ({row.get('attr')}): {_message(err)}") from None
        try:
            user_set = ConditionSet(tuple(rows), snapshot.get("logic") or Logic.AND)
        except ConditionError as err:
            raise WorkflowInvalid(f"Conditions: {err.message}") from None
        conditions = ConditionSet((*cls._trigger_conditions(trigger), user_set), Logic.AND)
        actions = []
        for index, action in enumerate(snapshot.get("actions") or [], start=1):
            label = f"Action {index} ({action.get('kind')}" + (
                f" {action['event_name']})" if action.get("event_name") else ")")
            specs = []
            for spec in action.get("values") or []:
                try:
                    specs.append(ValueSpec.from_dict(spec))
                except ValueSpecError as err:
                    raise WorkflowInvalid(f"{label}, value {spec.get('name')!r}: {err.field}: {err.message}") from None
            actions.append(ActionPlan(
                id=action["id"], kind=action["kind"], specs=tuple(specs), label=label,
                event_name=action.get("event_name", ""), merge_objects=bool(action.get("merge_objects")),
                items_path=action.get("items_path") or "items", currency_path=action.get("currency_path") or "currency"))
        return cls(id=snapshot["id"], name=snapshot.get("name", ""), version=snapshot.get("version", 0),
                   priority=snapshot.get("priority", 0), trigger=trigger, conditions=conditions,
                   actions=tuple(actions))

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

    def run(self, context: Mapping[str, Any], *, external_id: str) -> RunResult:
        """Evaluate and build every action's payloads. Never raises for data: problems are in ``error``."""
        if not self.conditions.evaluate(context):
            return RunResult(matched=False, reason=self.conditions.explain(context))
        intents: list[Intent] = []
        for action in self.actions:
            try:
                intents.extend(action.intents(context, external_id))
            except ValueSpecError as err:
                return RunResult(matched=True, error=f"{action.label}: {err.message}")
            except PayloadError as err:
                return RunResult(matched=True, error=f"{action.label}: {err.field}: {err.problem}")
        return RunResult(matched=True, intents=intents)


def _message(err: Exception) -> str:
    return err.message if isinstance(err, ConditionError) else f"missing {err}"

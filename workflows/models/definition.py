"""Workflow definitions (Antavo's Workflows tool): workflows, their triggers, conditions and steps.

Models hold data and validation. ``clean()`` validates each rule by building it through the pure
engines (``conditions.py``, ``values.py``), so a problem shows next to its field in the admin and
never surfaces as a crash in a run. Running is in ``services``.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Collection
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F
from django.utils import timezone

from braze_integration.models import FieldMapping, RemoteKind, mapped_attribute_collision
from braze_integration.payloads import BrazeType
from loyaltysync import services
from loyaltysync.models import CustomField, FieldType

from .. import conditions, schedule, steps
from ..context import (
    ANNIVERSARY_FIELDS,
    CUSTOM_PREFIX,
    WATCHABLE_FIELDS,
    attribute_schema,
    member_attribute_types,
)
from ..values import SourceKind, Usage, ValueSpec, ValueSpecError
from .choices import DATE_KINDS, Frequency, Logic, Operator, TriggerKind, Weekday  # noqa: F401

# The loyalty domain's action names (Antavo's): lower-case letters, digits, underscores.
ACTION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")
ENGINE_ACTIONS = tuple(sorted(services.ENGINE_ACTIONS))  # the loyalty domain owns the list


def custom_field_types() -> dict[str, str]:
    """Custom field key -> ``FieldType`` (one query)."""
    return dict(CustomField.objects.values_list("key", "type"))


def _bump_version(workflow_id: int | None) -> None:
    """A change to a condition, action or value is a new version of its workflow."""
    if workflow_id:
        Workflow.objects.filter(pk=workflow_id).update(version=F("version") + 1, updated_at=timezone.now())


class WorkflowPart(models.Model):
    """A row of a workflow (condition, action, value): saving or deleting it bumps the workflow's version."""

    class Meta:
        abstract = True

    def owning_workflow_id(self) -> int | None:
        return self.workflow_id

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        _bump_version(self.owning_workflow_id())

    def delete(self, *args, **kwargs):
        workflow_id = self.owning_workflow_id()
        result = super().delete(*args, **kwargs)
        _bump_version(workflow_id)
        return result


class Workflow(models.Model):
    """Triggers (``Trigger`` rows: any of them starts a run), entry conditions combined with AND / OR,
    and ordered steps (``Action`` rows: Braze actions, waits, filters, loyalty changes).

    ``version`` grows with every save of the workflow or of one of its rows; a run records the
    version and the ``snapshot()`` it ran with, and a resumed run goes on with that snapshot.
    """

    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    active = models.BooleanField(default=True)
    priority = models.PositiveSmallIntegerField(default=100, help_text="Lower runs first.")
    logic = models.CharField("Conditions", max_length=3, choices=Logic.choices, default=Logic.AND)
    version = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "id"]
        indexes = [models.Index(fields=["active"])]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        if self._state.adding:
            self.version = (self.version or 0) + 1
            super().save(*args, **kwargs)
            return
        # In the database, so that bumps by the workflow's rows in between are not lost.
        self.version = F("version") + 1
        super().save(*args, **kwargs)
        self.refresh_from_db(fields=["version"])

    def trigger_kinds(self) -> set[str]:
        """The kinds of this workflow's triggers; while an editor validates unsaved trigger rows, theirs
        (``pending_trigger_kinds``, set by the admin and the configuration import)."""
        pending = getattr(self, "pending_trigger_kinds", None)
        if pending is not None:
            return set(pending)
        return set(self.triggers.values_list("kind", flat=True)) if self.pk else set()

    @property
    def trigger_description(self) -> str:
        return " or ".join(trigger.description for trigger in self.triggers.all()) or "no trigger"

    def snapshot(self, *, custom_fields: dict[str, str] | None = None) -> dict[str, Any]:
        """The whole workflow as JSON: what a run uses from start to end, and what its log keeps.

        Condition types are resolved now (``custom_fields``: key -> type, read when not given), so
        running a snapshot needs no database. ``steps`` is the main line; a filter's ``else`` its
        failure branch.
        """
        custom = custom_field_types() if custom_fields is None else custom_fields
        triggers = list(self.triggers.all())
        schema = workflow_schema({trigger.kind for trigger in triggers}, custom)
        conditions = list(self.conditions.all())
        steps = list(self.actions.all())
        return {
            "id": self.pk,
            "name": self.name,
            "version": self.version,
            "priority": self.priority,
            "triggers": [trigger.snapshot(custom_fields=custom) for trigger in triggers],
            "logic": self.logic,
            "conditions": [condition.snapshot(schema) for condition in conditions if condition.step_id is None],
            "steps": step_tree(steps, conditions, schema),
        }


def workflow_schema(kinds: set[str], custom_fields: dict[str, str]) -> conditions.AttributeSchema:
    """What conditions may name in a workflow with triggers of these kinds: the union of each kind's."""
    known: dict[str, Any] = {}
    open_prefixes: dict[str, Any] = {}
    for kind in sorted(kinds) or [""]:
        schema = attribute_schema(kind, custom_fields)
        known.update(schema.known)
        open_prefixes.update(schema.open_prefixes)
    return conditions.AttributeSchema(known, open_prefixes)


def step_tree(steps: list[Action], rows: list[Condition], schema: conditions.AttributeSchema,
              parent: int | None = None, seen: frozenset[int] = frozenset()) -> list[dict[str, Any]]:
    """The steps under ``parent`` (``None``: the main line) as snapshot dicts, each filter with its
    conditions and its ``else`` branch."""
    out = []
    for step in steps:
        if step.else_of_id != parent or step.pk in seen:
            continue
        data = step.snapshot()
        if step.kind == ActionKind.FILTER:
            data["conditions"] = [row.snapshot(schema) for row in rows if row.step_id == step.pk]
            data["else"] = step_tree(steps, rows, schema, step.pk, seen | {step.pk})
        out.append(data)
    return out


class Trigger(WorkflowPart):
    """One way a workflow starts: a loyalty event, a member field change, a date or an anniversary."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="triggers")
    position = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=20, choices=TriggerKind.choices, default=TriggerKind.EVENT)
    action = models.CharField(
        "Event action", max_length=64, blank=True,
        help_text="Event triggers: the loyalty event's action, e.g. checkout, opt_in, point_add, refund, a custom "
                  "action, or an engine event: tier_reached, tier_lost, points_spendable.")
    field = models.CharField(
        "Member field", max_length=100, blank=True,
        help_text="Field changes: the member attribute watched (e.g. tier, points_spendable, custom_fields.vip). "
                  "Anniversaries: birth_date, opted_in_at or a date custom field (custom_fields.<key>).")
    from_value = models.CharField(
        "From value", max_length=255, blank=True, help_text="Field changes: only when the old value was this (empty: any).")
    to_value = models.CharField(
        "To value", max_length=255, blank=True, help_text="Field changes: only when the new value is this (empty: any).")
    frequency = models.CharField("Frequency", max_length=10, choices=Frequency.choices, blank=True)
    time = models.TimeField(
        "Time of day", default=dt.time(9, 0), help_text="Date and anniversary triggers, in the server's time zone.")
    weekday = models.PositiveSmallIntegerField("Weekday", choices=Weekday.choices, null=True, blank=True)
    day = models.PositiveSmallIntegerField(
        "Day of month", null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(31)],
        help_text="Monthly and yearly: 1-31 (31 means the month's last day in shorter months).")
    month = models.PositiveSmallIntegerField(
        "Month", null=True, blank=True, choices=[(n, calendar.month_name[n]) for n in range(1, 13)])

    class Meta:
        ordering = ["position", "id"]
        indexes = [models.Index(fields=["kind"])]

    def __str__(self) -> str:
        return self.description

    @property
    def description(self) -> str:
        match self.kind:
            case TriggerKind.EVENT:
                return f"event {self.action}"
            case TriggerKind.FIELD_CHANGE:
                parts = [f"{self.field} changes"]
                if self.from_value:
                    parts.append(f"from {self.from_value}")
                if self.to_value:
                    parts.append(f"to {self.to_value}")
                return " ".join(parts)
            case TriggerKind.DATE:
                return f"{self.frequency} at {self.time:%H:%M}"
            case TriggerKind.ANNIVERSARY:
                return f"anniversary of {self.field} at {self.time:%H:%M}"
        return self.kind

    def date_rule(self) -> schedule.DateRule:
        return schedule.DateRule(self.frequency, self.time, self.weekday, self.day, self.month)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        match self.kind:
            case TriggerKind.EVENT:
                self.action = (self.action or "").strip()
                if not self.action:
                    errors["action"] = "An event trigger needs the event's action, e.g. checkout."
                elif not ACTION_NAME.match(self.action):
                    errors["action"] = ("An action is 1-64 lower-case letters, digits or underscores, "
                                        "starting with a letter.")
            case TriggerKind.FIELD_CHANGE:
                self._clean_field_change(errors)
            case TriggerKind.DATE:
                self._clean_date(errors)
            case TriggerKind.ANNIVERSARY:
                field = (self.field or "").strip()
                allowed = list(ANNIVERSARY_FIELDS) + [
                    f"{CUSTOM_PREFIX}{key}" for key, kind in custom_field_types().items() if kind == FieldType.DATE]
                if field not in allowed:
                    errors["field"] = (f'"{field}" is not a member date; use one of: {", ".join(allowed)}.'
                                       if field else f"Choose the member date: {', '.join(allowed)}.")
        if errors:
            raise ValidationError(errors)

    def _clean_field_change(self, errors: dict[str, str]) -> None:
        field = (self.field or "").strip()
        self.field = field
        types = member_attribute_types(custom_field_types())
        watchable = set(WATCHABLE_FIELDS) | {name for name in types if name.startswith(CUSTOM_PREFIX)}
        if field not in watchable:
            shown = ", ".join(sorted(watchable))
            errors["field"] = (f'"{field}" is not a member field that can be watched. Use one of: {shown}.'
                               if field else f"Choose the member field to watch: {shown}.")
            return
        for name in ("from_value", "to_value"):
            text = getattr(self, name)
            if text == "":
                continue
            try:
                conditions.Condition(f"member.{field}", "equals",
                                     conditions.parse_text(types[field], "equals", text), types[field])
            except conditions.ConditionError as err:
                errors[name] = f"{field}: {err.message}"

    def _clean_date(self, errors: dict[str, str]) -> None:
        frequency = self.frequency
        if not frequency:
            errors["frequency"] = "A date trigger needs a frequency."
        if frequency == Frequency.WEEKLY and self.weekday is None:
            errors["weekday"] = "A weekly trigger needs the weekday."
        if frequency in (Frequency.MONTHLY, Frequency.YEARLY) and not self.day:
            errors["day"] = "Choose the day of the month."
        if frequency == Frequency.YEARLY:
            if not self.month:
                errors["month"] = "A yearly trigger needs the month."
            elif self.day and self.day > calendar.monthrange(2024, self.month)[1]:
                errors["day"] = f"{calendar.month_name[self.month]} has no day {self.day}."

    def snapshot(self, *, custom_fields: dict[str, str] | None = None) -> dict[str, Any]:
        match self.kind:
            case TriggerKind.EVENT:
                return {"id": self.pk, "kind": self.kind, "action": self.action}
            case TriggerKind.FIELD_CHANGE:
                types = member_attribute_types(custom_field_types() if custom_fields is None else custom_fields)
                field_type = types.get(self.field)
                return {"id": self.pk, "kind": self.kind, "field": self.field, "from": self.from_value,
                        "to": self.to_value, "type": str(field_type) if field_type else None}
            case TriggerKind.DATE:
                return {"id": self.pk, "kind": self.kind, "frequency": self.frequency,
                        "time": self.time.strftime("%H:%M"), "weekday": self.weekday,
                        "day": self.day, "month": self.month}
            case _:
                return {"id": self.pk, "kind": self.kind, "field": self.field, "time": self.time.strftime("%H:%M")}


def _parent(instance: models.Model, name: str) -> Any:
    """The related object if set (in admin inlines, the parent being edited), else ``None``."""
    try:
        return getattr(instance, name)
    except models.ObjectDoesNotExist:
        return None


class Condition(WorkflowPart):
    """``<attribute> <operator> <value>``, e.g. ``event.points_earned gt 500``."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="conditions")
    step = models.ForeignKey(
        "Action", null=True, blank=True, on_delete=models.CASCADE, related_name="filter_conditions",
        verbose_name="Filter step", help_text="Empty: checked when the run starts. A filter step: checked there.")
    position = models.PositiveIntegerField(default=0)
    attribute = models.CharField(
        max_length=200,
        help_text="member.<field> (member.tier, member.custom_fields.<key>), event.<key> / event.data.<key>, "
                  "previous.<field> (field changes), trigger.years (anniversaries).")
    operator = models.CharField(max_length=12, choices=Operator.choices, default=Operator.EQUALS)
    value = models.CharField(
        max_length=1000, blank=True,
        help_text="Read by the attribute's type: 500, Gold, true, 2026-01-31. Lists (is one of): Gold, Silver "
                  'or ["Gold", "Silver"]. Exists / changed: true (default) or false.')

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"{self.attribute} {self.operator} {self.value}".strip()

    def clean(self) -> None:
        workflow = _parent(self, "workflow")
        if workflow is None:
            return
        self.attribute = (self.attribute or "").strip()
        kinds = workflow.trigger_kinds()
        schema = workflow_schema(kinds, custom_field_types())
        try:
            conditions.build_condition(schema, self.attribute, self.operator, text=self.value)
        except conditions.ConditionError as err:
            field = err.field if err.field in ("attribute", "operator", "value") else "value"
            raise ValidationError({field: err.message}) from None
        if self.operator == Operator.CHANGED and kinds != {TriggerKind.FIELD_CHANGE}:
            raise ValidationError({"operator": '"changed" can only be used in workflows triggered by a field change.'})
        step = _parent(self, "step")
        if step is not None and (step.kind != ActionKind.FILTER or step.workflow_id != workflow.pk):
            raise ValidationError({"step": "Choose a filter step of this workflow."})

    def snapshot(self, schema: conditions.AttributeSchema) -> dict[str, Any]:
        attr_type = schema.type_of(self.attribute)
        return {"attr": self.attribute, "op": self.operator, "text": self.value,
                "type": str(attr_type) if attr_type else None}


class ActionKind(models.TextChoices):
    SYNC_DATA = "sync_data", "Sync data (Braze custom attributes)"
    SEND_EVENT = "send_event", "Send a Braze custom event"
    SEND_PURCHASE = "send_purchase", "Send the checkout's items as Braze purchases"
    WAIT = "wait", "Wait"
    FILTER = "filter", "Filter (conditions checked here)"
    ADD_POINTS = "add_points", "Add points"
    DEDUCT_POINTS = "deduct_points", "Deduct points"
    SET_TIER = "set_tier", "Set the tier"
    UPDATE_FIELD = "update_field", "Update a custom field"
    TRIGGER_EVENT = "trigger_event", "Record a loyalty event"


USAGE_FOR_ACTION = {
    ActionKind.SYNC_DATA: Usage.ATTRIBUTE,
    ActionKind.SEND_EVENT: Usage.EVENT_PROPERTY,
    ActionKind.SEND_PURCHASE: Usage.PURCHASE_PROPERTY,
}


class Action(WorkflowPart):
    """One step of a workflow. Braze actions keep their attributes or properties in ``ActionValue``
    rows; a filter's conditions are ``Condition`` rows pointing at it, and the steps whose
    ``else_of`` is the filter are its failure branch. Only the fields of the step's kind are used."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="actions")
    position = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=20, choices=ActionKind.choices)
    else_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="else_steps",
        verbose_name="Else branch of", help_text="A filter step: this step runs when that filter's conditions fail.")
    event_name = models.CharField("Braze event name", max_length=255, blank=True,
                                  help_text="Send event: the custom event's name, e.g. loyalty_program_joined.")
    merge_objects = models.BooleanField(
        default=False, help_text="Sync data: merge nested objects into Braze's instead of replacing them.")
    items_path = models.CharField(
        max_length=100, default="items", blank=True, help_text="Send purchases: where the items are in the event.")
    currency_path = models.CharField(
        max_length=100, default="currency", blank=True, help_text="Send purchases: where the currency is in the event.")
    seconds = models.PositiveIntegerField("Wait (seconds)", null=True, blank=True,
                                          help_text="Wait: how long, at least 60 seconds.")
    logic = models.CharField("Filter logic", max_length=3, choices=Logic.choices, default=Logic.AND, blank=True)
    points = models.PositiveIntegerField(null=True, blank=True, help_text="Add / deduct points: how many.")
    reason = models.CharField(max_length=255, blank=True, help_text="Add / deduct points: shown in the member's history.")
    tier = models.CharField("Tier", max_length=64, blank=True, help_text="Set tier: the tier's name, e.g. Gold.")
    tier_days = models.PositiveIntegerField(
        "Tier for (days)", null=True, blank=True,
        help_text="Set tier: how long the tier is held at least (empty: until the rules reach another).")
    field = models.CharField("Custom field", max_length=100, blank=True,
                             help_text="Update field: custom_fields.<key>.")
    value = models.TextField("Value", blank=True,
                             help_text="Update field: a constant read by the field's type (JSON for lists and objects).")
    template = models.TextField("Value template", blank=True,
                                help_text="Update field: a Django template instead of a constant, e.g. {{ member.tier }}.")
    action = models.CharField("Loyalty event action", max_length=64, blank=True,
                              help_text="Record a loyalty event: a custom action, e.g. nudge_sent.")

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return steps.step_label(self.kind, self.get_kind_display(), self.step_keys())

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.kind == ActionKind.SEND_EVENT:
            name = (self.event_name or "").strip()
            self.event_name = name
            if not name:
                errors["event_name"] = "Name the Braze custom event."
            elif len(name) > 255 or name.startswith("$"):
                errors["event_name"] = "Braze event names are 1-255 characters and do not start with '$'."
        if self.kind == ActionKind.SEND_PURCHASE:
            workflow = _parent(self, "workflow")
            if workflow is not None and workflow.trigger_kinds() - {TriggerKind.EVENT}:
                errors["kind"] = "Purchases come from a checkout: use them in workflows triggered by events only."
            for name in ("items_path", "currency_path"):
                problem = conditions.path_problem(getattr(self, name))
                if problem:
                    errors[name] = f"The path {problem}."
        errors.update(steps.step_problems(self.kind, self))
        else_of = _parent(self, "else_of")
        if else_of is not None and (else_of.kind != ActionKind.FILTER or else_of.workflow_id != self.workflow_id
                                    or else_of is self or (self.pk is not None and else_of.pk == self.pk)):
            errors["else_of"] = "Choose another filter step of this workflow."
        if errors:
            raise ValidationError(errors)

    def step_keys(self) -> dict[str, Any]:
        """The step's own settings, by the names the configuration file uses (``steps.STEP_KEYS``)."""
        return {key: getattr(self, model_field) for key, model_field in steps.STEP_FIELDS.get(self.kind, {}).items()}

    def validate_unique(self, exclude=None) -> None:
        """Also: a sync-data action sends no attribute a field mapping sends (the kind may have just changed)."""
        super().validate_unique(exclude)
        if self.kind != ActionKind.SYNC_DATA or self.pk is None or (exclude and "kind" in exclude):
            return
        names = list(ActionValue.objects.filter(action_id=self.pk).values_list("name", flat=True))
        problems = mapped_attribute_problems(names, owner=action_description(self))
        if problems:
            raise ValidationError({"kind": list(problems.values())})

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.pk, "kind": self.kind}
        if self.kind in steps.BRAZE_KINDS:
            out["values"] = [value.spec_dict() for value in self.values.all()]
        if self.kind == ActionKind.SEND_EVENT:
            out["event_name"] = self.event_name
        elif self.kind == ActionKind.SYNC_DATA:
            out["merge_objects"] = self.merge_objects
        elif self.kind == ActionKind.SEND_PURCHASE:
            out["items_path"], out["currency_path"] = self.items_path, self.currency_path
        else:
            out.update(self.step_keys())
        return out


class ActionValue(WorkflowPart):
    """One attribute (sync data) or property (event, purchase): its name, Braze type and source."""

    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="values")
    position = models.PositiveIntegerField(default=0)
    name = models.CharField(max_length=255, help_text="The Braze attribute or property name.")
    braze_type = models.CharField(max_length=20, choices=[(t.value, t.value.replace("_", " ")) for t in BrazeType])
    source = models.CharField(max_length=10, choices=[
        (SourceKind.EVENT.value, "Loyalty event data"),
        (SourceKind.MEMBER.value, "Member field"),
        (SourceKind.ITEM.value, "Checkout item (purchases)"),
        (SourceKind.CONSTANT.value, "Constant"),
        (SourceKind.TEMPLATE.value, "Template"),
    ])
    path = models.CharField(
        max_length=255, blank=True,
        help_text="Event: total, currency, items, occurred_at. Member: tier, points_spendable, custom_fields.<key>. "
                  "Item: product_name.")
    constant = models.TextField(
        blank=True, help_text="Read by the type: 10, 2.5, true, 2026-01-31, text; JSON for arrays and objects.")
    template = models.TextField(
        blank=True, help_text="A Django template with member, event, previous, trigger, item, e.g. "
                              "{{ member.first_name }} reached {{ event.tier }}.")
    required = models.BooleanField(
        default=False, help_text="Fail the run when there is no value (otherwise the value is left out).")

    class Meta:
        ordering = ["position", "id"]
        constraints = [models.UniqueConstraint(fields=["action", "name"], name="workflow_value_name_unique")]

    def __str__(self) -> str:
        return self.name

    def owning_workflow_id(self) -> int | None:
        return Action.objects.filter(pk=self.action_id).values_list("workflow_id", flat=True).first()

    def spec_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.braze_type, "source": self.source, "path": self.path,
                "constant": self.constant, "template": self.template, "required": self.required}

    def validate_unique(self, exclude=None) -> None:
        """Also: a sync-data attribute is no field mapping's attribute. Checked with uniqueness since it is
        uniqueness across writers: ``braze_config import`` checks it within its file instead."""
        super().validate_unique(exclude)
        action = _parent(self, "action")
        if action is None or action.kind != ActionKind.SYNC_DATA or (exclude and "name" in exclude):
            return
        problems = mapped_attribute_problems([self.name], owner=action_description(action))
        if problems:
            raise ValidationError({"name": problems[self.name]})

    def clean(self) -> None:
        self.name = (self.name or "").strip()
        self.path = (self.path or "").strip()
        try:
            spec = ValueSpec.from_dict(self.spec_dict())
        except ValueSpecError as err:
            raise ValidationError({err.field: err.message}) from None
        action = _parent(self, "action")
        if action is None:
            return
        try:
            spec.check_name(USAGE_FOR_ACTION.get(action.kind, Usage.ATTRIBUTE))
        except ValueSpecError as err:
            raise ValidationError({err.field: err.message}) from None
        workflow = _parent(action, "workflow")
        if spec.source == SourceKind.ITEM and action.kind != ActionKind.SEND_PURCHASE:
            raise ValidationError({"source": "Checkout items are there only for purchases."})
        if workflow is None:
            return
        kinds = workflow.trigger_kinds()
        if spec.source == SourceKind.EVENT and TriggerKind.EVENT not in kinds:
            raise ValidationError({"source": "There is no loyalty event: the workflow is not triggered by an event."})
        if spec.source == SourceKind.MEMBER:
            schema = workflow_schema(kinds, custom_field_types())
            if schema.type_of(f"member.{spec.path}") is None:
                raise ValidationError({"path": f'"{spec.path}" is not a member attribute.'})


def action_description(action: Action) -> str:
    """'workflow "Bonus", action 2 (sync data)': the action's place as the run log numbers it."""
    workflow = _parent(action, "workflow")
    number = action.position
    if workflow is not None and workflow.pk and action.pk:
        ids = list(workflow.actions.values_list("pk", flat=True))
        number = ids.index(action.pk) + 1 if action.pk in ids else number
    name = workflow.name if workflow is not None else "?"
    return f'workflow "{name}", action {number} ({action.kind.replace("_", " ")})'


def mapped_attribute_problems(names: list[str], *, owner: str) -> dict[str, str]:
    """Name -> why ``owner`` cannot send it: it is a field mapping's attribute (the mapping owns it)."""
    mappings = FieldMapping.objects.filter(remote_field__in=[name.strip() for name in names],
                                           remote_kind=RemoteKind.ATTRIBUTE).order_by("pk")
    return {mapping.remote_field: mapped_attribute_collision(name=mapping.remote_field,
                                                             loyalty_field=mapping.loyalty_field, owner=owner)
            for mapping in mappings}


def sync_data_attribute_claims(names: Collection[str]) -> dict[str, str]:
    """The claimant registered with ``braze_integration.attribute_claims``: which of ``names`` a
    sync-data action sends, and which action."""
    values = (ActionValue.objects.filter(name__in=list(names), action__kind=ActionKind.SYNC_DATA)
              .select_related("action__workflow").order_by("action__workflow__name", "action__position", "pk"))
    claims: dict[str, str] = {}
    for value in values:
        claims.setdefault(value.name, action_description(value.action))
    return claims

"""Workflows (Antavo's Workflows tool): one trigger, conditions, ordered Braze actions; and their logs.

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
from django.db.models import F, Q
from django.utils import timezone

from braze_integration.models import FieldMapping, RemoteKind, mapped_attribute_collision
from braze_integration.payloads import BrazeType
from loyaltysync import services
from loyaltysync.models import CustomField, FieldType, LoyaltyEvent, Member

from . import conditions, schedule
from .context import (
    ANNIVERSARY_FIELDS,
    CUSTOM_PREFIX,
    WATCHABLE_FIELDS,
    attribute_schema,
    member_attribute_types,
)
from .values import SourceKind, Usage, ValueSpec, ValueSpecError

# The loyalty domain's action names (Antavo's): lower-case letters, digits, underscores.
ACTION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
ENGINE_ACTIONS = tuple(sorted(services.ENGINE_ACTIONS))  # the loyalty domain owns the list


class TriggerKind(models.TextChoices):
    EVENT = "event", "Loyalty event"
    FIELD_CHANGE = "field_change", "Member field change"
    DATE = "date", "Date (daily / weekly / monthly / yearly)"
    ANNIVERSARY = "anniversary", "Anniversary of a member date"


DATE_KINDS = (TriggerKind.DATE, TriggerKind.ANNIVERSARY)


class Frequency(models.TextChoices):
    DAILY = schedule.DAILY, "Daily"
    WEEKLY = schedule.WEEKLY, "Weekly"
    MONTHLY = schedule.MONTHLY, "Monthly"
    YEARLY = schedule.YEARLY, "Yearly"


class Weekday(models.IntegerChoices):
    MONDAY = 0, "Monday"
    TUESDAY = 1, "Tuesday"
    WEDNESDAY = 2, "Wednesday"
    THURSDAY = 3, "Thursday"
    FRIDAY = 4, "Friday"
    SATURDAY = 5, "Saturday"
    SUNDAY = 6, "Sunday"


class Logic(models.TextChoices):
    AND = "and", "All conditions (AND)"
    OR = "or", "Any condition (OR)"


class Operator(models.TextChoices):
    EQUALS = "equals", "equals"
    NOT_EQUALS = "not_equals", "does not equal"
    GT = "gt", "greater than"
    GTE = "gte", "greater than or equal"
    LT = "lt", "less than"
    LTE = "lte", "less than or equal"
    IN = "in", "is one of"
    NOT_IN = "not_in", "is none of"
    CONTAINS = "contains", "contains"
    EXISTS = "exists", "exists (true/false)"
    CHANGED = "changed", "changed (true/false)"


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
    """One trigger, conditions combined with AND / OR, and ordered actions.

    ``version`` grows with every save of the workflow or of one of its rows; a run records the
    version and the ``snapshot()`` it ran with.
    """

    name = models.CharField(max_length=120, unique=True)
    description = models.TextField(blank=True)
    active = models.BooleanField(default=True)
    priority = models.PositiveSmallIntegerField(default=100, help_text="Lower runs first.")

    trigger_kind = models.CharField("Trigger", max_length=20, choices=TriggerKind.choices, default=TriggerKind.EVENT)
    trigger_action = models.CharField(
        "Event action", max_length=64, blank=True,
        help_text="Event triggers: the loyalty event's action, e.g. checkout, opt_in, point_add, refund, a custom "
                  "action, or an engine event: tier_reached, tier_lost, points_spendable.")
    trigger_field = models.CharField(
        "Member field", max_length=100, blank=True,
        help_text="Field changes: the member attribute watched (e.g. tier, points_spendable, custom_fields.vip). "
                  "Anniversaries: birth_date, opted_in_at or a date custom field (custom_fields.<key>).")
    trigger_from = models.CharField(
        "From value", max_length=255, blank=True, help_text="Field changes: only when the old value was this (empty: any).")
    trigger_to = models.CharField(
        "To value", max_length=255, blank=True, help_text="Field changes: only when the new value is this (empty: any).")
    schedule_frequency = models.CharField("Frequency", max_length=10, choices=Frequency.choices, blank=True)
    schedule_time = models.TimeField(
        "Time of day", default=dt.time(9, 0), help_text="Date and anniversary triggers, in the server's time zone.")
    schedule_weekday = models.PositiveSmallIntegerField("Weekday", choices=Weekday.choices, null=True, blank=True)
    schedule_day = models.PositiveSmallIntegerField(
        "Day of month", null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(31)],
        help_text="Monthly and yearly: 1-31 (31 means the month's last day in shorter months).")
    schedule_month = models.PositiveSmallIntegerField(
        "Month", null=True, blank=True, choices=[(n, calendar.month_name[n]) for n in range(1, 13)])

    logic = models.CharField("Conditions", max_length=3, choices=Logic.choices, default=Logic.AND)
    version = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "id"]
        indexes = [models.Index(fields=["active", "trigger_kind"])]

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

    @property
    def trigger_description(self) -> str:
        match self.trigger_kind:
            case TriggerKind.EVENT:
                return f"event {self.trigger_action}"
            case TriggerKind.FIELD_CHANGE:
                parts = [f"{self.trigger_field} changes"]
                if self.trigger_from:
                    parts.append(f"from {self.trigger_from}")
                if self.trigger_to:
                    parts.append(f"to {self.trigger_to}")
                return " ".join(parts)
            case TriggerKind.DATE:
                return f"{self.schedule_frequency} at {self.schedule_time:%H:%M}"
            case TriggerKind.ANNIVERSARY:
                return f"anniversary of {self.trigger_field} at {self.schedule_time:%H:%M}"
        return self.trigger_kind

    def date_rule(self) -> schedule.DateRule:
        return schedule.DateRule(self.schedule_frequency, self.schedule_time, self.schedule_weekday,
                                 self.schedule_day, self.schedule_month)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        match self.trigger_kind:
            case TriggerKind.EVENT:
                self.trigger_action = (self.trigger_action or "").strip()
                if not self.trigger_action:
                    errors["trigger_action"] = "An event trigger needs the event's action, e.g. checkout."
                elif not ACTION_NAME.match(self.trigger_action):
                    errors["trigger_action"] = ("An action is 1-64 lower-case letters, digits or underscores, "
                                                "starting with a letter.")
            case TriggerKind.FIELD_CHANGE:
                self._clean_field_change(errors)
            case TriggerKind.DATE:
                self._clean_date(errors)
            case TriggerKind.ANNIVERSARY:
                field = (self.trigger_field or "").strip()
                allowed = list(ANNIVERSARY_FIELDS) + [
                    f"{CUSTOM_PREFIX}{key}" for key, kind in custom_field_types().items() if kind == FieldType.DATE]
                if field not in allowed:
                    errors["trigger_field"] = (f'"{field}" is not a member date; use one of: {", ".join(allowed)}.'
                                               if field else f"Choose the member date: {', '.join(allowed)}.")
        if errors:
            raise ValidationError(errors)

    def _clean_field_change(self, errors: dict[str, str]) -> None:
        field = (self.trigger_field or "").strip()
        self.trigger_field = field
        types = member_attribute_types(custom_field_types())
        watchable = set(WATCHABLE_FIELDS) | {name for name in types if name.startswith(CUSTOM_PREFIX)}
        if field not in watchable:
            shown = ", ".join(sorted(watchable))
            errors["trigger_field"] = (f'"{field}" is not a member field that can be watched. Use one of: {shown}.'
                                       if field else f"Choose the member field to watch: {shown}.")
            return
        for name in ("trigger_from", "trigger_to"):
            text = getattr(self, name)
            if text == "":
                continue
            try:
                conditions.Condition(f"member.{field}", "equals",
                                     conditions.parse_text(types[field], "equals", text), types[field])
            except conditions.ConditionError as err:
                errors[name] = f"{field}: {err.message}"

    def _clean_date(self, errors: dict[str, str]) -> None:
        frequency = self.schedule_frequency
        if not frequency:
            errors["schedule_frequency"] = "A date trigger needs a frequency."
        if frequency == Frequency.WEEKLY and self.schedule_weekday is None:
            errors["schedule_weekday"] = "A weekly trigger needs the weekday."
        if frequency in (Frequency.MONTHLY, Frequency.YEARLY) and not self.schedule_day:
            errors["schedule_day"] = "Choose the day of the month."
        if frequency == Frequency.YEARLY:
            if not self.schedule_month:
                errors["schedule_month"] = "A yearly trigger needs the month."
            elif self.schedule_day and self.schedule_day > calendar.monthrange(2024, self.schedule_month)[1]:
                errors["schedule_day"] = f"{calendar.month_name[self.schedule_month]} has no day {self.schedule_day}."

    def trigger_snapshot(self, *, custom_fields: dict[str, str] | None = None) -> dict[str, Any]:
        match self.trigger_kind:
            case TriggerKind.EVENT:
                return {"kind": self.trigger_kind, "action": self.trigger_action}
            case TriggerKind.FIELD_CHANGE:
                types = member_attribute_types(custom_field_types() if custom_fields is None else custom_fields)
                field_type = types.get(self.trigger_field)
                return {"kind": self.trigger_kind, "field": self.trigger_field, "from": self.trigger_from,
                        "to": self.trigger_to, "type": str(field_type) if field_type else None}
            case TriggerKind.DATE:
                return {"kind": self.trigger_kind, "frequency": self.schedule_frequency,
                        "time": self.schedule_time.strftime("%H:%M"), "weekday": self.schedule_weekday,
                        "day": self.schedule_day, "month": self.schedule_month}
            case _:
                return {"kind": self.trigger_kind, "field": self.trigger_field,
                        "time": self.schedule_time.strftime("%H:%M")}

    def snapshot(self, *, custom_fields: dict[str, str] | None = None) -> dict[str, Any]:
        """The whole workflow as JSON: what a run uses from start to end, and what its log keeps.

        Condition types are resolved now (``custom_fields``: key -> type, read when not given), so
        running a snapshot needs no database.
        """
        schema = attribute_schema(self.trigger_kind, custom_field_types() if custom_fields is None else custom_fields)
        return {
            "id": self.pk,
            "name": self.name,
            "version": self.version,
            "priority": self.priority,
            "trigger": self.trigger_snapshot(custom_fields=custom_fields),
            "logic": self.logic,
            "conditions": [
                {"attr": row.attribute, "op": row.operator, "text": row.value,
                 "type": (str(schema.type_of(row.attribute)) if schema.type_of(row.attribute) else None)}
                for row in self.conditions.all()
            ],
            "actions": [action.snapshot() for action in self.actions.all()],
        }


def _parent(instance: models.Model, name: str) -> Any:
    """The related object if set (in admin inlines, the parent being edited), else ``None``."""
    try:
        return getattr(instance, name)
    except models.ObjectDoesNotExist:
        return None


class Condition(WorkflowPart):
    """``<attribute> <operator> <value>``, e.g. ``event.points_earned gt 500``."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="conditions")
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
        schema = attribute_schema(workflow.trigger_kind, custom_field_types())
        try:
            conditions.build_condition(schema, self.attribute, self.operator, text=self.value)
        except conditions.ConditionError as err:
            field = err.field if err.field in ("attribute", "operator", "value") else "value"
            raise ValidationError({field: err.message}) from None
        if self.operator == Operator.CHANGED and workflow.trigger_kind != TriggerKind.FIELD_CHANGE:
            raise ValidationError({"operator": '"changed" can only be used in workflows triggered by a field change.'})


class ActionKind(models.TextChoices):
    SYNC_DATA = "sync_data", "Sync data (Braze custom attributes)"
    SEND_EVENT = "send_event", "Send a Braze custom event"
    SEND_PURCHASE = "send_purchase", "Send the checkout's items as Braze purchases"


USAGE_FOR_ACTION = {
    ActionKind.SYNC_DATA: Usage.ATTRIBUTE,
    ActionKind.SEND_EVENT: Usage.EVENT_PROPERTY,
    ActionKind.SEND_PURCHASE: Usage.PURCHASE_PROPERTY,
}


class Action(WorkflowPart):
    """One step of a workflow; its attributes or properties are ``ActionValue`` rows."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="actions")
    position = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=20, choices=ActionKind.choices)
    event_name = models.CharField("Braze event name", max_length=255, blank=True,
                                  help_text="Send event: the custom event's name, e.g. loyalty_program_joined.")
    merge_objects = models.BooleanField(
        default=False, help_text="Sync data: merge nested objects into Braze's instead of replacing them.")
    items_path = models.CharField(
        max_length=100, default="items", blank=True, help_text="Send purchases: where the items are in the event.")
    currency_path = models.CharField(
        max_length=100, default="currency", blank=True, help_text="Send purchases: where the currency is in the event.")

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        label = self.get_kind_display()
        return f"{label}: {self.event_name}" if self.kind == ActionKind.SEND_EVENT and self.event_name else label

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
            if workflow is not None and workflow.trigger_kind != TriggerKind.EVENT:
                errors["kind"] = "Purchases come from a checkout: use them in workflows triggered by an event."
            for name in ("items_path", "currency_path"):
                problem = conditions.path_problem(getattr(self, name))
                if problem:
                    errors[name] = f"The path {problem}."
        if errors:
            raise ValidationError(errors)

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
        out: dict[str, Any] = {"id": self.pk, "kind": self.kind,
                               "values": [value.spec_dict() for value in self.values.all()]}
        if self.kind == ActionKind.SEND_EVENT:
            out["event_name"] = self.event_name
        elif self.kind == ActionKind.SYNC_DATA:
            out["merge_objects"] = self.merge_objects
        else:
            out["items_path"], out["currency_path"] = self.items_path, self.currency_path
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
            raise ValidationError({"name": err.message}) from None
        workflow = _parent(action, "workflow")
        if spec.source == SourceKind.ITEM and action.kind != ActionKind.SEND_PURCHASE:
            raise ValidationError({"source": "Checkout items are there only for purchases."})
        if workflow is None:
            return
        if spec.source == SourceKind.EVENT and workflow.trigger_kind != TriggerKind.EVENT:
            raise ValidationError({"source": "There is no loyalty event: the workflow is not triggered by an event."})
        if spec.source == SourceKind.MEMBER:
            schema = attribute_schema(workflow.trigger_kind, custom_field_types())
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


# --- the durable trigger queue and the logs ---------------------------------------------------------


class TriggerStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class TriggerRecord(models.Model):
    """Something that may start workflows, written in the transaction that caused it.

    ``key`` identifies it for deduplication: ``event:<LoyaltyEvent id>``, ``change:<uuid>``,
    ``date:<workflow>:<period>:<member>``, ``anniversary:<workflow>:<year>:<member>``. Every Braze
    item a workflow queues for it has the dedupe key ``wf:<workflow>:trig:<key>:act:<action>``.
    """

    key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=20, choices=TriggerKind.choices)
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="workflow_triggers")
    event = models.ForeignKey(LoyaltyEvent, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    workflow = models.ForeignKey(Workflow, null=True, blank=True, on_delete=models.CASCADE,
                                 related_name="trigger_records", help_text="Date triggers: the workflow scheduled.")
    changes = models.JSONField(default=dict, blank=True, help_text="Field changes: {attribute: [old, new]}.")
    period = models.CharField(max_length=32, blank=True, help_text="Date triggers: the period (e.g. 2026-03-04).")
    occurred_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=12, choices=TriggerStatus.choices, default=TriggerStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["id"], condition=Q(status__in=["pending", "processing"]), name="workflow_trigger_open"),
            models.Index(fields=["status", "processed_at"]),
        ]

    def __str__(self) -> str:
        return self.key

    @property
    def description(self) -> str:
        match self.kind:
            case TriggerKind.EVENT:
                return f"event #{self.event_id} {self.event.action if self.event_id else ''}".strip()
            case TriggerKind.FIELD_CHANGE:
                return "change: " + ", ".join(f"{name} {old!r} → {new!r}" for name, (old, new) in self.changes.items())
            case _:
                return f"{self.kind} {self.period}"


class RunOutcome(models.TextChoices):
    SENT = "sent", "Sent"
    FILTERED_OUT = "filtered_out", "Filtered out"
    ERROR = "error", "Error"


class WorkflowRun(models.Model):
    """One workflow run for one member: what triggered it, the version it used, and what it queued."""

    workflow = models.ForeignKey(Workflow, null=True, on_delete=models.SET_NULL, related_name="runs")
    workflow_name = models.CharField(max_length=120)
    workflow_version = models.PositiveIntegerField()
    snapshot = models.JSONField(help_text="The workflow as the run saw it.")
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="workflow_runs")
    trigger = models.ForeignKey(TriggerRecord, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    trigger_description = models.CharField(max_length=255)
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=12, choices=RunOutcome.choices)
    queued = models.JSONField(default=list, blank=True, help_text="Outbox items queued: id, kind, summary.")
    detail = models.TextField(blank=True, help_text="Why it was filtered out.")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["workflow", "-started_at"]),
            models.Index(fields=["member", "-started_at"]),
            models.Index(fields=["started_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_name} v{self.workflow_version} for {self.member_id}: {self.outcome}"


class DateTriggerScan(models.Model):
    """One scan of the members for a date workflow's period; a finished scan is not repeated."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="date_scans")
    period = models.CharField(max_length=32)
    due_at = models.DateTimeField()
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    members_matched = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [models.UniqueConstraint(fields=["workflow", "period"], name="workflow_date_scan_once")]

    def __str__(self) -> str:
        return f"{self.workflow_id} {self.period}"

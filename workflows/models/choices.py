"""The fixed choices of workflow definitions: trigger kinds, date frequencies, weekdays, condition logic
and operators."""

from __future__ import annotations

from django.db import models

from .. import schedule


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

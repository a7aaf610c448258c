"""The loyalty domain: members, tiers, custom fields, loyalty events and the points ledger.

Models hold data, validation and cheap properties. Every state change goes through
``loyaltysync.services``; the admin, the REST API and the commands call those services.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .fieldtypes import FieldType, coerce
from .tracking import TrackedFieldsMixin


class MemberStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    INACTIVE = "inactive", "Inactive"
    OPTED_OUT = "opted_out", "Opted out"


class Consent(models.TextChoices):
    """Marketing consent for one channel, in Braze's vocabulary (``email_subscribe`` and subscription groups).

    Consent is not loyalty membership: a member may earn points and receive no e-mail, or the other way round.
    """

    OPTED_IN = "opted_in", "Opted in (explicit, double opt-in)"
    SUBSCRIBED = "subscribed", "Subscribed"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    UNSET = "", "Not given"


class Gender(models.TextChoices):
    FEMALE = "female", "Female"
    MALE = "male", "Male"
    OTHER = "other", "Other"
    UNKNOWN = "", "Unknown"


class Tier(models.Model):
    """A level of the program, reached by lifetime earned points."""

    name = models.CharField(max_length=64, unique=True)
    points_threshold = models.PositiveIntegerField(
        unique=True, help_text="Lifetime earned points needed to reach this tier."
    )
    multiplier = models.DecimalField(
        max_digits=5, decimal_places=2, default=Decimal("1.00"), help_text="Earning multiplier for members in this tier."
    )
    order = models.PositiveSmallIntegerField(default=0, help_text="Display order (lowest first).")
    benefits = models.TextField(blank=True, help_text="What members of this tier get (sent with tier events).")

    class Meta:
        ordering = ["points_threshold"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.multiplier is not None and self.multiplier <= 0:
            raise ValidationError({"multiplier": "The multiplier must be greater than 0."})


_custom_key_validator = RegexValidator(
    r"^[a-z][a-z0-9_]{0,62}\Z", "Use lower-case letters, digits and underscores, starting with a letter."
)


class CustomField(models.Model):
    """A field the program defines for its members; values live in ``Member.custom_fields``."""

    key = models.CharField(max_length=63, unique=True, validators=[_custom_key_validator])
    label = models.CharField(max_length=128)
    type = models.CharField(max_length=20, choices=FieldType.choices)
    help_text = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.label} ({self.key})"

    def to_python(self, value: Any) -> Any:
        """Return ``value`` converted to this field's type, or raise ``ValidationError``."""
        return coerce(self.type, value)


# 1-255 characters without whitespace or control characters (C0, DEL, C1); ``\Z``, as ``$`` would let
# a final newline through. The services add what a pattern cannot say (``services.member_id_problem``).
MEMBER_ID_PATTERN = r"^[^\s\x00-\x1f\x7f-\x9f]{1,255}\Z"
_member_id_validator = RegexValidator(
    MEMBER_ID_PATTERN, "The member id must be 1-255 characters without spaces or control characters."
)


class Member(TrackedFieldsMixin):
    """A loyalty member. ``member_id`` is the shop's id and becomes Braze's ``external_id``."""

    member_id = models.CharField(max_length=255, unique=True, validators=[_member_id_validator])
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    email = models.EmailField(blank=True, db_index=True)
    phone = models.CharField(max_length=32, blank=True)
    birth_date = models.DateField(null=True, blank=True)
    gender = models.CharField(max_length=10, choices=Gender.choices, blank=True)
    language = models.CharField(max_length=10, blank=True, help_text="ISO 639-1 code, e.g. en.")
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166-1 alpha-2 code, e.g. DE.")

    status = models.CharField(max_length=10, choices=MemberStatus.choices, default=MemberStatus.ACTIVE)
    consent_email = models.CharField(
        "E-mail consent", max_length=12, choices=Consent.choices, blank=True, help_text="Marketing e-mail consent."
    )
    consent_sms = models.CharField(
        "SMS consent", max_length=12, choices=Consent.choices, blank=True, help_text="Marketing SMS consent."
    )
    opted_in_at = models.DateTimeField(null=True, blank=True)
    opted_out_at = models.DateTimeField(null=True, blank=True)

    # Balances are kept by the ledger services; they are never written by hand.
    points_earned = models.IntegerField(default=0, help_text="Lifetime points earned (qualifies for tiers).")
    points_spent = models.IntegerField(default=0)
    points_pending = models.IntegerField(default=0, help_text="Earned but not yet spendable.")
    points_expired = models.IntegerField(default=0)
    points_spendable = models.IntegerField(default=0)

    purchase_count = models.PositiveIntegerField(default=0)
    purchase_total = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0.00"))
    last_purchase_at = models.DateTimeField(null=True, blank=True)
    last_purchase = models.JSONField(
        null=True, blank=True, help_text="The last checkout: transaction id, total, currency and items."
    )

    tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.PROTECT, related_name="members")
    tier_since = models.DateTimeField(null=True, blank=True)
    # A tier given by hand (a workflow's "set tier"): the rules may raise the member above it, never
    # below it until ``tier_floor_until`` (no date: until it is given again or removed).
    tier_floor = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    tier_floor_until = models.DateTimeField(null=True, blank=True)

    custom_fields = models.JSONField(default=dict, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["member_id"]
        indexes = [models.Index(fields=["status"]), models.Index(fields=["tier"])]

    def __str__(self) -> str:
        return self.member_id

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def tier_floor_at(self, now: dt.datetime) -> Tier | None:
        """The tier given by hand while it is held at ``now``, else ``None``."""
        if self.tier_floor_id is None or (self.tier_floor_until is not None and self.tier_floor_until <= now):
            return None
        return self.tier_floor


class EventSource(models.TextChoices):
    API = "api", "REST API"
    ADMIN = "admin", "Admin"
    IMPORT = "import", "Import"
    ENGINE = "engine", "Loyalty engine"
    SHELL = "shell", "Shell / command"
    WORKFLOW = "workflow", "Workflow"


class LoyaltyEvent(models.Model):
    """A write-once record of something that happened to a member (Antavo's event)."""

    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="events")
    action = models.CharField(max_length=64, db_index=True)
    data = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField(default=timezone.now, help_text="When it happened (effective time).")
    created_at = models.DateTimeField(auto_now_add=True)
    source = models.CharField(max_length=10, choices=EventSource.choices, default=EventSource.API)
    # Set for checkouts only; the constraint refuses a second checkout with the same id.
    transaction_id = models.CharField(max_length=128, null=True, blank=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["transaction_id"], condition=Q(action="checkout"), name="unique_checkout_transaction"
            )
        ]
        indexes = [models.Index(fields=["member", "-occurred_at"])]

    def __str__(self) -> str:
        return f"{self.action} for {self.member_id} at {self.occurred_at:%Y-%m-%d %H:%M}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise ValidationError("Loyalty events are write-once: they cannot be changed.")
        super().save(*args, **kwargs)


class LedgerKind(models.TextChoices):
    EARN = "earn", "Earn"
    SPEND = "spend", "Spend"
    EXPIRE = "expire", "Expire"
    ADJUST = "adjust", "Adjust"
    REFUND = "refund", "Refund"


class PointsTransaction(models.Model):
    """One change of a member's points. Earnings carry their own pending period and expiry.

    ``remaining`` is what is left of an earning after spending (oldest first) and expiry.
    """

    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="ledger")
    kind = models.CharField(max_length=10, choices=LedgerKind.choices)
    points = models.IntegerField(help_text="Signed: positive adds, negative takes away.")
    remaining = models.IntegerField(default=0)
    event = models.ForeignKey(LoyaltyEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    note = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    available_at = models.DateTimeField(default=timezone.now, help_text="When the points become spendable.")
    # An explicit flag rather than ``available_at > now``: the release job clears it and records a
    # ``points_spendable`` event, so every member hears once that their points can be spent.
    pending = models.BooleanField(default=False, help_text="Earned points still waiting for available_at.")
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["member", "kind", "available_at"]),
            models.Index(fields=["expires_at"], condition=Q(remaining__gt=0), name="ledger_open_expiry"),
            models.Index(fields=["available_at"], condition=Q(pending=True), name="ledger_pending_release"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.points:+d} for {self.member_id}"


class IdempotencyKey(models.Model):
    """A client's idempotency key (the ``Idempotency-Key`` header), per API user, with a digest of the request
    it first came with. Each part of that request's answer is an ``IdempotentResult``."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_digest = models.CharField(max_length=64, help_text="SHA-256 of the operation and its body.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="unique_idempotency_key_per_user")]

    def __str__(self) -> str:
        return f"{self.key} of user #{self.user_id}"


class IdempotentResult(models.Model):
    """The answer to one part of an idempotent request (the event, or one event of a bulk request).

    The row is inserted in the same transaction as the work it answers, so a part is done at most once:
    a second request that inserts the same part waits for the first, then replays its answer.
    """

    idempotency_key = models.ForeignKey(IdempotencyKey, on_delete=models.CASCADE, related_name="results")
    part = models.PositiveIntegerField(help_text="0 for one event; the event's index in a bulk request.")
    status = models.PositiveSmallIntegerField()
    body = models.JSONField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["idempotency_key", "part"], name="unique_idempotent_result_part")
        ]

    def __str__(self) -> str:
        return f"{self.idempotency_key}[{self.part}]: {self.status}"


class CustomActionManager(models.Manager):
    def get_by_natural_key(self, name: str) -> CustomAction:
        return self.get(name=name)


class CustomAction(models.Model):
    """A program-defined loyalty event action (e.g. ``store_visit``). Only declared actions are accepted,
    so a misspelt action is refused rather than recorded as a new kind of event.

    Its name is its natural key: fixtures declare actions by name, so loading one into a database that
    already declares the action updates it instead of failing on the unique name."""

    name = models.CharField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(r"^[a-z][a-z0-9_]{0,63}\Z", "Use 1-64 lower-case letters, digits and underscores, "
                                   "starting with a letter.")],
    )
    description = models.CharField(max_length=255, blank=True)

    objects = CustomActionManager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def natural_key(self) -> tuple[str]:
        return (self.name,)


class ProgramSettings(models.Model):
    """The program's earning rules, one row per version: a change adds a row, so the rows are the history.

    The newest row is in force. Without any row, the ``LOYALTY_*`` environment variables are the rules.
    ``rates`` converts other currencies into the program currency: ``{"USD": "0.92"}`` reads
    "1 USD is worth 0.92 units of the program currency".
    """

    points_per_unit = models.DecimalField(
        "Points per currency unit", max_digits=9, decimal_places=4,
        help_text="Points per unit of the program currency spent, before the tier multiplier.",
    )
    pending_days = models.PositiveIntegerField(help_text="Days checkout points stay pending (the return period).")
    expiry_days = models.PositiveIntegerField(help_text="Days until earned points expire (0: never).")
    currency = models.CharField("Program currency", max_length=3, help_text="ISO 4217 code, e.g. EUR.")
    rates = models.JSONField(
        "Rates of other currencies", default=dict, blank=True,
        help_text='Value of one unit of another currency in the program currency, e.g. {"USD": "0.92", "GBP": "1.17"}. '
        "Checkouts in a currency without a rate are refused.",
    )
    note = models.CharField(max_length=255, blank=True, help_text="Why the rules changed (kept in the history).")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "program settings"
        verbose_name_plural = "program settings"

    def __str__(self) -> str:
        return f"Program settings of {self.created_at:%Y-%m-%d %H:%M}"

    def clean(self) -> None:
        from .currencies import currency_problem, rates_problems

        errors: dict[str, str] = {}
        self.currency = (self.currency or "").strip().upper()
        if problem := currency_problem(self.currency):
            errors["currency"] = problem
        if self.points_per_unit is not None and self.points_per_unit < 0:
            errors["points_per_unit"] = "must not be negative."
        problems = rates_problems(self.rates, program_currency=self.currency)
        if problems:
            errors["rates"] = " ".join(problems)
        if errors:
            raise ValidationError(errors)


class ErasureRecord(models.Model):
    """One erased member, without personal data: when, by whom, through what, and a keyed one-way hash of
    the member id (``loyaltysync.services.erasure.member_id_hash``). The hash is also the tombstone that
    keeps anything about that member from being sent anywhere again.

    The totals stay for accounting (the points liability written off, lifetime sums); they are not linked to
    a person once the member row is gone.
    """

    member_hash = models.CharField(max_length=64, unique=True, help_text="HMAC-SHA256 of the member id.")
    erased_at = models.DateTimeField(default=timezone.now, db_index=True)
    erased_by = models.CharField(max_length=150, blank=True, help_text="The staff user or API user who asked.")
    source = models.CharField(max_length=10, choices=EventSource.choices)
    events_deleted = models.PositiveIntegerField(default=0)
    ledger_rows_deleted = models.PositiveIntegerField(default=0)
    points_earned = models.IntegerField(default=0, help_text="Lifetime points earned (kept for accounting).")
    points_spent = models.IntegerField(default=0)
    points_forfeited = models.IntegerField(default=0, help_text="Spendable and pending points written off.")
    purchase_count = models.PositiveIntegerField(default=0)
    purchase_total = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0.00"))

    class Meta:
        ordering = ["-erased_at", "-id"]
        permissions = [("erase_members", "Can erase members (right to be forgotten)")]

    def __str__(self) -> str:
        return f"Erasure {self.member_hash[:12]}… at {self.erased_at:%Y-%m-%d %H:%M}"

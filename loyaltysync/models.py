"""The loyalty domain: members, tiers, custom fields, loyalty events and the points ledger.

Models hold data, validation and cheap properties. Every state change goes through
``loyaltysync.services``; the admin, the REST API and the commands call those services.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from .fieldtypes import FieldType, coerce


class MemberStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    INACTIVE = "inactive", "Inactive"
    OPTED_OUT = "opted_out", "Opted out"


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
    r"^[a-z][a-z0-9_]{0,62}$", "Use lower-case letters, digits and underscores, starting with a letter."
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


class TrackedFieldsMixin(models.Model):
    """Remembers the values a row was loaded with, so listeners can ask what a save changed.

    The snapshot is taken in ``from_db`` and renewed after ``save()`` (after every ``post_save``
    receiver has run), so ``changed_fields()`` inside a receiver compares against the stored row.
    """

    class Meta:
        abstract = True

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._loaded_values = dict(zip(field_names, values, strict=True))
        return instance

    def save(self, *args, **kwargs):
        # One transaction around the row and whatever post_save receivers record about it, so a
        # change is never stored without the listeners' bookkeeping (or the other way round).
        with transaction.atomic(using=kwargs.get("using")):
            super().save(*args, **kwargs)
        self._loaded_values = {f.attname: getattr(self, f.attname) for f in self._meta.concrete_fields}

    @property
    def loaded_values(self) -> dict[str, Any] | None:
        """The values as last read from or written to the database; ``None`` for a new object."""
        return getattr(self, "_loaded_values", None)

    def changed_fields(self) -> set[str] | None:
        """Attribute names whose value differs from the loaded row; ``None`` when unknown (new object).

        JSON fields of dicts are compared key by key and reported as ``"<field>.<key>"`` too.
        """
        loaded = self.loaded_values
        if loaded is None:
            return None
        changed: set[str] = set()
        for field in self._meta.concrete_fields:
            name = field.attname
            if name not in loaded:
                continue
            old, new = loaded[name], getattr(self, name)
            if old != new:
                changed.add(name)
                if isinstance(old, dict) or isinstance(new, dict):
                    old_d, new_d = old or {}, new or {}
                    changed.update(
                        f"{name}.{key}" for key in old_d.keys() | new_d.keys() if old_d.get(key) != new_d.get(key)
                    )
        return changed

    def previous_value(self, name: str) -> Any:
        loaded = self.loaded_values or {}
        return loaded.get(name)


_member_id_validator = RegexValidator(
    r"^[^\s]{1,255}$", "The member id must be 1-255 characters without spaces."
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


class EventSource(models.TextChoices):
    API = "api", "REST API"
    ADMIN = "admin", "Admin"
    IMPORT = "import", "Import"
    ENGINE = "engine", "Loyalty engine"
    SHELL = "shell", "Shell / command"


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

"""The Braze connection, its field mappings, and the sync's durable state.

Every piece of work is a database row, so nothing depends on a task surviving in the broker:
``MemberSyncState`` says a member must be sent, ``OutboxItem`` holds a custom event, purchase or
ad-hoc attributes, ``SyncRequest`` records each request with Braze's answer.
"""

from __future__ import annotations

import re
import uuid

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from loyaltysync.models import Member

from . import payloads, standard_fields
from .attribute_claims import attribute_claims
from .endpoints import EndpointRefused, Instance, endpoint_normalize
from .secrets import EncryptedTextField


class ConnectionStatus(models.TextChoices):
    NEVER_CHECKED = "never_checked", "Never checked"
    CONNECTED = "connected", "Connected"
    NEEDS_ATTENTION = "needs_attention", "Needs attention"


class SendMode(models.TextChoices):
    ALL_MAPPED_FIELDS = "all_mapped_fields", "All mapped fields when any changes"
    CHANGED_FIELDS = "changed_fields", "Only the fields that changed"


class Connection(models.Model):
    """Antavo's Connect screen: where Braze is and how to talk to it. At most one is active."""

    name = models.CharField(max_length=100, default="Braze")
    instance_url = models.CharField(
        "Instance URL", max_length=255, help_text="The REST endpoint of your Braze instance, e.g. " + Instance.EU_01.value
    )
    api_key = EncryptedTextField(
        "REST API key", blank=True, help_text="A REST API key with the users.track permission. Stored encrypted."
    )
    api_key_hint = models.CharField(max_length=8, blank=True, editable=False)
    app_id = models.CharField("App identifier", max_length=64, blank=True,
                              help_text="Sent as app_id with events and purchases (optional).")
    active = models.BooleanField(default=True)
    send_mode = models.CharField(max_length=20, choices=SendMode.choices, default=SendMode.ALL_MAPPED_FIELDS)
    batch_size = models.PositiveSmallIntegerField(
        default=75, validators=[MinValueValidator(1), MaxValueValidator(75)],
        help_text="Objects per request (Braze allows 75 in all on current plans).",
    )
    per_array_limit = models.BooleanField(
        default=False, help_text="Older Braze plans: count the limit per array (75 attributes + 75 events + 75 purchases)."
    )
    rate_limit_requests = models.PositiveIntegerField(default=3000, validators=[MinValueValidator(1)])
    rate_limit_seconds = models.PositiveIntegerField(default=3, validators=[MinValueValidator(1)])
    max_attempts = models.PositiveSmallIntegerField(
        default=8, validators=[MinValueValidator(1)], help_text="Tries before a change goes to the dead letters."
    )

    status = models.CharField(max_length=20, choices=ConnectionStatus.choices, default=ConnectionStatus.NEVER_CHECKED)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_message = models.TextField(blank=True)
    paused_until = models.DateTimeField(null=True, blank=True, help_text="Rate-limited: nobody sends before this time.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["active"], condition=Q(active=True), name="one_active_connection")]
        permissions = [("verify_connection", "Can check the Braze connection (Connect)")]

    def __str__(self) -> str:
        return f"{self.name} ({self.instance_url})"

    # Set by save(): whether it changed the instance URL or the API key of the active connection.
    workspace_changed = False

    def save(self, *args, **kwargs):
        """Save; a new instance URL or API key of the active connection forgets what was sent.

        The URL or the key may lead to another Braze workspace, which holds none of the values the
        sync remembers as sent (``MemberSyncState.last_sent_values``): kept, they would make a resync
        skip almost every member. Forgotten, the next resync sends every member's values."""
        before = None
        if self.pk is not None:
            before = Connection.objects.filter(pk=self.pk).values_list("instance_url", "api_key").first()
        super().save(*args, **kwargs)
        self.workspace_changed = bool(
            before is not None and self.active
            and (before[0] != self.instance_url or (before[1] and before[1] != self.api_key)))
        if self.workspace_changed:
            MemberSyncState.objects.filter(Q(last_sent_values__isnull=False) | Q(maybe_sent__isnull=False)).update(
                last_sent_values=None, maybe_sent=None)

    def clean(self) -> None:
        try:
            self.instance_url = endpoint_normalize(self.instance_url)
        except EndpointRefused as err:
            raise ValidationError({"instance_url": str(err)}) from None

    def set_api_key(self, key: str) -> None:
        self.api_key = key.strip()
        self.api_key_hint = self.api_key[-4:] if len(self.api_key) >= 12 else ""

    @property
    def api_key_display(self) -> str:
        if not self.api_key:
            return "not set"
        return f"…{self.api_key_hint}" if self.api_key_hint else "set"


API_KEY_MAX_LENGTH = 200  # Braze's REST API keys are 36 characters
_API_KEY_TEXT = re.compile(r"[\x21-\x7e]*\Z")  # printable ASCII without spaces


def api_key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a REST API key (a clipboard pasted by mistake, a line break that would go
    into the Authorization header), as "The REST API key ..." goes on; ``None`` when it may be one."""
    if len(key) > API_KEY_MAX_LENGTH:
        return f"is {len(key):,} characters long; a REST API key has at most {API_KEY_MAX_LENGTH}"
    if not _API_KEY_TEXT.match(key):
        return "holds a space, a line break or a character outside printable ASCII; a REST API key has none"
    return None


class RemoteKind(models.TextChoices):
    """What a mapping's remote field names: a Braze attribute (custom or standard), or a subscription group."""

    ATTRIBUTE = "attribute", "Attribute"
    SUBSCRIPTION_GROUP = "subscription_group", "Subscription group"


class FieldMapping(models.Model):
    """Sync fields: one loyalty field sent as one Braze attribute (custom or standard), or a consent field
    sent as the state of one subscription group (``remote_field`` is then the group's id)."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="mappings")
    loyalty_field = models.CharField(max_length=100)
    remote_kind = models.CharField("Kind", max_length=20, choices=RemoteKind.choices, default=RemoteKind.ATTRIBUTE)
    remote_field = models.CharField("Remote field (Braze attribute)", max_length=255)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["connection", "remote_field"], name="unique_remote_field_per_connection")
        ]

    def __str__(self) -> str:
        if self.is_subscription_group:
            return f"{self.loyalty_field} → subscription group {self.remote_field}"
        return f"{self.loyalty_field} → {self.remote_field}"

    @property
    def is_subscription_group(self) -> bool:
        return self.remote_kind == RemoteKind.SUBSCRIPTION_GROUP

    def clean(self) -> None:
        """The loyalty field exists, the remote name is one Braze takes, and the loyalty field may feed
        it: a standard attribute's rule (``dob`` needs a date field) or a subscription group's (a consent field)."""
        from .fields import loyalty_fields

        errors = {}
        field = loyalty_fields().get(self.loyalty_field) if self.loyalty_field else None
        if self.loyalty_field and field is None:
            errors["loyalty_field"] = f'Unknown loyalty field "{self.loyalty_field}".'
        self.remote_field = (self.remote_field or "").strip()
        if self.is_subscription_group:
            problem = (standard_fields.subscription_group_problem(loyalty_field=field, group_id=self.remote_field)
                       if field is not None else standard_fields.group_id_problem(self.remote_field))
            if problem:
                errors["remote_field"] = problem
        elif problem := payloads.remote_name_problem(self.remote_field):
            errors["remote_field"] = f"The Braze attribute name {problem}."
        elif field is not None and (
                problem := standard_fields.mapping_problem(loyalty_field=field, remote_field=self.remote_field)):
            errors["remote_field"] = problem
        if errors:
            raise ValidationError(errors)

    def validate_unique(self, exclude=None) -> None:
        """Also: no workflow sends this attribute (see ``attribute_claims``). Checked with uniqueness
        since it is uniqueness across writers: ``braze_config import`` checks it within its file."""
        super().validate_unique(exclude)
        name = (self.remote_field or "").strip()
        if not name or (exclude and "remote_field" in exclude) or self.is_subscription_group:
            return
        owner = attribute_claims([name]).get(name)
        if owner:
            raise ValidationError({"remote_field": mapped_attribute_collision(
                name=name, loyalty_field=self.loyalty_field, owner=owner)})

    @property
    def is_standard_profile_field(self) -> bool:
        return not self.is_subscription_group and self.remote_field in standard_fields.STANDARD_PROFILE_FIELDS


def mapped_attribute_collision(*, name: str, loyalty_field: str, owner: str) -> str:
    """Why a mapped attribute cannot also be sent by ``owner`` (a workflow's action), naming both."""
    return (f'The Braze attribute "{name}" is both the field mapping of the loyalty field {loyalty_field} and '
            f"sent by {owner}. Braze would keep whichever came last while the sync records the mapped value as "
            "sent, and a resync would not repair it: give one of them another name.")


class SyncStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SYNCED = "synced", "Synced"
    FAILED = "failed", "Failed"  # Braze refused the data: sent again only after the member changes
    DEAD = "dead", "Dead letter"  # transient failures until max_attempts: waits for a retry


class MemberSyncState(models.Model):
    """Where one member stands with Braze. ``version`` counts changes; ``synced_version`` is the last one Braze accepted."""

    member = models.OneToOneField(Member, on_delete=models.CASCADE, primary_key=True, related_name="braze_sync")
    status = models.CharField(max_length=10, choices=SyncStatus.choices, default=SyncStatus.PENDING)
    version = models.PositiveBigIntegerField(default=1)
    synced_version = models.PositiveBigIntegerField(default=0)
    dirty_since = models.DateTimeField(null=True, blank=True, help_text="The oldest change not yet in Braze.")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    claimed_version = models.PositiveBigIntegerField(default=0, help_text="The version the current claim sends.")
    held_until = models.DateTimeField(
        null=True, blank=True,
        help_text="Not sent before this time unless released: more for the same request is on its way (a workflow run).")
    last_sent_values = models.JSONField(null=True, blank=True, help_text="The mapped values Braze last accepted.")
    maybe_sent = models.JSONField(
        null=True, blank=True,
        help_text="Mapped attributes that a request which may have reached Braze carried, with no answer since "
                  "(a list of names; true: every one, its worker stopped): Braze may hold values that "
                  "last_sent_values does not, so the next send carries them whatever their value, a null included.")
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_kind = models.CharField(max_length=20, blank=True)
    last_request = models.ForeignKey("SyncRequest", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        verbose_name = "member sync state"
        indexes = [models.Index(fields=["status", "dirty_since"]), models.Index(fields=["claim_token"])]

    def __str__(self) -> str:
        return f"{self.member_id}: {self.status}"


class RowidAutoField(models.BigAutoField):
    """A ``BigAutoField`` that on SQLite is the table's plain rowid, without ``AUTOINCREMENT``.

    Django declares SQLite's auto fields ``AUTOINCREMENT``, which keeps the highest id ever given in
    ``sqlite_sequence`` and so writes that table's page in every inserting transaction: 18 of the
    29.5 µs the change row added to a save (``bench/README.md``). Without it SQLite gives the highest
    id present plus one, so an id may come again once its row is deleted. For rows that are only
    appended, and deleted in one writer's transaction (the fold's), that is harmless. Elsewhere as
    ``BigAutoField``."""

    def db_type_suffix(self, connection):
        return None if connection.vendor == "sqlite" else super().db_type_suffix(connection)


class MemberChange(models.Model):
    """A saved change of a member that a mapping reads, not yet in the member's sync state.

    A save appends one row and touches nothing a worker writes, so it never waits for a worker that
    is recording Braze's answer. Workers fold these rows into ``MemberSyncState`` (a higher version,
    pending) before they claim (``queue.changes_fold``), and so do the admin's and commands' counts.
    No foreign key: an erasure neither waits for nor trips over a change not folded yet; the fold
    leaves out members that no longer exist.

    A row with ``held_until`` is a hold (``queue.hold``): the member's next send waits until then, or
    until ``queue.unhold``; the fold carries it to the state row."""

    id = RowidAutoField(primary_key=True)
    member_id = models.BigIntegerField()
    changed_at = models.DateTimeField()
    held_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "member change not yet folded"

    def __str__(self) -> str:
        return f"member {self.member_id} changed at {self.changed_at}"


class OutboxKind(models.TextChoices):
    EVENT = "event", "Custom event"
    PURCHASE = "purchase", "Purchase"
    ATTRIBUTES = "attributes", "Ad-hoc attributes"


class OutboxStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    DEAD = "dead", "Dead letter"


class OutboxItem(models.Model):
    """Something other than the mapped fields to send for a member: a custom event, a purchase, or
    ad-hoc attributes (from workflows). ``dedupe_key`` makes enqueuing the same thing twice a no-op,
    so a retried trigger never produces a second event."""

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    dedupe_key = models.CharField(max_length=255, unique=True, null=True, blank=True)
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="braze_outbox")
    kind = models.CharField(max_length=12, choices=OutboxKind.choices)
    payload = models.JSONField(help_text="The object as sent, without the identifier.")
    status = models.CharField(max_length=10, choices=OutboxStatus.choices, default=OutboxStatus.PENDING)
    origin = models.CharField(max_length=255, blank=True, help_text="What produced it (e.g. a workflow run).")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # Times it went out in a request whose answer was lost: Braze may hold it that many extra times.
    ambiguous_sends = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    request = models.ForeignKey("SyncRequest", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["member", "status"])]

    def __str__(self) -> str:
        return f"{self.kind} for {self.member_id} ({self.status})"


class RequestOutcome(models.TextChoices):
    SENDING = "sending", "Sending"
    SUCCESS = "success", "Success"
    PARTIAL = "partial", "Partly refused"
    REJECTED = "rejected", "Refused (400/413)"
    RATE_LIMITED = "rate_limited", "Rate limited (429)"
    AUTH_ERROR = "auth", "Credentials / permission (401/403/404)"
    SERVER_ERROR = "server_error", "Braze error (5xx)"
    TRANSPORT = "transport", "No answer (timeout / connection)"
    CLIENT_ERROR = "client_error", "Other client error"
    LOST = "lost", "Worker stopped before the answer"


class SyncRequest(models.Model):
    """One request to `/users/track` and Braze's answer: the sync log."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="requests")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    trigger = models.CharField(max_length=20, default="sync", help_text="sync, resync, retry, verify")
    outcome = models.CharField(max_length=20, choices=RequestOutcome.choices, default=RequestOutcome.SENDING)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    attributes_count = models.PositiveSmallIntegerField(default=0)
    events_count = models.PositiveSmallIntegerField(default=0)
    purchases_count = models.PositiveSmallIntegerField(default=0)
    bytes_sent = models.PositiveIntegerField(default=0)
    data_points = models.PositiveIntegerField(default=0, help_text="Attributes written (Braze's billing unit).")
    message = models.TextField(blank=True, help_text="Braze's message.")
    errors = models.JSONField(default=list, blank=True, help_text="Objects Braze refused, with its reasons.")
    maybe_delivered = models.BooleanField(default=False, help_text="No answer, but Braze may have processed it.")
    # The claim it was sent under: if that claim expires while the request is still "sending", its
    # worker died and the request is lost.
    claim_token = models.UUIDField(null=True, blank=True, db_index=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["outcome", "created_at"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.outcome} {self.http_status or ''}".strip()

    @property
    def object_count(self) -> int:
        return self.attributes_count + self.events_count + self.purchases_count


class SyncRequestMember(models.Model):
    """Which members a request carried, and what became of each (the member page's "Sync" tab)."""

    request = models.ForeignKey(SyncRequest, on_delete=models.CASCADE, related_name="members")
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+", db_index=True)
    object_count = models.PositiveSmallIntegerField(default=1)
    error = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["member", "-request"])]


class FlushSlot(models.Model):
    """A place for one running sync task. A change takes a free slot to schedule a task; the task
    gives it back when nothing is left. Leases expire, so a killed worker never holds one for long."""

    busy_until = models.DateTimeField(null=True, blank=True)
    # The task promises to look for new changes once more after this time: a save committed
    # before it needs to queue nothing (``queue.slot_watched``).
    watching_until = models.DateTimeField(null=True, blank=True)


class RateLimitWindow(models.Model):
    """Requests counted in one window of the connection's rate limit (the database-backed limiter)."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE)
    window_start = models.BigIntegerField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "window_start"], name="one_rate_window")]


class ResyncStatus(models.TextChoices):
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"
    INTERRUPTED = "interrupted", "Interrupted"


class ResyncCounters(models.Model):
    """What a resync (or one part of it) has done so far."""

    members_done = models.PositiveIntegerField(default=0)
    members_sent = models.PositiveIntegerField(default=0)
    members_unchanged = models.PositiveIntegerField(default=0)
    members_failed = models.PositiveIntegerField(default=0)
    requests = models.PositiveIntegerField(default=0)
    data_points = models.PositiveBigIntegerField(default=0)

    class Meta:
        abstract = True


class ResyncRun(ResyncCounters):
    """One `braze_resync` (or admin resync): its selection, how far it got, and its totals.

    Members are walked in primary-key order and ``cursor`` is the last one done, so an interrupted
    run resumes where it stopped."""

    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=ResyncStatus.choices, default=ResyncStatus.RUNNING)
    options = models.JSONField(default=dict, help_text="The selection and flags it was started with.")
    cursor = models.BigIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    elapsed_seconds = models.FloatField(default=0)
    message = models.TextField(blank=True)
    driven_until = models.DateTimeField(
        null=True, blank=True,
        help_text="The process sending the run saves its progress again before this time; a running run past it "
                  "lost its process (killed), and --resume may take it over.")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Resync #{self.pk} ({self.status})"


class ResyncPart(ResyncCounters):
    """One key range of a resync that a worker task sends (members with ``after < pk <= last``).

    A part is leased to one task at a time (``lease_token``, ``leased_until``); ``cursor`` is the last
    member done, so a part whose worker was killed goes on from there once its lease runs out."""

    run = models.ForeignKey(ResyncRun, on_delete=models.CASCADE, related_name="parts")
    number = models.PositiveIntegerField()
    after = models.BigIntegerField(help_text="Members above this primary key ...")
    last = models.BigIntegerField(help_text="... up to and including this one.")
    cursor = models.BigIntegerField()
    finished = models.BooleanField(default=False)
    lease_token = models.UUIDField(null=True, blank=True)
    leased_until = models.DateTimeField(null=True, blank=True)
    message = models.TextField(blank=True, help_text="Why the part stopped, when it failed.")
    done_by = models.CharField(max_length=100, blank=True, help_text="The host and process that finished it.")

    class Meta:
        ordering = ["run", "number"]
        constraints = [models.UniqueConstraint(fields=["run", "number"], name="one_resync_part_number")]

    def __str__(self) -> str:
        return f"Resync #{self.run_id} part {self.number}"


class DeletionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELETED = "deleted", "Deleted in Braze"
    FAILED = "failed", "Refused by Braze"


class BrazeDeletion(models.Model):
    """An erased member's Braze profile to delete with ``POST /users/delete``, and Braze's answer.

    ``external_id`` is the only personal datum here, kept until Braze accepted the deletion and then
    cleared; ``member_hash`` links the row to the loyalty app's erasure record. Sent by the same flush
    tasks as ``/users/track``, under the same rate limiter, retries and pauses.
    """

    member_hash = models.CharField(max_length=64, unique=True)
    external_id = models.CharField(max_length=255, blank=True, help_text="Cleared once Braze accepted the deletion.")
    status = models.CharField(max_length=10, choices=DeletionStatus.choices, default=DeletionStatus.PENDING)
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    times_sent = models.PositiveSmallIntegerField(
        default=0, help_text="Requests Braze accepted: more than one when a late request had to be undone.")
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    message = models.TextField(blank=True, help_text="Braze's answer.")
    request = models.ForeignKey(SyncRequest, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"Braze deletion {self.member_hash[:12]}… ({self.status})"


class SyncHeartbeat(models.Model):
    """When a worker last ran a sync task and when Braze last accepted a request: one row (``pk`` 1),
    written at most every few seconds per process (see ``monitoring``)."""

    worker_seen_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        permissions = [("view_metrics", "Can read the sync's Prometheus metrics")]

    def __str__(self) -> str:
        return f"worker seen {self.worker_seen_at}, last success {self.last_success_at}"


class AlertState(models.Model):
    """What ``ADMINS`` were last told about one alarm: a change of ``active`` is e-mailed once, by
    whichever process flips the row first."""

    name = models.CharField(max_length=40, primary_key=True)
    active = models.BooleanField(default=False)
    changed_at = models.DateTimeField(null=True, blank=True)
    message = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.name}: {'raised' if self.active else 'clear'}"

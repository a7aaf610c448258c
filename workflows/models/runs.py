"""What running workflows leaves behind: the durable trigger queue, the run log, due runs after a
wait, and the date scans."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from loyaltysync.models import LoyaltyEvent, Member

from .choices import TriggerKind
from .definition import Trigger, Workflow


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
    source_trigger = models.ForeignKey(Trigger, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                                       help_text="Date triggers: the workflow's trigger that was due.")
    depth = models.PositiveSmallIntegerField(
        default=0, help_text="How many workflow steps led to this (0: not caused by a workflow).")
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
    SENT = "sent", "Done"
    FILTERED_OUT = "filtered_out", "Filtered out"
    ERROR = "error", "Error"
    WAITING = "waiting", "Waiting"
    RUNNING = "running", "Running"


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
    steps = models.JSONField(default=list, blank=True,
                             help_text="The steps the run passed: index, step id, kind, outcome (success / failure).")
    cursor = models.PositiveIntegerField(null=True, blank=True, help_text="The next step while the run is not done.")
    context = models.JSONField(default=dict, blank=True, help_text="What triggered the run (the member is re-read).")
    depth = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["workflow", "-started_at"]),
            models.Index(fields=["member", "-started_at"]),
            models.Index(fields=["started_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_name} v{self.workflow_version} for {self.member_id}: {self.outcome}"


class DueRun(models.Model):
    """A run that is not finished: it goes on at ``due_at`` from its cursor.

    A django-q2 schedule picks the due rows every minute and claims each with a lease, so a run
    resumes once even with several workers, and after a killed worker, a deployment or a broker
    that lost its messages (the row is the only thing that has to survive).
    """

    run = models.OneToOneField(WorkflowRun, on_delete=models.CASCADE, related_name="due")
    due_at = models.DateTimeField(db_index=True)
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["due_at", "id"]

    def __str__(self) -> str:
        return f"run {self.run_id} at {self.due_at:%Y-%m-%d %H:%M}"


class DateTriggerScan(models.Model):
    """One scan of the members for a date trigger's period; a finished scan is not repeated."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="date_scans")
    trigger = models.ForeignKey(Trigger, null=True, on_delete=models.CASCADE, related_name="date_scans")
    period = models.CharField(max_length=32)
    due_at = models.DateTimeField()
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    members_matched = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [models.UniqueConstraint(fields=["trigger", "period"], name="workflow_date_trigger_scan_once")]

    def __str__(self) -> str:
        return f"{self.workflow_id} {self.period}"

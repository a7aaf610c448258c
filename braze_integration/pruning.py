"""Deleting what only grows: old sync requests, per-member request rows, sent outbox items, finished
resync runs, expired idempotency keys.

Each kind has a retention in days (``settings.BRAZE_RETENTION_DAYS``; 0 keeps it for ever) and is
deleted in batches of primary keys, each batch its own short statement, so a large backlog never holds
long locks. What correctness still needs is never deleted, whatever its age:

- a request still *sending* (the recovery of a killed worker reads it by its claim token);
- a member's latest request (``MemberSyncState.last_request``) and that member's row of it, which the
  member page shows;
- a request that a pending, failed or dead-lettered outbox item, or a profile deletion not yet done,
  points to (its Braze answer);
- outbox items that are pending, failed or dead-lettered (only *sent* items go);
- resync runs that are running or interrupted (``braze_resync --resume`` continues them).

Workflow runs are pruned by the workflows app itself (``WORKFLOW_RUN_RETENTION_DAYS``); the log of
profile deletions (``BrazeDeletion``) is the erasure record and is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from loyaltysync import idempotency
from loyaltysync.models import IdempotencyKey
from loyaltysync.schedules import schedule_ensure

from .models import (
    BrazeDeletion,
    DeletionStatus,
    MemberSyncState,
    OutboxItem,
    OutboxStatus,
    RequestOutcome,
    ResyncRun,
    ResyncStatus,
    SyncRequest,
    SyncRequestMember,
)

SCHEDULE_NAME = "braze-prune"
KINDS = ("request_members", "requests", "sent_outbox", "resync_runs")
SETTING_OF = {
    "requests": "BRAZE_RETAIN_REQUESTS_DAYS",
    "request_members": "BRAZE_RETAIN_REQUEST_MEMBERS_DAYS",
    "sent_outbox": "BRAZE_RETAIN_SENT_OUTBOX_DAYS",
    "resync_runs": "BRAZE_RETAIN_RESYNC_RUNS_DAYS",
}


@dataclass
class PruneReport:
    """Rows deleted (or, with ``dry_run``, that would be) per kind, and the retention each used."""

    dry_run: bool
    deleted: dict[str, int] = field(default_factory=dict)
    retention_days: dict[str, int] = field(default_factory=dict)


def retention_days() -> dict[str, int]:
    """The retention of each kind, checked: a clear error names the setting that is wrong."""
    configured = getattr(settings, "BRAZE_RETENTION_DAYS", {})
    days = {}
    for kind in KINDS:
        value = configured.get(kind, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ImproperlyConfigured(
                f"{SETTING_OF[kind]} (BRAZE_RETENTION_DAYS[{kind!r}]) must be a whole number of days, 0 or more "
                f"(0 keeps them for ever); got {value!r}.")
        days[kind] = value
    return days


# --- what may go ----------------------------------------------------------------------------------

def _old_request_members(cutoff: datetime) -> QuerySet:
    members_latest = MemberSyncState.objects.filter(pk=OuterRef("member_id"), last_request_id=OuterRef("request_id"))
    return SyncRequestMember.objects.filter(request__created_at__lt=cutoff).exclude(Exists(members_latest))


def _old_requests(cutoff: datetime) -> QuerySet:
    someones_latest = MemberSyncState.objects.filter(last_request_id=OuterRef("pk"))
    unsent_items = OutboxItem.objects.filter(request_id=OuterRef("pk")).exclude(status=OutboxStatus.SENT)
    open_deletions = BrazeDeletion.objects.filter(request_id=OuterRef("pk")).exclude(status=DeletionStatus.DELETED)
    return (SyncRequest.objects.filter(created_at__lt=cutoff).exclude(outcome=RequestOutcome.SENDING)
            .exclude(Exists(someones_latest)).exclude(Exists(unsent_items)).exclude(Exists(open_deletions)))


def _old_sent_outbox(cutoff: datetime) -> QuerySet:
    return OutboxItem.objects.filter(status=OutboxStatus.SENT, sent_at__lt=cutoff)


def _old_resync_runs(cutoff: datetime) -> QuerySet:
    return ResyncRun.objects.filter(status=ResyncStatus.FINISHED, finished_at__lt=cutoff)


SELECTORS: dict[str, Callable[[datetime], QuerySet]] = {
    "request_members": _old_request_members,
    "requests": _old_requests,
    "sent_outbox": _old_sent_outbox,
    "resync_runs": _old_resync_runs,
}


def _delete_in_batches(queryset: QuerySet, batch_size: int) -> int:
    """Delete what ``queryset`` selects, ``batch_size`` rows a statement; each batch is selected again
    with the queryset's conditions, so a row that became needed meanwhile stays."""
    model = queryset.model
    total = 0
    while True:
        pks = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not pks:
            return total
        _, by_model = queryset.filter(pk__in=pks).delete()
        total += by_model.get(model._meta.label, 0)


def sync_prune(*, dry_run: bool = False, batch_size: int | None = None, now: datetime | None = None) -> PruneReport:
    """Delete the sync's log rows older than their retention, and expired idempotency keys.

    ``dry_run`` counts what would go and deletes nothing. Returns the counts per kind."""
    now = now or timezone.now()
    batch_size = batch_size or settings.BRAZE_PRUNE_BATCH_SIZE
    if batch_size < 1:
        raise ImproperlyConfigured(f"BRAZE_PRUNE_BATCH_SIZE must be 1 or more; got {batch_size!r}.")
    report = PruneReport(dry_run=dry_run, retention_days=retention_days())
    for kind in KINDS:
        days = report.retention_days[kind]
        if not days:
            report.deleted[kind] = 0
            continue
        queryset = SELECTORS[kind](now - timedelta(days=days))
        report.deleted[kind] = queryset.count() if dry_run else _delete_in_batches(queryset, batch_size)
    if dry_run:
        report.deleted["idempotency_keys"] = IdempotencyKey.objects.filter(
            created_at__lt=now - idempotency.KEY_TTL).count()
    else:
        report.deleted["idempotency_keys"] = idempotency.idempotency_keys_prune(now=now)
    return report


def schedules_ensure() -> None:
    """The daily prune (idempotent; run after migrate)."""
    from django_q.models import Schedule

    schedule_ensure(name=SCHEDULE_NAME, func="braze_integration.tasks.sync_prune", schedule_type=Schedule.DAILY)

"""The workflows' services: recording triggers, running workflows, scanning dates, housekeeping.

The save path is small. A loyalty event or a member change writes one ``TriggerRecord`` in the
same transaction, and only when an active workflow could be interested (a cached check); after
commit one django-q2 task is queued per transaction. The task claims pending records, runs the
matching active workflows in priority order against snapshots taken when the batch starts, and
queues Braze items through ``braze_integration.services.outbox_enqueue`` with stable dedupe keys,
so processing a record again never sends a second event. A periodic schedule processes whatever
a lost task left behind.

Date triggers: one global scanner
----------------------------------
Date and anniversary workflows are run by **one** django-q2 schedule, ``workflows: date triggers``,
every ``DATE_SCAN_MINUTES`` minutes (``date_triggers_scan``). Saving or deleting a workflow creates
that schedule when some active date workflow exists and deletes it when none is left
(``date_schedule_sync``). One scanner rather than a schedule per workflow because django-q2's
monthly and yearly schedules drift (31st -> 28th -> 28th), a schedule missed while the cluster was
down is not caught up (``catch_up`` is off), and a time-zone or time-of-day change would have to be
mirrored into each schedule. The scanner computes each workflow's moment in the current period
itself (``schedule.py``), so a scan that comes late still runs it, and a ``DateTriggerScan`` row
per (workflow, period) makes a finished period cost one query on later scans. Each matching
member gets a ``TriggerRecord`` keyed by workflow, period and member: once per member per period.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Exists, F, Min, OuterRef, Q
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone

from braze_integration import services as braze
from braze_integration.payloads import format_time
from loyaltysync.attributes import AttributeContext
from loyaltysync.models import LoyaltyEvent, Member, Tier
from loyaltysync.on_commit import on_commit_once
from loyaltysync.schedules import schedule_ensure
from loyaltysync.ttl_cache import TTLCache

from .conditions import parse_date
from .context import CUSTOM_PREFIX, WATCHABLE_FIELDS, apply_changes, event_context, jsonable, member_context
from .models import (
    DATE_KINDS,
    DateTriggerScan,
    RunOutcome,
    Trigger,
    TriggerKind,
    TriggerRecord,
    TriggerStatus,
    Workflow,
    WorkflowRun,
    custom_field_types,
)
from .plan import WorkflowInvalid, WorkflowPlan
from .runner import current_depth, run_start
from .schedule import anniversary_days, anniversary_due, due

logger = logging.getLogger(__name__)

PROCESS_TASK = "workflows.tasks.process_triggers"
INTEREST_TTL = 2.0  # seconds another process may take to notice a new or changed workflow
# A batch's records are held this long, renewed while the batch runs: a worker killed mid-batch delays
# them (and its members' later records, which wait for them) by at most this much.
CLAIM_LEASE = dt.timedelta(seconds=60)
MAX_ATTEMPTS = 5
BATCH_SIZE = 200
SCAN_CHUNK = 1000
CLAIM_LOCK = 0x776F726B666C6F77  # the advisory lock that makes trigger claims one at a time on PostgreSQL
DATE_SCAN_MINUTES = 1
SCHEDULE_PROCESS = "workflows: process triggers"
SCHEDULE_PRUNE = "workflows: prune run log"
SCHEDULE_DATE_SCAN = "workflows: date triggers"
SCHEDULE_RESUME = "workflows: resume due runs"
_ATTNAME_TO_ATTRIBUTE = {attname: name for name, attname in WATCHABLE_FIELDS.items()}


# --- who is interested: cached briefly per process ---------------------------------------------------

@dataclass(frozen=True)
class WorkflowInterest:
    """What active workflows listen to: event actions, and member attributes as
    ``Member.changed_fields()`` names them (``tier_id``, ``custom_fields.vip``)."""

    actions: frozenset[str]
    fields: frozenset[str]


def _workflow_interest_load() -> WorkflowInterest:
    actions, fields = set(), set()
    rows = Trigger.objects.filter(workflow__active=True, kind__in=[TriggerKind.EVENT, TriggerKind.FIELD_CHANGE])
    for kind, action, field_name in rows.values_list("kind", "action", "field"):
        if kind == TriggerKind.EVENT:
            actions.add(action)
        else:
            fields.add(WATCHABLE_FIELDS.get(field_name, field_name))
    return WorkflowInterest(frozenset(actions), frozenset(fields))


_interest = TTLCache(_workflow_interest_load, ttl=INTEREST_TTL)


def workflow_interest() -> WorkflowInterest:
    """The event actions and member fields active workflows are triggered by (cached ``INTEREST_TTL``)."""
    return _interest.get()


def workflow_interest_invalidate() -> None:
    """Forget the cached interest in this process (the next save reads the workflows again)."""
    _interest.clear()


def workflow_config_changed() -> None:
    """A workflow was saved or deleted: forget the cached interest and fit the date schedule to it."""
    workflow_interest_invalidate()
    date_schedule_sync()


# --- recording triggers (called by the receivers, inside the caller's transaction) --------------------

def trigger_record_event(*, event: LoyaltyEvent) -> TriggerRecord | None:
    """Record that ``event`` may start workflows, if an active workflow listens to its action."""
    if event.action not in workflow_interest().actions:
        return None
    record = TriggerRecord.objects.create(key=f"event:{event.pk}", kind=TriggerKind.EVENT, member_id=event.member_id,
                                          event=event, occurred_at=event.occurred_at, depth=current_depth())
    # The event's mapped values (points, purchase total) wait for the workflows' attributes and events.
    braze.member_sync_hold(member_ids=[event.member_id])
    _process_after_commit()
    return record


def trigger_record_member_change(*, member: Member, update_fields: Iterable[str] | None = None) -> TriggerRecord | None:
    """Record a member's field changes if an active workflow watches one of them.

    Changes to one member within one transaction are merged into one record (first old value,
    last new value), so several saves in one request start a workflow once.
    """
    interest = workflow_interest()
    if not interest.fields:
        return None
    changed = member.changed_fields(among=update_fields)
    if not changed:  # None: a new member, which is an enrolment (opt_in), not a change
        return None
    if interest.fields.isdisjoint(changed):
        return None
    changes = _changes_of(member, changed)
    if not changes:
        return None
    pending = _transaction_change_records()
    record_id = pending.get(member.pk)
    if record_id is not None:
        record = TriggerRecord.objects.filter(pk=record_id, member_id=member.pk, status=TriggerStatus.PENDING).first()
        if record is not None:
            merged = {name: list(values) for name, values in record.changes.items()}
            for name, (old, new) in changes.items():
                merged[name] = [merged[name][0] if name in merged else old, new]
            record.changes = {name: values for name, values in merged.items() if values[0] != values[1]}
            record.depth = max(record.depth, current_depth())
            record.save(update_fields=["changes", "depth"])
            return record
    record = TriggerRecord.objects.create(key=f"change:{uuid.uuid4().hex}", kind=TriggerKind.FIELD_CHANGE,
                                          member_id=member.pk, changes=changes, depth=current_depth())
    braze.member_sync_hold(member_ids=[member.pk])
    pending[member.pk] = record.pk
    _process_after_commit()
    return record


def _changes_of(member: Member, changed: set[str]) -> dict[str, list[Any]]:
    """``{attribute: [old, new]}`` in the names and forms runs read (``tier`` by name, dates as ISO)."""
    changes: dict[str, list[Any]] = {}
    old_custom = member.previous_value("custom_fields") or {}
    new_custom = member.custom_fields or {}
    for name in changed:
        if name.startswith(CUSTOM_PREFIX):
            key = name[len(CUSTOM_PREFIX):]
            changes[name] = [jsonable(old_custom.get(key)), jsonable(new_custom.get(key))]
        elif name in _ATTNAME_TO_ATTRIBUTE:
            changes[_ATTNAME_TO_ATTRIBUTE[name]] = [jsonable(member.previous_value(name)), jsonable(getattr(member, name))]
    if "tier" in changes:
        names = dict(Tier.objects.filter(pk__in=[pk for pk in changes["tier"] if pk]).values_list("pk", "name"))
        changes["tier"] = [names.get(pk) for pk in changes["tier"]]
    return changes


def _transaction_change_records() -> dict[int, int]:
    """Member pk -> its change record written in the current transaction (forgotten at commit).

    After a rollback the ids point at rows that no longer exist, which the caller's lookup skips.
    """
    conn = transaction.get_connection()
    pending = conn.__dict__.setdefault("_workflow_change_records", {})
    if conn.in_atomic_block:
        on_commit_once(_forget_change_records)
    return pending


def _forget_change_records() -> None:
    transaction.get_connection().__dict__.get("_workflow_change_records", {}).clear()


def _process_after_commit() -> None:
    """Queue one processing task when the current transaction commits (once per transaction)."""
    on_commit_once(processing_request)


def processing_request() -> bool:
    """Queue the processing task; when the broker is down the periodic schedule picks the records up."""
    from django_q.tasks import async_task

    try:
        async_task(PROCESS_TASK, task_name="workflows-process", q_options={"save": False})
    except Exception:
        logger.warning("Could not queue workflow processing (broker unavailable); the periodic run will do it.")
        return False
    return True


# --- running workflows ----------------------------------------------------------------------------------

@dataclass
class ProcessReport:
    records: int = 0
    runs: int = 0
    sent: int = 0
    filtered_out: int = 0
    errors: int = 0
    failed_records: int = 0

    def count(self, outcome: str) -> None:
        self.runs += 1
        if outcome in (RunOutcome.SENT, RunOutcome.WAITING, RunOutcome.RUNNING):
            self.sent += 1
        elif outcome == RunOutcome.FILTERED_OUT:
            self.filtered_out += 1
        else:
            self.errors += 1


@dataclass
class _Entry:
    workflow: Workflow
    snapshot: dict[str, Any]
    plan: WorkflowPlan | None
    problem: str = ""


@dataclass
class _Plans:
    """The active workflows as snapshots and compiled plans, taken once per batch."""

    entries: list[_Entry] = field(default_factory=list)

    @classmethod
    def load(cls) -> _Plans:
        custom = custom_field_types()
        entries = []
        workflows = Workflow.objects.filter(active=True).prefetch_related(
            "triggers", "conditions", "actions__values")
        for workflow in workflows.order_by("priority", "id"):
            snapshot = workflow.snapshot(custom_fields=custom)
            try:
                entries.append(_Entry(workflow, snapshot, WorkflowPlan.compile(snapshot)))
            except WorkflowInvalid as err:
                entries.append(_Entry(workflow, snapshot, None, str(err)))
        return cls(entries)

    def matching(self, record: TriggerRecord) -> list[tuple[_Entry, int | None]]:
        """The workflows ``record`` starts, each with the first of its triggers that matches."""
        out = []
        for entry in self.entries:
            for trigger in entry.snapshot["triggers"]:
                if _matches(trigger, record, entry):
                    out.append((entry, trigger.get("id")))
                    break
        return out


def _matches(trigger: dict[str, Any], record: TriggerRecord, entry: _Entry) -> bool:
    if record.kind != trigger["kind"]:
        return False
    if record.kind == TriggerKind.EVENT:
        return trigger.get("action") == record.event.action
    if record.kind == TriggerKind.FIELD_CHANGE:
        return trigger.get("field") in record.changes
    if record.source_trigger_id is not None:
        return trigger.get("id") == record.source_trigger_id
    return entry.workflow.pk == record.workflow_id


def trigger_records_waiting() -> tuple[int, dt.datetime | None]:
    """How many trigger records are not run yet (pending, or held by a worker), and when the oldest was
    recorded: for ``braze_status`` and the dashboard (``braze_integration.monitoring.backlog_register``)."""
    waiting = TriggerRecord.objects.filter(status__in=[TriggerStatus.PENDING, TriggerStatus.PROCESSING])
    found = waiting.aggregate(n=Count("pk"), oldest=Min("created_at"))
    return found["n"], found["oldest"]


def trigger_records_process(*, limit: int = BATCH_SIZE, time_budget: float = 20.0) -> ProcessReport:
    """Process pending trigger records (and ones a stopped worker left claimed), batch by batch."""
    report = ProcessReport()
    deadline = time.monotonic() + time_budget
    tried: set[int] = set()  # a record that failed goes back to pending: retried by a later task, not this one
    while time.monotonic() < deadline:
        token, records = _claim(limit=limit, skip=tried)
        if not records:
            break
        plans = _Plans.load()
        renewed = time.monotonic()
        for record in records:
            if time.monotonic() - renewed > CLAIM_LEASE.total_seconds() / 3:  # the batch's lease, while it runs
                TriggerRecord.objects.filter(claim_token=token, status=TriggerStatus.PROCESSING,
                                             claimed_until__gt=timezone.now()).update(
                    claimed_until=timezone.now() + CLAIM_LEASE)
                renewed = time.monotonic()
            # The fence, which also renews the record's lease: a worker paused past its lease (another took
            # the record over) must not run it again, perhaps after the other's newer records.
            now = timezone.now()
            if not TriggerRecord.objects.filter(pk=record.pk, claim_token=token, status=TriggerStatus.PROCESSING,
                                                claimed_until__gt=now).update(claimed_until=now + CLAIM_LEASE):
                continue
            _process(record, plans, report, force=False)
            tried.add(record.pk)
        # Claim again even after a short batch: a record that waited for one of this batch (its member's
        # older record, or one a step of this batch recorded) is free now, and no other task may come for it.
    return report


def trigger_record_process(*, record_id: int, force: bool = True) -> ProcessReport:
    """Process one record now (the admin's "Process again"). With ``force`` every matching workflow
    runs again and logs a run; the dedupe keys keep Braze from getting anything twice."""
    report = ProcessReport()
    now = timezone.now()
    token = uuid.uuid4()
    claimed = TriggerRecord.objects.filter(pk=record_id).filter(
        ~Q(status=TriggerStatus.PROCESSING) | Q(claimed_until__lt=now)
    ).update(status=TriggerStatus.PROCESSING, claim_token=token, claimed_until=now + CLAIM_LEASE,
             attempts=F("attempts") + 1)
    if not claimed:
        return report
    record = TriggerRecord.objects.select_related("event", "member__tier").get(pk=record_id)
    _process(record, _Plans.load(), report, force=force)
    return report


def _claim(*, limit: int, skip: Iterable[int] = ()) -> tuple[uuid.UUID, list[TriggerRecord]]:
    """The oldest open records, in the order they were recorded, for one worker.

    A member's records are processed in that order, by one worker at a time: a record whose member has
    an older one that another worker holds waits for it. Otherwise two workers (or a worker and the one
    that takes over a killed worker's batch) would run a member's checkouts out of order, and the older
    checkout's data (Braze's last purchase, say) would reach Braze last. A record's older open ones come
    before it in the order, so they are in the same batch. Claims are one at a time (on PostgreSQL a
    transaction-level advisory lock; SQLite has one writer), so two cannot split a member's records."""
    now = timezone.now()
    open_records = Q(status=TriggerStatus.PENDING) | Q(status=TriggerStatus.PROCESSING, claimed_until__lt=now)
    held_elsewhere = TriggerRecord.objects.filter(
        member_id=OuterRef("member_id"), pk__lt=OuterRef("pk"), status=TriggerStatus.PROCESSING, claimed_until__gte=now)
    token = uuid.uuid4()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CLAIM_LOCK])
        ids = list(TriggerRecord.objects.filter(open_records).exclude(Exists(held_elsewhere)).exclude(pk__in=skip)
                   .order_by("id").values_list("pk", flat=True)[:limit])
        if not ids:
            return token, []
        TriggerRecord.objects.filter(open_records, pk__in=ids).update(
            status=TriggerStatus.PROCESSING, claim_token=token, claimed_until=now + CLAIM_LEASE,
            attempts=F("attempts") + 1)
    return token, list(TriggerRecord.objects.filter(claim_token=token).select_related("event", "member__tier")
                       .order_by("id"))


def _process(record: TriggerRecord, plans: _Plans, report: ProcessReport, *, force: bool) -> None:
    report.records += 1
    try:
        if record.attempts > MAX_ATTEMPTS and not force:
            raise RuntimeError(f"Gave up after {record.attempts - 1} attempts; see the log for the last error.")
        context = _context(record)
        done = set() if force else set(WorkflowRun.objects.filter(trigger=record).values_list("workflow_id", flat=True))
        for entry, trigger_id in plans.matching(record):
            if entry.workflow.pk in done:
                continue  # ran before a crash interrupted this record; an unfinished run resumes on its own
            report.count(run_start(workflow=entry.workflow, snapshot=entry.snapshot, plan=entry.plan,
                                   problem=entry.problem, record=record, context=context, trigger_id=trigger_id))
    except Exception as err:  # one bad record must not stop the others; it is retried, then failed
        logger.exception("Workflow trigger %s failed", record.key)
        failed = record.attempts >= MAX_ATTEMPTS
        report.failed_records += int(failed)
        TriggerRecord.objects.filter(pk=record.pk).update(
            status=TriggerStatus.FAILED if failed else TriggerStatus.PENDING, claim_token=None, claimed_until=None,
            processed_at=timezone.now() if failed else None, last_error=f"{type(err).__name__}: {err}"[:2000])
        if failed:
            _sync_release(record)
        return
    TriggerRecord.objects.filter(pk=record.pk).update(
        status=TriggerStatus.DONE, claim_token=None, claimed_until=None, processed_at=timezone.now(), last_error="")
    _sync_release(record)


def _sync_release(record: TriggerRecord) -> None:
    """The member's held sync goes once no other record of it is still open."""
    still_open = TriggerRecord.objects.filter(
        member_id=record.member_id, status__in=[TriggerStatus.PENDING, TriggerStatus.PROCESSING]).exclude(pk=record.pk)
    if not still_open.exists():
        braze.member_sync_release(member_ids=[record.member_id])


def _context(record: TriggerRecord) -> dict[str, Any]:
    member = member_context(record.member)
    context: dict[str, Any] = {"member": member, "trigger": {"kind": record.kind}}
    if record.kind == TriggerKind.EVENT:
        context["event"] = event_context(record.event)
        context["trigger"]["action"] = record.event.action
        context["time"] = format_time(record.event.occurred_at)
        return context
    context["time"] = format_time(record.occurred_at)
    if record.kind == TriggerKind.FIELD_CHANGE:
        context["member"], context["previous"] = apply_changes(member, record.changes)
        context["changes"] = record.changes
        return context
    context["trigger"]["period"] = record.period
    if record.kind == TriggerKind.ANNIVERSARY and record.source_trigger_id:
        day = _anniversary_date(record.member, record.source_trigger.field)
        if day is not None:
            context["trigger"]["years"] = int(record.period[:4]) - day.year
    return context


# --- date and anniversary triggers -----------------------------------------------------------------------

def date_triggers_scan(*, now: dt.datetime | None = None) -> int:
    """Record a trigger for every member a due date or anniversary workflow matches; returns how many.

    A workflow is due once its moment in the current period has come (``schedule.due``); each
    (workflow, period) is scanned once. The workflow's conditions are the pre-filter: members they
    do not match get no record (and no run log). Every member is scanned, opted-out ones too: a
    condition ``member.status equals active`` leaves them out. Processing is queued after commit.
    """
    now = now or timezone.now()
    local = timezone.localtime(now)
    custom = custom_field_types()
    matched = 0
    triggers = Trigger.objects.filter(workflow__active=True, kind__in=DATE_KINDS).select_related("workflow")
    plans: dict[int, WorkflowPlan | WorkflowInvalid] = {}
    for trigger in triggers.order_by("workflow__priority", "workflow_id", "position", "id"):
        workflow = trigger.workflow
        if trigger.kind == TriggerKind.DATE:
            moment = due(trigger.date_rule(), local)
        else:
            moment = anniversary_due(trigger.time, local)
        if moment is None:
            continue
        period, at = moment
        scan, _ = DateTriggerScan.objects.get_or_create(trigger=trigger, period=period, defaults={
            "workflow": workflow, "due_at": at, "started_at": now})
        if scan.finished_at is not None:
            continue
        if workflow.pk not in plans:
            try:
                plans[workflow.pk] = WorkflowPlan.compile(workflow.snapshot(custom_fields=custom))
            except WorkflowInvalid as err:
                plans[workflow.pk] = err
        plan = plans[workflow.pk]
        if isinstance(plan, WorkflowInvalid):
            logger.warning("Date workflow %s cannot run: %s", workflow.pk, plan)
            DateTriggerScan.objects.filter(pk=scan.pk).update(finished_at=timezone.now(), error=str(plan)[:2000])
            continue
        count = _scan_members(trigger, plan, period, at, local.date())
        DateTriggerScan.objects.filter(pk=scan.pk).update(finished_at=timezone.now(), members_matched=count)
        matched += count
    if matched:
        _process_after_commit()
    return matched


def _scan_members(trigger: Trigger, plan: WorkflowPlan, period: str, at: dt.datetime, today: dt.date) -> int:
    workflow = trigger.workflow
    members = Member.objects.select_related("tier").order_by("pk")
    anniversary = trigger.kind == TriggerKind.ANNIVERSARY
    if anniversary:
        members = _anniversary_members(members, trigger.field, today)
    conditions = plan.entry(trigger.pk)
    time_text = format_time(at)
    tiers = AttributeContext()  # loaded once for the whole scan
    batch: list[TriggerRecord] = []
    count = 0
    for member in members.iterator(chunk_size=SCAN_CHUNK):
        about: dict[str, Any] = {"kind": trigger.kind, "period": period}
        # The first trigger of a workflow keeps the keys of one-trigger workflows (dedupe keys in the outbox).
        suffix = "" if trigger.position == 0 else f":t{trigger.pk}"
        key = f"date:{workflow.pk}{suffix}:{period}:{member.pk}"
        if anniversary:
            day = _anniversary_date(member, trigger.field)
            if day is None or (day.month, day.day) not in anniversary_days(today) or day.year >= today.year:
                continue
            about["years"] = today.year - day.year
            key = f"anniversary:{workflow.pk}{suffix}:{today.year}:{member.pk}"
        context = {"member": member_context(member, tiers), "trigger": about, "time": time_text}
        if not conditions.evaluate(context):
            continue
        batch.append(TriggerRecord(key=key, kind=trigger.kind, member=member, workflow=workflow,
                                   source_trigger=trigger, period=period, occurred_at=at))
        count += 1
        if len(batch) >= SCAN_CHUNK:
            TriggerRecord.objects.bulk_create(batch, ignore_conflicts=True)
            batch = []
    TriggerRecord.objects.bulk_create(batch, ignore_conflicts=True)
    return count


def _anniversary_members(members, field_name: str, today: dt.date):
    days = anniversary_days(today)
    if field_name.startswith(CUSTOM_PREFIX):
        members = members.annotate(_anniversary=KeyTextTransform(field_name[len(CUSTOM_PREFIX):], "custom_fields"))
        match = Q()
        for month, day in days:
            match |= Q(_anniversary__endswith=f"-{month:02d}-{day:02d}")
        return members.filter(match)
    match = Q()
    for month, day in days:
        match |= Q(**{f"{field_name}__month": month, f"{field_name}__day": day})
    return members.filter(match)


def _anniversary_date(member: Member, field_name: str) -> dt.date | None:
    if field_name.startswith(CUSTOM_PREFIX):
        value = parse_date((member.custom_fields or {}).get(field_name[len(CUSTOM_PREFIX):]))
    else:
        value = getattr(member, field_name, None)
    if isinstance(value, dt.datetime):
        return timezone.localtime(value).date()
    return value if isinstance(value, dt.date) else None


# --- schedules and housekeeping ---------------------------------------------------------------------------

def date_schedule_sync() -> None:
    """Keep the date scanner's schedule in step with the workflows: present while an active date or
    anniversary workflow exists, gone otherwise."""
    from django_q.models import Schedule

    if Trigger.objects.filter(workflow__active=True, kind__in=DATE_KINDS).exists():
        schedule_ensure(name=SCHEDULE_DATE_SCAN, func="workflows.tasks.date_triggers_scan",
                        schedule_type=Schedule.MINUTES, minutes=DATE_SCAN_MINUTES)
    else:
        Schedule.objects.filter(name=SCHEDULE_DATE_SCAN).delete()


def schedules_ensure() -> None:
    """Create the periodic schedules (idempotent; run after migrate): leftover triggers every minute,
    run-log pruning daily, and the date scanner when date workflows exist."""
    from django_q.models import Schedule

    with transaction.atomic():
        for name, func, schedule_type, minutes in (
            (SCHEDULE_PROCESS, "workflows.tasks.process_triggers", Schedule.MINUTES, 1),
            (SCHEDULE_PRUNE, "workflows.tasks.runs_prune", Schedule.DAILY, None),
            (SCHEDULE_RESUME, "workflows.tasks.due_runs_resume", Schedule.MINUTES, 1),
        ):
            schedule_ensure(name=name, func=func, schedule_type=schedule_type, minutes=minutes)
        date_schedule_sync()


def workflow_runs_prune(*, now: dt.datetime | None = None) -> int:
    """Delete runs, finished trigger records and date scans older than ``WORKFLOW_RUN_RETENTION_DAYS``
    (default 30); returns how many runs were deleted."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(days=getattr(settings, "WORKFLOW_RUN_RETENTION_DAYS", 30))
    runs, _ = WorkflowRun.objects.filter(started_at__lt=cutoff, due__isnull=True).delete()
    TriggerRecord.objects.filter(status__in=[TriggerStatus.DONE, TriggerStatus.FAILED], processed_at__lt=cutoff).delete()
    DateTriggerScan.objects.filter(started_at__lt=cutoff).exclude(finished_at=None).delete()
    return runs

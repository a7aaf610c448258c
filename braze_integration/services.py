"""The Braze integration's public surface: what the admin, the API, commands, tasks and the
workflows call.

The save path is kept small: a member save marks the member pending (one upsert in the same
transaction) and, after commit, schedules a flush task only when a flush slot is free. Everything
else (building values, comparing with what Braze has, sending) happens in the worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Min, Sum
from django.utils import timezone

from loyaltysync.models import Member
from loyaltysync.on_commit import on_commit_once
from loyaltysync.schedules import schedule_ensure
from loyaltysync.ttl_cache import TTLCache

from . import building, delivery, erasure, errors, monitoring, pruning, queue
from .client import BrazeClient, connection_pool
from .endpoints import EndpointRefused, endpoint_normalize
from .models import (
    Connection,
    ConnectionStatus,
    MemberSyncState,
    OutboxItem,
    OutboxKind,
    OutboxStatus,
    RequestOutcome,
    SyncRequest,
    SyncStatus,
)

logger = logging.getLogger(__name__)

FLUSH_TASK = "braze_integration.tasks.sync_flush"
CLAIM_REQUESTS = 8  # requests' worth of members claimed per round


# --- what the save path needs to know, cached briefly per process ----------------------------------

@dataclass(frozen=True)
class SyncConfig:
    connection_id: int | None
    depends_on: frozenset[str]

    def concerns(self, changed: set[str] | None) -> bool:
        """Whether a change to ``changed`` attributes (``None``: unknown, e.g. a new member) must be sent."""
        if self.connection_id is None or not self.depends_on:
            return False
        return changed is None or not self.depends_on.isdisjoint(changed)


CONFIG_TTL = 2.0  # seconds another process may take to notice a new mapping


def _sync_config_load() -> SyncConfig:
    from .fields import loyalty_fields

    connection = Connection.objects.filter(active=True).only("pk").first()
    depends: set[str] = set()
    if connection is not None:
        fields = loyalty_fields()
        for key in connection.mappings.values_list("loyalty_field", flat=True):
            if key in fields:
                depends.update(fields[key].depends_on)
    return SyncConfig(connection.pk if connection else None, frozenset(depends))


_config = TTLCache(_sync_config_load, ttl=CONFIG_TTL)


def _door_plan_load() -> building.MappingPlan | None:
    connection = Connection.objects.filter(active=True).first()
    return building.MappingPlan.load(connection) if connection is not None else None


_door_plan = TTLCache(_door_plan_load, ttl=CONFIG_TTL)


def door_plan() -> building.MappingPlan | None:
    """The active connection's mapping plan, for checking values when members are saved (cached like ``sync_config``)."""
    return _door_plan.get()


def sync_config() -> SyncConfig:
    """The active connection and the member attributes its mappings read (cached for ``CONFIG_TTL``)."""
    return _config.get()


def sync_config_invalidate() -> None:
    _config.clear()
    _door_plan.clear()


def connection_active() -> Connection | None:
    return Connection.objects.filter(active=True).first()


# --- marking members pending -----------------------------------------------------------------------

def member_sync_enqueue(*, member_ids: Iterable[int], schedule: bool = True) -> int:
    """Mark members as needing a sync, in the caller's transaction, and schedule a flush after commit
    (unless ``schedule`` is off: the caller sends them itself).

    Several changes of one member before the worker gets to it merge into one request.
    """
    ids = sorted(set(member_ids))
    if not ids:
        return 0
    queue.changes_note(ids)
    if schedule:
        flush_after_commit()
    return len(ids)


def flush_after_commit(*, erasure: bool = False) -> None:
    """Schedule one flush when the current transaction commits (once per transaction).

    ``erasure``: a profile's deletion is waiting. A lingering worker's promise (``queue.slot_watched``)
    is about member changes only: its looks do not see deletions, so an erasure queues a task anyway."""
    on_commit_once(_flush_request_for_erasure if erasure else flush_request)


def _flush_request_for_erasure() -> bool:
    return flush_request(trust_promise=False)


def flush_request(*, trust_promise: bool = True) -> bool:
    """Queue a flush task if a flush slot is free; returns whether one was queued.

    A busy slot means a task is queued or running and will see every change committed before it
    gives the slot back (it checks once more after releasing), so nothing waits for the periodic flush.
    While a task has promised to look again later (``queue.slot_watched``) not even the slots are read,
    unless ``trust_promise`` is off (a task asking for help, or keeping its own promise).
    """
    if trust_promise and queue.slot_watched():
        return False
    slot_id = queue.slot_take(unless_watched=trust_promise)
    if slot_id is None:
        return False
    from django_q.tasks import async_task

    try:
        async_task(FLUSH_TASK, slot_id=slot_id, task_name="braze-sync-flush", q_options={"save": False})
    except Exception:  # broker down: the periodic flush picks the work up; the change is safe in the database
        logger.warning("Could not queue a Braze flush (broker unavailable); the periodic flush will send it.")
        queue.slot_release(slot_id)
        return False
    return True


SYNC_HOLD_SECONDS = 5.0


def member_sync_hold(*, member_ids: Iterable[int], seconds: float = SYNC_HOLD_SECONDS) -> None:
    """Keep the members' next sync back (in the caller's transaction) while more for it is being
    worked out, e.g. the workflows a checkout starts: their mapped values and the workflows'
    attributes and events then go in one request, not two. ``member_sync_release`` ends the hold;
    it ends by itself after ``seconds`` if nobody does (the periodic flush then sends them)."""
    ids = sorted(set(member_ids))
    if ids:
        queue.hold(ids, until=timezone.now() + timedelta(seconds=seconds))


def member_sync_release(*, member_ids: Iterable[int]) -> None:
    """End a ``member_sync_hold``: the members go with the next flush (queued after commit)."""
    if queue.unhold(sorted(set(member_ids))):
        flush_after_commit()


# --- the outbox (events, purchases, ad-hoc attributes) ----------------------------------------------

def outbox_enqueue(*, member_id: int, kind: str, payload: dict[str, Any], dedupe_key: str | None = None,
                   origin: str = "") -> OutboxItem | None:
    """Queue an event, purchase or ad-hoc attributes for a member; ``None`` if ``dedupe_key`` was queued before.

    The item rides with the member's next sync request, retried and logged with it.
    """
    if kind not in OutboxKind.values:
        raise ValueError(f"Unknown outbox kind {kind!r}")
    try:
        with transaction.atomic():
            item = OutboxItem.objects.create(member_id=member_id, kind=kind, payload=payload,
                                             dedupe_key=dedupe_key, origin=origin[:255])
    except IntegrityError:
        if dedupe_key and OutboxItem.objects.filter(dedupe_key=dedupe_key).exists():
            return None
        raise
    member_sync_enqueue(member_ids=[member_id])
    return item


# --- the worker side --------------------------------------------------------------------------------

_pools: dict[str, Any] = {}


def client_for(connection: Connection) -> BrazeClient:
    """A client for the connection, reusing one keep-alive connection pool per endpoint in this process."""
    try:
        base_url = endpoint_normalize(connection.instance_url, resolve=False)
    except EndpointRefused as err:
        raise errors.BrazeConfigurationError(str(err)) from None
    pool = _pools.get(base_url)
    if pool is None:
        pool = _pools[base_url] = connection_pool(base_url)
    return BrazeClient(base_url, connection.api_key or "", timeout=settings.BRAZE_HTTP_TIMEOUT, pool=pool)


@dataclass
class FlushResult:
    report: delivery.DeliveryReport
    stopped: str = ""


def sync_flush(*, slot_id: int | None = None, time_budget: float = 20.0, max_wait: float = 5.0,
               linger: float = 0.0) -> FlushResult:
    """Send every pending member, batch by batch, until nothing is due or ``time_budget`` is spent.

    With ``linger``, a worker that ran out of work keeps its slot that many seconds longer, looking
    for new changes every ``LINGER_POLL`` seconds: under steady traffic one task serves many saves, and a
    save finds the slot busy and queues nothing (the cheapest save path and the lowest latency).

    Short waits (a rate-limit reset, a retry due within ``max_wait`` seconds) are slept through;
    longer ones are left to the periodic flush. Another task is queued when there is more than one
    batch of work (so several workers share it) or when the budget runs out with work left.
    """
    report = delivery.DeliveryReport()
    deadline = time.monotonic() + time_budget
    queue.recover_lost_requests()
    stopped = ""
    promised = None  # this task promised to look for new changes after this time (see queue.slot_watched)
    lingered = False  # the last round ended by lingering without finding new changes
    try:
        while True:
            connection = connection_active()
            if connection is None:
                stopped = "no active connection"
                break
            if connection.status == ConnectionStatus.NEEDS_ATTENTION:
                stopped = "connection needs attention"
                break
            left = deadline - time.monotonic()
            if connection.paused_until and connection.paused_until > timezone.now():
                wait = (connection.paused_until - timezone.now()).total_seconds()
                if wait > min(max_wait, left):
                    stopped = f"paused for {wait:.1f}s"
                    break
                time.sleep(wait)
                continue
            if left <= 0:
                stopped = "time budget spent"
                if queue.claimable_exists():
                    queue.slot_release(slot_id)
                    slot_id = None
                    flush_request(trust_promise=False)
                break
            if erasure.deletions_due_exist():
                # Erased members' profiles go first: nothing else about them may reach Braze after the erasure.
                try:
                    _, stop = erasure.deletions_deliver(connection, client_for(connection),
                                                        backoff=delivery.backoff_seconds)
                except errors.BrazeConfigurationError as err:
                    Connection.objects.filter(pk=connection.pk).update(
                        status=ConnectionStatus.NEEDS_ATTENTION, last_message=str(err))
                    stopped = str(err)
                    break
                if stop is not None:
                    stopped, wait = stop
                    if wait and wait <= min(max_wait, deadline - time.monotonic()):
                        continue
                    break
            limit = connection.batch_size * CLAIM_REQUESTS
            token, ids = queue.claim(limit=limit)
            if not ids:
                if slot_id is not None and not lingered:
                    found, promised = _linger_for_work(slot_id, min(linger, deadline - time.monotonic()), promised)
                    if found:
                        continue
                # Give the slot back first, then look once more: a change committed before the
                # release is seen now; one committed after it finds the slot free and queues a task.
                queue.slot_release(slot_id)
                slot_id = None
                if queue.claimable_exists():
                    slot_id = queue.slot_take(unless_watched=True)
                    if slot_id is None:
                        break  # another task took over, or lingers and sees it
                    continue
                due = queue.next_due_in()
                if due is not None and due <= min(max_wait, deadline - time.monotonic()):
                    slot_id = queue.slot_take()
                    if slot_id is None:
                        break
                    time.sleep(due + 0.01)
                    continue
                break
            if len(ids) == limit:
                flush_request(trust_promise=False)  # more than a batch is waiting: let another worker help
            if slot_id is not None and linger > 0:
                # After this round the task either claims again or lingers ``linger`` seconds.
                promised = timezone.now() + timedelta(seconds=linger)
            queue.slot_renew(slot_id, watching_until=promised)
            try:
                client = client_for(connection)
            except errors.BrazeConfigurationError as err:
                queue.release(token)
                Connection.objects.filter(pk=connection.pk).update(
                    status=ConnectionStatus.NEEDS_ATTENTION, last_message=str(err))
                stopped = str(err)
                break
            round_ = delivery.deliver_claim(delivery.Deliverer(connection, client), token)
            report.merge(round_.report)
            if round_.stop is not None:
                if round_.stop.reason == delivery.CLAIM_LOST:
                    continue  # nothing is wrong with Braze: claim what is due now (another worker has the rest)
                stopped = round_.stop.reason
                if round_.stop.wait and round_.stop.wait <= min(max_wait, deadline - time.monotonic()):
                    continue  # the loop sleeps through the pause
                break
            lingered = False
            if len(ids) < limit and slot_id is not None and linger > 0:
                # The claim took every member that was waiting: under a trickle of saves, claiming again at
                # once finds nothing and costs a round of queries. Wait for new changes instead.
                found, promised = _linger_for_work(slot_id, min(linger, deadline - time.monotonic()), promised)
                if not found and queue.slot_watched_by_another(slot_id):
                    break  # another task lingers and sees every change: this one is not needed
                lingered = not found
    finally:
        queue.slot_release(slot_id)
    _promise_keep(promised)
    return FlushResult(report=report, stopped=stopped)


def _promise_keep(promised) -> None:
    """Saves committed before ``promised`` queued no task, trusting this one to look after that time:
    wait for it to pass, then look once more (and queue a task if anything is due, unless a task
    still lingering will see it; deletions it would not)."""
    if promised is None:
        return
    wait = (promised - timezone.now()).total_seconds()
    if wait > 0:
        time.sleep(wait + 0.01)
    if erasure.deletions_due_exist():
        flush_request(trust_promise=False)
    elif queue.claimable_exists():
        queue.slot_promise_forget()  # read the slots again: this task's own promise is over
        flush_request()


# How often a lingering worker looks for changes. Each look that finds some sends what gathered since
# the last: 100 ms gathers 5x more of a busy shop's saves per claim than 20 ms did, so the worker
# takes SQLite's write lock 5x less often beside the saves (save() sync on/off on SQLite, mean: 2.1x ->
# 1.7x; API PATCH 1.36x -> 1.25x); a save waits 40 ms longer on average for the worker to look (save to
# sandbox p50 58 ms on SQLite, bench/latency.py).
LINGER_POLL = 0.1


def _linger_for_work(slot_id: int, seconds: float, promised, *, interval: float = LINGER_POLL):
    """Wait up to ``seconds`` for a member to become claimable, keeping the slot and promising to look
    until then; returns (whether one did, the promise)."""
    until = time.monotonic() + seconds
    if seconds > 0 and not queue.slot_watched_by_another(slot_id):
        promised = max(promised or timezone.now(), timezone.now() + timedelta(seconds=seconds))
        queue.slot_renew(slot_id, watching_until=promised)
    else:
        until = 0.0  # another task lingers already (one sees every change) and keeps its own promise
    renewed = time.monotonic()
    while time.monotonic() < until:
        time.sleep(interval)
        if queue.claimable_exists():
            return True, promised
        if time.monotonic() - renewed > 1.0:
            if queue.slot_watched_by_another(slot_id):
                break
            queue.slot_renew(slot_id)
            renewed = time.monotonic()
    return False, promised


def member_sync_now(*, member_ids: Iterable[int], force: bool = False, trigger: str = "manual") -> FlushResult:
    """Send these members now, in this process (the admin's "Sync to Braze now")."""
    ids = list(member_ids)
    report = delivery.DeliveryReport()
    connection = connection_active()
    if connection is None:
        return FlushResult(report=report, stopped="no active connection")
    with transaction.atomic():
        # No flush task: a worker would race this call for the same members.
        member_sync_enqueue(member_ids=ids, schedule=False)
        queue.unhold(ids)
        MemberSyncState.objects.filter(pk__in=ids).update(next_attempt_at=None)
    token, claimed = queue.claim(limit=len(ids), member_ids=ids)
    if not claimed:
        return FlushResult(report=report, stopped="these members are being sent by a worker right now")
    try:
        client = client_for(connection)
    except errors.BrazeConfigurationError as err:
        queue.release(token)
        return FlushResult(report=report, stopped=str(err))
    round_ = delivery.deliver_claim(delivery.Deliverer(connection, client, trigger=trigger), token, force=force)
    report.merge(round_.report)
    if queue.claimable_exists():  # e.g. outbox items this round could not carry: a worker sends them
        flush_request()
    return FlushResult(report=report, stopped=round_.stop.reason if round_.stop else "")


def member_sync_retry(*, member_ids: Iterable[int]) -> int:
    """Put failed and dead-lettered members, and their failed or dead outbox items, back in the queue."""
    ids = list(member_ids)
    with transaction.atomic():
        items = OutboxItem.objects.filter(member_id__in=ids, status__in=[OutboxStatus.DEAD, OutboxStatus.FAILED])
        retried = set(items.values_list("member_id", flat=True))
        items.update(status=OutboxStatus.PENDING, attempts=0, last_error="")
        retried |= set(MemberSyncState.objects.filter(
            pk__in=ids, status__in=[SyncStatus.DEAD, SyncStatus.FAILED]).values_list("pk", flat=True))
        member_sync_enqueue(member_ids=retried)
        MemberSyncState.objects.filter(pk__in=retried).update(next_attempt_at=None)
    return len(retried)


def member_payload_preview(*, member: Member) -> dict[str, Any]:
    """The request body the member's next sync would send (all mapped fields and pending items), without sending."""
    connection = connection_active()
    if connection is None:
        return {"error": "No active Braze connection."}
    return building.member_body_preview(connection, member)


# --- Connect -------------------------------------------------------------------------------------

@dataclass
class VerifyResult:
    ok: bool
    status: str
    message: str


def connection_verify(*, connection: Connection) -> VerifyResult:
    """Check the URL and key without writing data: post an empty batch.

    Braze has no side-effect-free check; an empty batch writes nothing and answers 400 when the key
    is accepted, 401/403 when it is not. The message says what was learned and what was not.
    """
    now = timezone.now()
    try:
        client = client_for(connection)
        endpoint_normalize(connection.instance_url)  # also refuses hosts that resolve to private addresses
    except (errors.BrazeConfigurationError, EndpointRefused) as err:
        result = VerifyResult(False, ConnectionStatus.NEEDS_ATTENTION, f"Not checked: {err}")
    else:
        result = _verify_with(client)
    was = connection.status
    updates: dict[str, Any] = {"status": result.status, "last_checked_at": now, "last_message": result.message}
    if result.ok:
        updates["paused_until"] = None
    Connection.objects.filter(pk=connection.pk).update(**updates)
    for name, value in updates.items():
        setattr(connection, name, value)
    if result.ok and was != ConnectionStatus.CONNECTED:
        transaction.on_commit(flush_request)  # resume sending what waited while the connection was broken
    return result


def _verify_with(client: BrazeClient) -> VerifyResult:
    try:
        answer = client.track({"attributes": []})
    except errors.BrazeRequestRejected as err:
        return VerifyResult(True, ConnectionStatus.CONNECTED,
                            f"Connected: Braze accepted the API key at {client.base_url} (it answered an empty test "
                            f"request with {err.status} \"{err.message}\", as expected; nothing was written). "
                            "Braze offers no way to check the users.track permission without writing data: a missing "
                            "permission shows up as 403 on the first sync.")
    except errors.BrazeAuthError as err:
        return VerifyResult(False, ConnectionStatus.NEEDS_ATTENTION, errors.auth_message(err))
    except errors.BrazeRateLimited as err:
        return VerifyResult(False, ConnectionStatus.NEVER_CHECKED,
                            f"Braze is rate-limiting this workspace (retry in {err.retry_after:.0f}s); the key was not checked.")
    except errors.BrazeTransportError as err:
        return VerifyResult(False, ConnectionStatus.NEEDS_ATTENTION, f"Braze is unreachable at {client.base_url}: {err.message}.")
    except errors.BrazeError as err:
        return VerifyResult(False, ConnectionStatus.NEEDS_ATTENTION,
                            f"Unexpected answer from Braze (HTTP {err.status}): {err.message}")
    return VerifyResult(True, ConnectionStatus.CONNECTED,
                        f"Connected: Braze accepted the API key at {client.base_url} (HTTP {answer.status}).")


# --- schedules and housekeeping ----------------------------------------------------------------------

def schedules_ensure() -> None:
    """Create the periodic flush and the daily prune schedules (idempotent; run after migrate)."""
    from django_q.models import Schedule

    schedule_ensure(name="braze-sync-periodic", func="braze_integration.tasks.sync_periodic",
                    schedule_type=Schedule.MINUTES, minutes=1)
    pruning.schedules_ensure()


def sync_housekeeping() -> None:
    from . import ratelimit

    queue.recover_lost_requests()
    outbox_left_behind_requeue()
    for connection_id in Connection.objects.values_list("pk", flat=True):
        ratelimit.prune(connection_id)


def outbox_left_behind_requeue() -> int:
    """Mark pending every member that Braze is not waiting on (synced or failed) but that still has
    unsent outbox items, so the flush sends them; returns how many. Such members come only from
    data written before the flush kept members pending until their items were out, or by hand."""
    ids = sorted(set(
        OutboxItem.objects.filter(status=OutboxStatus.PENDING)
        .filter(member__braze_sync__status__in=[SyncStatus.SYNCED, SyncStatus.FAILED])
        .values_list("member_id", flat=True)))
    if ids:
        queue.mark_pending(ids)
    return len(ids)


# --- health --------------------------------------------------------------------------------------

def sync_status_summary() -> dict[str, Any]:
    """The numbers behind `braze_status` and the dashboard."""
    queue.changes_fold_for_reading()  # saved changes count as pending at once, with or without a worker
    now = timezone.now()
    by_status = dict(MemberSyncState.objects.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    oldest = MemberSyncState.objects.filter(status=SyncStatus.PENDING).aggregate(m=Min("dirty_since"))["m"]
    outbox_pending = OutboxItem.objects.filter(status=OutboxStatus.PENDING).aggregate(n=Count("pk"), m=Min("created_at"))
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    requests_today = SyncRequest.objects.filter(created_at__gte=today)
    failed_outcomes = [o for o in RequestOutcome.values if o not in (RequestOutcome.SUCCESS, RequestOutcome.SENDING)]
    counted = dict(
        requests_today.filter(outcome__in=failed_outcomes)
        .values_list("outcome").annotate(n=Count("pk")).values_list("outcome", "n"))
    # Every kind and status with its count, zeros included: a monitor reads a key, not its absence.
    errors_by_kind = {outcome: counted.get(outcome, 0) for outcome in failed_outcomes}
    outbox = dict(OutboxItem.objects.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    connection = connection_active()
    paused = connection is not None and connection.paused_until is not None and connection.paused_until > now
    live = monitoring.liveness()
    return {
        "connection": {
            "name": connection.name if connection else None,
            "status": connection.status if connection else "none",
            "message": connection.last_message if connection else "",
            # A pause that is over is not shown (it is cleared at the next successful send).
            "paused_until": connection.paused_until.isoformat() if paused else None,
        },
        "worker_last_seen": live.worker_seen_at.isoformat() if live.worker_seen_at else None,
        "worker_last_seen_seconds": (now - live.worker_seen_at).total_seconds() if live.worker_seen_at else None,
        "last_success": live.last_success_at.isoformat() if live.last_success_at else None,
        "last_success_seconds": (now - live.last_success_at).total_seconds() if live.last_success_at else None,
        "alarms": {alarm.name: alarm.message for alarm in monitoring.sync_alarms(now=now, state=live) if alarm.active},
        "members": {s: by_status.get(s, 0) for s in SyncStatus.values},
        "oldest_pending_seconds": (now - oldest).total_seconds() if oldest else 0,
        "outbox": {status: outbox.get(status, 0) for status in OutboxStatus.values},
        # Events, purchases and ad-hoc attributes not yet in Braze, whatever their member's state says.
        "outbox_pending": outbox_pending["n"],
        "oldest_outbox_pending_seconds": (now - outbox_pending["m"]).total_seconds() if outbox_pending["m"] else 0,
        "ambiguous_event_sends": OutboxItem.objects.filter(ambiguous_sends__gt=0).count(),
        "requests_today": requests_today.count(),
        "objects_today": sum(v or 0 for v in requests_today.aggregate(
            a=Sum("attributes_count"), e=Sum("events_count"), p=Sum("purchases_count")).values()),
        "errors_today": errors_by_kind,
        # Work that will reach Braze but is not in the sync's queue yet (workflow trigger records).
        "upstream": monitoring.backlogs(now=now),
    }

"""Sending claimed members to Braze and recording what happened.

A *claim* (see ``queue``) is a set of members stamped with a token and a lease; ``building`` turns
it into objects. Members are packed into requests (a member's objects share a request), and each is
recorded as a ``SyncRequest``: before it leaves when it carries events or purchases (so a worker
killed mid-request leaves a trace and the possible duplicate is counted), with its answer when it
carries only attributes (safe to send again). Braze's answer is carried out for every member and
item: ``errors.outcome_of`` decides what the answer means (retry, wait, pause, split, fail), this
module only does it.
``deliver_claim`` is the one round that the flush task, the resync and "Sync now" all run.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from loyaltysync.on_commit import commit_without_waiting_for_disk

from . import building, erasure, errors, interrupts, monitoring, payloads, queue, ratelimit
from .building import MappingPlan, MemberWork, OutboxOwner, build, data_points_of, works_of
from .client import BrazeClient, TrackResult
from .errors import Action, Outcome
from .models import (
    Connection,
    ConnectionStatus,
    MemberSyncState,
    OutboxItem,
    OutboxKind,
    OutboxStatus,
    SyncRequest,
    SyncStatus,
)

logger = logging.getLogger(__name__)

BACKOFF_BASE = 2.0
# A request that gets 5xx again while carrying a member that already failed this many times in a row
# is halved, as a 400 is: one member whose data makes Braze fail must not take its neighbours along.
SPLIT_AFTER_SERVER_ERRORS = 2
BACKOFF_CAP = 600.0
DEAD_AFTER = timedelta(hours=24)
RETRY_STOP = "Braze unavailable"
CLAIM_LOST = "the claim's lease ran out, or its members were erased or taken by another worker"


def backoff_seconds(attempts: int, *, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: about 2 s, 4 s, 8 s ... capped at 10 minutes."""
    rng = rng or random
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1)) * rng.uniform(0.5, 1.0)


class SyncStopped(Exception):
    """Sending must stop for now (rate limited, credentials, or Braze unreachable).

    ``rate_limited``: only a wait for the rate limit's reset, not a failure (nothing went wrong)."""

    def __init__(self, reason: str, *, wait: float = 0.0, rate_limited: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait
        self.rate_limited = rate_limited


@dataclass
class DeliveryReport:
    members_sent: int = 0
    members_unchanged: int = 0
    members_failed: int = 0
    members_retrying: int = 0
    events_sent: int = 0
    requests: int = 0
    data_points: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    # Members whose claim ended with Braze's answer (sent, unchanged or refused), or dead-lettered after their
    # last try: a resync must not send them again.
    settled: set[int] = field(default_factory=set)

    def merge(self, other: DeliveryReport) -> None:
        for name in ("members_sent", "members_unchanged", "members_failed", "members_retrying", "events_sent",
                     "requests", "data_points"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.settled |= other.settled
        for kind, count in other.errors_by_kind.items():
            self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + count

    def count_error(self, kind: str) -> None:
        self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1


@dataclass
class _Prepared:
    plan: payloads.RequestPlan
    request: SyncRequest
    data: bytes


def _post(client: BrazeClient, data: bytes) -> TrackResult | errors.BrazeError:
    try:
        return client.post_bytes(data)
    except errors.BrazeError as err:
        return err


def requests_in_flight() -> int:
    """How many of a claim's requests may wait for Braze's answer at once (``BRAZE_REQUESTS_IN_FLIGHT``)."""
    return max(1, settings.BRAZE_REQUESTS_IN_FLIGHT)


@functools.cache
def _sender(threads: int) -> ThreadPoolExecutor:
    """The threads of this process that put requests on the wire and wait for the answers (the
    connection pool is thread-safe); all database work stays on the thread that sends the claim."""
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="braze-send")


@dataclass
class Round:
    """What one claim's delivery did, and why it stopped early (``stop``), if it did."""

    report: DeliveryReport
    stop: SyncStopped | None = None


def deliver_claim(deliverer: Deliverer, token: uuid.UUID, *, plan: MappingPlan | None = None,
                  force: bool = False, forced_after: int | None = None, built: Built | None = None,
                  while_answers_come: Callable[[], None] | None = None) -> Round:
    """Deliver one claim (``built`` already, or built here). A stop (rate limit, paused connection,
    Braze down) gives the members back and is returned; an unexpected error (a bug, the database, an
    interrupt) gives them back at once, counting any request that may have reached Braze as a possible
    duplicate, and is raised. ``while_answers_come``: see ``Deliverer.send``."""
    report = built.report if built is not None else DeliveryReport()
    try:
        if built is None:
            built = deliverer.build(token, plan=plan, force=force, forced_after=forced_after, report=report)
        return Round(deliverer.send(built, while_answers_come=while_answers_come))
    except SyncStopped as stop:
        queue.release(token)
        # What was done before the stop stands (the requests Braze accepted are not sent again).
        return Round(report, stop)
    except BaseException:  # Ctrl-C and SIGTERM too: give the claim back now rather than after the lease
        queue.abandon(token)
        raise


@dataclass
class Built:
    """A claim built and ready to send (``Deliverer.build``): its requests, its report so far (members
    with nothing to send are finished already), and what the look for erasures after its last answer
    needs."""

    token: uuid.UUID
    requests: list[payloads.RequestPlan]
    report: DeliveryReport
    claimed: set[str]  # the external ids of the claim's members
    tombstones_checked: datetime  # when they were last checked against every erasure
    claimed_at: float  # ``time.monotonic()`` about when the claim was taken (its lease began)


class Deliverer:
    """Sends the claimed members of one batch and writes back every outcome."""

    def __init__(self, connection: Connection, client: BrazeClient, *, trigger: str = "sync", partial: bool = False,
                 member_rows: bool = True, sent_after: int | None = None):
        self.connection = connection
        self.client = client
        self.trigger = trigger
        # A resync resumed after an interruption: a member with nothing to send whose last request is one of
        # this trigger's after this request id was sent by the run before it stopped, and counts as sent.
        self.sent_after = sent_after
        # A partial send (some mapped fields only) must not mark a member with other changes as synced.
        self.partial = partial
        # Without member rows (a full resync) a request keeps one row of its own, and a member only
        # one when Braze refused something of it; its state still points at the request that carried it.
        self.member_rows = member_rows
        # When the claim's lease was last extended, and last found holding its members (``time.monotonic()``).
        self._renewed = self._held = 0.0

    def deliver(self, token: uuid.UUID, *, plan: MappingPlan | None = None, force: bool = False,
                report: DeliveryReport | None = None) -> DeliveryReport:
        return self.send(self.build(token, plan=plan, force=force, report=report))

    def build(self, token: uuid.UUID, *, plan: MappingPlan | None = None, force: bool = False,
              forced_after: int | None = None, report: DeliveryReport | None = None) -> Built:
        """Build the claim's members and plan its requests; members with nothing to send are finished."""
        claimed_at = time.monotonic()  # the claim was taken just before
        report = report if report is not None else DeliveryReport()
        plan = plan or MappingPlan.load(self.connection)
        works, users = build(self.connection, token, plan, force=force, forced_after=forced_after)
        by_pk = {w.pk: w for w in works}
        # A member erased since its row was read sends nothing (its state and outbox rows are gone with it).
        tombstones_checked = timezone.now() - erasure.TOMBSTONE_MARGIN
        erased = erasure.tombstoned(w.external_id for w in works)
        if erased:
            users = [u for u in users if by_pk[u.key].external_id not in erased]
            works = [w for w in works if w.external_id not in erased]
        # Outbox items that failed to build never leave; record them now.
        self._save_outbox([i for w in works for i in w.outbox if i.status == OutboxStatus.FAILED])
        sending = [u for u in users if u.objects]
        # Members with nothing to send: either unchanged, or their values cannot be sent.
        quiet = [by_pk[u.key] for u in users if not u.objects]
        self._finish_quiet(token, quiet, report)
        requests = payloads.plan_requests(
            sending, max_objects=self.connection.batch_size,
            per_array_limit=self.connection.batch_size if self.connection.per_array_limit else None)
        return Built(token=token, requests=requests, report=report, claimed={w.external_id for w in works},
                     tombstones_checked=tombstones_checked, claimed_at=claimed_at)

    def send(self, built: Built, *, while_answers_come: Callable[[], None] | None = None) -> DeliveryReport:
        """Send a built claim and record every answer. ``while_answers_come`` is called once the last
        request is on its way, before the answers still to come are waited for: work for the next claim
        (a resync builds its next chunk) that would otherwise wait until they are in. Not called when
        sending stopped early."""
        self._renewed, self._held = built.claimed_at, -math.inf
        try:
            self._send_all(built.token, built.requests, built.report, while_answers_come)
        finally:  # also when sending stopped or was interrupted: what went out went out
            self._erased_while_sending(built)
        return built.report

    @staticmethod
    def _erased_while_sending(built: Built) -> None:
        """A member erased while this claim held it may have been recreated by a request on its way:
        delete its profile again, now. One read for the whole claim, after its last answer: an erasure
        that commits later queues its deletion after that answer anyway, so Braze gets the deletion last.
        (An erasure of a claimed member waits for the claim's lease, see ``receivers``: this brings it
        forward once the claim is over, whether or not the member was sent.)"""
        erased = erasure.tombstoned(built.claimed, since=built.tombstones_checked)
        if erased:
            with transaction.atomic():
                erasure.deletions_repeat(erased)

    def _send_all(self, token: uuid.UUID, requests: list[payloads.RequestPlan], report: DeliveryReport,
                  while_answers_come: Callable[[], None] | None = None) -> None:
        """Send the requests in order, up to ``requests_in_flight()`` of them waiting for Braze at once
        while this thread records the answers, oldest first, each as soon as it is in. A request that
        carries a member of one still waiting goes out after that one's answer: a member's objects
        reach Braze in order.

        When an answer stops sending (a rate limit, Braze down), or an interrupt, the answers of the
        requests already on the wire are still recorded, and the members of the rest are given back."""
        depth = requests_in_flight()
        sender = _sender(depth)
        in_flight: deque[tuple[_Prepared, Future, set[int]]] = deque()

        def complete_oldest(*, stopping: bool = False) -> None:
            prepared, future, _ = in_flight[0]
            # Taken off only once its answer is in: an interrupt while waiting for it leaves it to
            # ``complete_the_rest``, which records it too.
            with interrupts.wait_interruptibly():
                answer = future.result()
            in_flight.popleft()
            self._complete(token, prepared, answer, report, stopping=stopping)

        def complete_the_rest() -> None:
            """Sending stopped: record every answer still to come (none of them sends anything)."""
            while in_flight:
                try:
                    complete_oldest(stopping=True)
                except SyncStopped:  # a further stop changes nothing now
                    continue

        try:
            for index, plan in enumerate(requests):
                # Ctrl-C and SIGTERM stop here or while an answer is waited for, not while one is
                # recorded or between a request leaving and its being in ``in_flight`` (``interrupts``).
                interrupts.safe_point()
                members = _members_of(plan)
                try:
                    while in_flight and (len(in_flight) >= depth or in_flight[0][1].done()
                                         or any(members & m for _, _, m in in_flight)):
                        complete_oldest()
                    prepared = self._prepare(token, plan, report, ahead=len(requests) - index)
                except SyncStopped:
                    complete_the_rest()
                    self._release_from(token, requests, index)
                    raise
                in_flight.append((prepared, sender.submit(_post, self.client, prepared.data), members))
            if while_answers_come is not None:
                while_answers_come()
            while in_flight:
                try:
                    complete_oldest()
                except SyncStopped:
                    complete_the_rest()
                    raise
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM: what is on the wire reaches Braze anyway. Its answers are recorded (at most
            # ``requests_in_flight()``, each within the client's timeout), so that a resumed run does not
            # send those members again; another interrupt while waiting stops at once.
            complete_the_rest()
            raise

    @staticmethod
    def _release_from(token: uuid.UUID, requests: list[payloads.RequestPlan], start: int) -> None:
        queue.release(token, {owner.group_key for p in requests[start:] for owners in p.owners.values() for owner in owners})

    def _prepare(self, token: uuid.UUID, plan: payloads.RequestPlan, report: DeliveryReport, *,
                 ahead: int = 1) -> _Prepared:
        data = payloads.encode_plan(plan, _object_json)
        outbox_ids = [o.item.pk for owners in plan.owners.values() for o in owners if isinstance(o, OutboxOwner)]
        try:
            ratelimit.acquire(self.connection, ahead=ahead)
        except TimeoutError:
            raise SyncStopped("rate limit budget exhausted", wait=1.0, rate_limited=True) from None
        self._hold(token, plan, report)
        request = SyncRequest(
            connection=self.connection, trigger=self.trigger, attributes_count=len(plan.attributes),
            events_count=len(plan.events), purchases_count=len(plan.purchases), bytes_sent=len(data),
            data_points=sum(data_points_of(obj) for obj in plan.attributes), claim_token=token,
            # While sending, ``errors`` holds the outbox ids: if the worker dies, recovery counts them as ambiguous.
            errors=outbox_ids,
        )
        if outbox_ids:
            # Events are not idempotent: leave a trace before they leave, so a worker killed while
            # waiting for the answer is noticed (and the possible duplicate counted). Attribute-only
            # requests are safe to repeat, so their row is written together with the answer.
            request.save()
        report.requests += 1
        return _Prepared(plan=plan, request=request, data=data)

    def _hold(self, token: uuid.UUID, plan: payloads.RequestPlan, report: DeliveryReport) -> None:
        """The fence before a request leaves: the claim must still hold all its members (those it has not
        finished already: a member whose objects fill two requests is finished with the first), long enough
        for Braze's answer (or the client's timeout) to come before another worker could take them.
        Raises ``SyncStopped`` otherwise: what this worker built may be stale (it was paused, or waited
        too long), and another worker sends those members instead.

        The lease is extended every third of it, so a claim slowed by the rate limit keeps its members.
        Within a second of the last look (less than the lease it found left) nothing can have taken the
        members, so a fast claim looks about once a second; an erasure meanwhile is undone after the claim
        (its deletion waits for it, see ``_erased_while_sending``)."""
        lease = queue.claim_lease().total_seconds()
        now = time.monotonic()
        if now - self._renewed > lease / 3:
            queue.claim_renew(token)
            self._renewed = now
        # Half the lease only when it is too short for the answer (``queue.claim_lease_check`` warns).
        window = min(queue.answer_wait(self.client.timeout).total_seconds(), lease / 2)
        if now - self._held < min(1.0, window / 2):
            return
        if not queue.claim_holds(token, _members_of(plan) - report.settled, for_at_least=timedelta(seconds=window)):
            monitoring.claim_lost(connection=self.connection)
            raise SyncStopped(CLAIM_LOST)
        self._held = now

    def _send(self, token: uuid.UUID, plan: payloads.RequestPlan, report: DeliveryReport, *,
              may_split: bool = True) -> None:
        prepared = self._prepare(token, plan, report)
        self._complete(token, prepared, _post(self.client, prepared.data), report, may_split=may_split)

    def _complete(self, token: uuid.UUID, prepared: _Prepared, answer: TrackResult | errors.BrazeError,
                  report: DeliveryReport, *, stopping: bool = False, may_split: bool = True) -> None:
        plan, request = prepared.plan, prepared.request
        outcome = errors.outcome_of(answer)
        if may_split and not stopping and _fails_again(plan, outcome):
            halves = payloads.split_plan(plan)
            if halves is not None:
                self._log(request, answer, outcome)
                report.count_error(outcome.kind)
                self._send_isolating(token, halves, report)
                return
        if outcome.action == Action.SPLIT:
            self._log(request, answer, outcome)
            report.count_error(outcome.kind)
            halves = payloads.split_plan(plan)
            if halves is None:
                with transaction.atomic():
                    self._apply(token, request, plan, report, fail_all=True, message=outcome.message)
                return
            if stopping:
                # Sending has stopped (a rate limit, Braze down): no half goes out now. Braze processed
                # none of the request; its members go in a later round, which halves it then.
                queue.release(token, _members_of(plan))
                return
            for half in halves:
                self._send(token, half, report)
            return
        # Recording the answer is one transaction: a worker killed half-way leaves the request
        # "sending", which the next claim of these members reads as lost (and counts).
        with transaction.atomic():
            stop = self._record(token, request, plan, answer, outcome, report)
            # A lost record of mapped attributes alone only means sending the same values again after the
            # claim's lease; events, outbox items and erasure work always wait for the disk.
            if outcome.action == Action.SENT and not any(w.outbox for w in works_of(plan)):
                commit_without_waiting_for_disk()
        if stop is not None and not stopping:
            raise stop

    def _send_isolating(self, token: uuid.UUID, halves: tuple[payloads.RequestPlan, payloads.RequestPlan],
                        report: DeliveryReport) -> None:
        """Send the halves of a request that failed with 5xx again. When the first half fails too
        (down to the member that makes Braze fail), the second is still sent, but not halved
        further: both halves failing means Braze is down rather than one member's data, and then
        sending stops as for any 5xx."""
        failed: SyncStopped | None = None
        for half in halves:
            try:
                self._send(token, half, report, may_split=failed is None)
            except SyncStopped as stop:
                if failed is not None or stop.rate_limited or stop.reason != RETRY_STOP:
                    raise
                failed = stop
        if failed is not None:
            raise failed

    def _record(self, token: uuid.UUID, request: SyncRequest, plan: payloads.RequestPlan,
                answer: TrackResult | errors.BrazeError, outcome: Outcome, report: DeliveryReport) -> SyncStopped | None:
        """Carry out the answer's outcome for every member and item of the request; returns a stop
        when sending must pause."""
        if outcome.kind:
            report.count_error(outcome.kind)
        self._log(request, answer, outcome)
        match outcome.action:
            case Action.SENT | Action.FAIL_INDEXED:
                monitoring.send_succeeded(self.connection)
                self._apply(token, request, plan, report, object_errors=outcome.object_errors, message=outcome.message)
            case Action.DROP:
                self._apply(token, request, plan, report, object_errors=outcome.object_errors, fail_all=True,
                            message=outcome.message)
            case Action.WAIT:
                self._pause(outcome.wait, outcome.message)
                queue.release(token, _members_of(plan))
                return SyncStopped("rate limited", wait=outcome.wait, rate_limited=True)
            case Action.PAUSE:
                Connection.objects.filter(pk=self.connection.pk).update(
                    status=ConnectionStatus.NEEDS_ATTENTION, last_message=outcome.message,
                    last_checked_at=timezone.now())
                monitoring.connection_needs_attention(message=outcome.message)
                queue.release(token, _members_of(plan))
                return SyncStopped("connection needs attention")
            case Action.RETRY:
                # The members it carried, so that each one's page lists the request that failed for it.
                objects = Counter(owner.group_key for owners in plan.owners.values() for owner in owners)
                queue.request_members_write(request.pk, [(w.pk, objects[w.pk], f"Retrying: {outcome.message}"[:2000])
                                                         for w in works_of(plan)])
                attempts = self._retry_later(token, plan, outcome, report=report)
                self._pause(backoff_seconds(attempts), f"Braze did not answer properly: {outcome.message}")
                return SyncStopped(RETRY_STOP, wait=1.0)
        return None

    # --- outcomes ---------------------------------------------------------------------------------

    def _log(self, request: SyncRequest, answer: TrackResult | errors.BrazeError, outcome: Outcome) -> None:
        status, message, duration = answer.status, answer.message, answer.duration_ms
        errs = getattr(answer, "errors", None) or []
        request.outcome, request.http_status, request.message = outcome.log_as, status, message[:2000]
        request.errors, request.duration_ms, request.maybe_delivered = errs[:200], duration, outcome.maybe_delivered
        request.save()

    def _pause(self, seconds: float, message: str) -> None:
        until = timezone.now() + timedelta(seconds=max(0.0, seconds))
        Connection.objects.filter(pk=self.connection.pk).filter(
            Q(paused_until__isnull=True) | Q(paused_until__lt=until)).update(paused_until=until, last_message=message[:2000])
        monitoring.sending_paused(until=until, message=message)

    def _apply(self, token, request, plan: payloads.RequestPlan, report: DeliveryReport, *,
               object_errors: list[dict] | None = None, fail_all: bool = False, message: str = "") -> None:
        """Braze processed the request: each object went through unless Braze named it (or ``fail_all``)."""
        refused: dict[tuple[str, int], str] = {}
        for err in object_errors or []:
            if isinstance(err, dict) and isinstance(err.get("index"), int):
                refused[(str(err.get("input_array")), err["index"])] = str(err.get("type") or message or "refused")
        member_errors: dict[int, str] = {}
        sent_items, failed_items = [], []
        now = timezone.now()
        for array in ("attributes", "events", "purchases"):
            for index, owner in enumerate(plan.owners[array]):
                problem = refused.get((array, index)) or (message or "refused" if fail_all else None)
                if isinstance(owner, OutboxOwner):
                    owner.item.request_id = request.pk
                    if problem:
                        owner.item.status, owner.item.last_error = OutboxStatus.FAILED, f"Braze refused it: {problem}"
                        failed_items.append(owner.item)
                    else:
                        owner.item.status, owner.item.sent_at = OutboxStatus.SENT, now
                        sent_items.append(owner.item)
                        report.events_sent += 1
                elif problem:
                    member_errors[owner.pk] = f"Braze refused the attributes: {problem}"
        works = works_of(plan)
        # Ad-hoc attributes ride on the member's attributes object and share its fate.
        for work in works:
            for item in work.outbox:
                if item.kind == OutboxKind.ATTRIBUTES:
                    item.request_id = request.pk
                    if work.pk in member_errors:
                        item.status, item.last_error = OutboxStatus.FAILED, member_errors[work.pk]
                        failed_items.append(item)
                    else:
                        item.status, item.sent_at = OutboxStatus.SENT, now
                        sent_items.append(item)
        self._save_outbox(sent_items + failed_items)
        objects_per_member = Counter(owner.group_key for owners in plan.owners.values() for owner in owners)
        queue.request_members_write(
            request.pk, [(w.pk, objects_per_member[w.pk], member_errors.get(w.pk, "")) for w in works
                         if self.member_rows or w.pk in member_errors or w.outbox])
        report.data_points += request.data_points
        # A member whose mapped values could not be built stays failed even if its events went out.
        for w in works:
            w.error = member_errors.get(w.pk) or w.error
        failed = [w for w in works if w.error]
        self._finish(token, [w for w in works if not w.error], request, report)
        self._finish_failed(token, failed, request, report)

    def _retry_later(self, token, plan: payloads.RequestPlan, outcome: Outcome, *, report: DeliveryReport) -> int:
        works = works_of(plan)
        now = timezone.now()
        highest = 0
        items = [i for w in works for i in w.outbox]
        for item in items:
            item.attempts += 1
            if outcome.maybe_delivered and item.kind != OutboxKind.ATTRIBUTES:
                item.ambiguous_sends += 1
            item.last_error = f"Retrying: {outcome.message}"
        OutboxItem.objects.bulk_update(items, ["attempts", "ambiguous_sends", "last_error"])
        # The request may have reached Braze: its mapped values may be Braze's now, whatever last_sent_values
        # says, so the next send carries them whatever they are then (a value changed back, or emptied).
        carried = {w.pk: w.sent_values.keys() for w in works} if outcome.maybe_delivered else {}
        with transaction.atomic():
            states = list(MemberSyncState.objects.select_for_update().filter(claim_token=token, pk__in=[w.pk for w in works]))
            for state in states:
                if carried.get(state.pk) and state.maybe_sent is not True:
                    state.maybe_sent = sorted({*(state.maybe_sent or ()), *carried[state.pk]})
                state.attempts += 1
                highest = max(highest, state.attempts)
                too_old = state.dirty_since and now - state.dirty_since > DEAD_AFTER
                if state.attempts >= self.connection.max_attempts or too_old:
                    state.status = SyncStatus.DEAD
                    # Given up: a resync goes on without it (it is sent again when it changes, or retried by hand).
                    report.settled.add(state.pk)
                    report.members_failed += 1
                    monitoring.member_dead_lettered(member_id=state.pk, attempts=state.attempts, message=outcome.message)
                    state.next_attempt_at = None
                    OutboxItem.objects.filter(member_id=state.pk, status=OutboxStatus.PENDING).update(
                        status=OutboxStatus.DEAD, last_error=f"Gave up after {state.attempts} attempts: {outcome.message}")
                else:
                    state.next_attempt_at = now + timedelta(seconds=backoff_seconds(state.attempts))
                    report.members_retrying += 1
                state.last_error = f"{outcome.message} (attempt {state.attempts})"
                state.last_error_kind = outcome.kind
                state.claim_token, state.claimed_until = None, None
            MemberSyncState.objects.bulk_update(
                states, ["attempts", "status", "next_attempt_at", "last_error", "last_error_kind", "claim_token",
                         "claimed_until", "maybe_sent"])
        return highest

    def _finish_quiet(self, token, works: list[MemberWork], report: DeliveryReport) -> None:
        failed = [w for w in works if w.error]
        ok = [w for w in works if not w.error]
        sent_before = 0
        if ok and self.sent_after is not None:
            sent_before = MemberSyncState.objects.filter(
                pk__in=[w.pk for w in ok], last_request_id__gt=self.sent_after, last_request__trigger=self.trigger).count()
        report.members_sent += sent_before
        report.members_unchanged += len(ok) - sent_before
        self._finish(token, ok, None, report, count=False)
        self._finish_failed(token, failed, None, report)

    def _finish(self, token, works: list[MemberWork], request: SyncRequest | None, report: DeliveryReport, *,
                count: bool = True) -> None:
        """Braze has these members' values: synced, unless the member changed again meanwhile."""
        if not works:
            return
        report.settled.update(w.pk for w in works)
        done = queue.finish_synced(
            token, member_ids=[w.pk for w in works],
            sent_values={w.pk: w.last_sent_after_json() for w in works
                         if w.sent_values or not w.last_sent or w.cleared & w.last_sent.keys()},
            request_id=request.pk if request is not None else None, partial=self.partial)
        if count:
            report.members_sent += done
        unsendable = {w.pk: building.unsendable_note(w.unsendable) for w in works if w.unsendable}
        if unsendable:
            queue.unsendable_write(unsendable)
        self._keep_pending_with_outbox_left(works)

    def _finish_failed(self, token, works: list[MemberWork], request: SyncRequest | None, report: DeliveryReport) -> None:
        """Braze refused these members' data (or it cannot be sent): failed until the member changes."""
        if not works:
            return
        report.settled.update(w.pk for w in works)
        report.members_failed += len(works)
        queue.finish_failed(token, errors={w.pk: w.error for w in works},
                            request_id=request.pk if request is not None else None)
        self._keep_pending_with_outbox_left(works)

    @staticmethod
    def _keep_pending_with_outbox_left(works: list[MemberWork]) -> None:
        """A member with outbox items this round could not carry is not done: pending again, so the
        flush goes on until they are sent."""
        left = [w.pk for w in works if w.outbox_left]
        if left:
            queue.mark_pending(left)

    @staticmethod
    def _save_outbox(items: list[OutboxItem]) -> None:
        """Write the items' new state: one UPDATE per outcome and message rather than a row-by-row bulk_update."""
        groups: dict[tuple, list[int]] = {}
        for item in items:
            groups.setdefault((item.status, item.last_error, item.request_id, item.sent_at), []).append(item.pk)
        for (status, last_error, request_id, sent_at), pks in groups.items():
            OutboxItem.objects.filter(pk__in=pks).update(status=status, last_error=last_error, request_id=request_id,
                                                         sent_at=sent_at)


def _object_json(owner) -> str | None:
    """The JSON of a member's attributes object, from its values' JSON when ``build`` wrote it."""
    if isinstance(owner, MemberWork) and owner.values_json is not None:
        return payloads.attributes_object_json(owner.external_id, owner.values_json)
    return None


def _fails_again(plan: payloads.RequestPlan, outcome: Outcome) -> bool:
    """A 5xx (Braze answered: the request was not lost on the way) for a request carrying a member
    that failed before, ``SPLIT_AFTER_SERVER_ERRORS`` times in all."""
    if outcome.action != Action.RETRY or outcome.kind != errors.BrazeServerError.kind or outcome.maybe_delivered:
        return False
    return any(work.attempts >= SPLIT_AFTER_SERVER_ERRORS - 1 for work in works_of(plan))


def _members_of(plan: payloads.RequestPlan) -> set[int]:
    return {w.pk for w in works_of(plan)}

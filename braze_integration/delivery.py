"""Sending claimed members to Braze and recording what happened: the one place that decides
retry, wait, pause, split or dead-letter.

A *claim* is a set of ``MemberSyncState`` rows stamped with a token and a lease. For each claimed
member the mapped values are built from the database as it is now and compared with what Braze
last accepted; its pending ``OutboxItem`` rows (events, purchases, ad-hoc attributes) join it.
Members are packed into requests (a member's objects share a request), each request is recorded
as a ``SyncRequest`` before it leaves (so a worker killed mid-request leaves a trace), and the
answer decides every member's and item's fate.
"""

from __future__ import annotations

import functools
import logging
import random
import uuid
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from loyaltysync.models import Member

from . import errors, payloads, ratelimit
from .client import BrazeClient, TrackResult
from .fields import FieldContext, LoyaltyField, loyalty_fields
from .models import (
    Connection,
    ConnectionStatus,
    MemberSyncState,
    OutboxItem,
    OutboxKind,
    OutboxStatus,
    RequestOutcome,
    SendMode,
    SyncRequest,
    SyncRequestMember,
    SyncStatus,
)

logger = logging.getLogger(__name__)

BACKOFF_BASE = 2.0
BACKOFF_CAP = 600.0
DEAD_AFTER = timedelta(hours=24)
MAX_OUTBOX_PER_MEMBER = 40  # the rest waits for the next round; keeps one member within one request


def backoff_seconds(attempts: int, *, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: about 2 s, 4 s, 8 s ... capped at 10 minutes."""
    rng = rng or random
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1)) * rng.uniform(0.5, 1.0)


class SyncStopped(Exception):
    """Sending must stop for now (rate limited, credentials, or Braze unreachable)."""

    def __init__(self, reason: str, *, wait: float = 0.0):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


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

    def merge(self, other: DeliveryReport) -> None:
        for name in ("members_sent", "members_unchanged", "members_failed", "members_retrying", "events_sent",
                     "requests", "data_points"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for kind, count in other.errors_by_kind.items():
            self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + count

    def count_error(self, kind: str) -> None:
        self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1


@dataclass
class MemberWork:
    """One claimed member: what will be sent for it and what to record afterwards."""

    pk: int
    external_id: str
    version: int
    attempts: int
    last_sent: dict[str, Any]
    values: dict[str, Any] | None = None  # converted mapped values (all of them)
    sent_values: dict[str, Any] = field(default_factory=dict)  # the mapped values in this request
    outbox: list[OutboxItem] = field(default_factory=list)
    error: str = ""

    @property
    def group_key(self) -> int:
        return self.pk


@dataclass(frozen=True)
class OutboxOwner:
    item: OutboxItem
    member: MemberWork

    @property
    def group_key(self) -> int:
        return self.member.pk


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


@functools.cache
def _sender() -> ThreadPoolExecutor:
    """One thread per process that puts requests on the wire (the session is used by it alone)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="braze-send")


# --- claiming ------------------------------------------------------------------------------------

def _claimable(now) -> Q:
    return (
        Q(status=SyncStatus.PENDING)
        & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        & (Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
    )


def claim_lease() -> timedelta:
    return timedelta(seconds=settings.BRAZE_CLAIM_LEASE_SECONDS)


def claim(*, limit: int, member_ids: Iterable[int] | None = None, include_synced: bool = False) -> tuple[uuid.UUID, list[int]]:
    """Stamp up to ``limit`` due members with a fresh token; at most one claim holds a member."""
    token = uuid.uuid4()
    now = timezone.now()
    with transaction.atomic():
        if include_synced:
            free = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
        else:
            free = _claimable(now)
        qs = MemberSyncState.objects.filter(free)
        if member_ids is not None:
            qs = qs.filter(pk__in=list(member_ids))
        else:
            qs = qs.order_by("dirty_since")
        rows = list(qs.select_for_update(skip_locked=True).values_list("pk", "claim_token")[:limit])
        ids = [pk for pk, _ in rows]
        # A token still on a free row belongs to a worker that stopped while holding it.
        _recover_lost({old for _, old in rows if old is not None})
        if ids:
            MemberSyncState.objects.filter(pk__in=ids).update(
                claim_token=token, claimed_until=now + claim_lease(), claimed_version=F("version"))
    return token, ids


def claimable_exists() -> bool:
    return MemberSyncState.objects.filter(_claimable(timezone.now())).exists()


def next_due_in() -> float | None:
    """Seconds until the soonest pending member becomes claimable (a retry comes due, or the lease of
    a worker that stopped runs out), if any."""
    now = timezone.now()
    pending = MemberSyncState.objects.filter(status=SyncStatus.PENDING)
    candidates = [
        pending.filter(next_attempt_at__gt=now).order_by("next_attempt_at").values_list("next_attempt_at", flat=True).first(),
        pending.filter(claimed_until__gt=now).order_by("claimed_until").values_list("claimed_until", flat=True).first(),
    ]
    soonest = min((c for c in candidates if c is not None), default=None)
    if soonest is None:
        return None
    return max(0.0, (soonest - now).total_seconds())


def release(token: uuid.UUID, member_ids: Iterable[int] | None = None) -> None:
    """Give members back without counting an attempt (rate limit, paused connection)."""
    qs = MemberSyncState.objects.filter(claim_token=token)
    if member_ids is not None:
        qs = qs.filter(pk__in=list(member_ids))
    qs.update(claim_token=None, claimed_until=None)


def _recover_lost(tokens: set[uuid.UUID]) -> int:
    """Requests still "sending" under a claim that expired: their worker died. Braze may have
    processed them, so their events count as ambiguous sends (possible duplicates)."""
    if not tokens:
        return 0
    lost = list(SyncRequest.objects.filter(outcome=RequestOutcome.SENDING, claim_token__in=tokens)
                .values_list("pk", "errors"))
    for pk, outbox_ids in lost:
        ids = [i for i in outbox_ids if isinstance(i, int)] if isinstance(outbox_ids, list) else []
        OutboxItem.objects.filter(pk__in=ids).update(ambiguous_sends=F("ambiguous_sends") + 1)
        SyncRequest.objects.filter(pk=pk).update(
            outcome=RequestOutcome.LOST, maybe_delivered=True, errors=[],
            message="The worker stopped before Braze answered; the members were sent again.")
    return len(lost)


def abandon(token: uuid.UUID) -> None:
    """Give up a claim after an unexpected error: its unanswered requests count as lost, its members are free."""
    try:
        with transaction.atomic():
            _recover_lost({token})
            release(token)
    except Exception:  # the database itself may be what failed; then the lease frees the members
        logger.exception("Could not release the claim after an error; the members are free again after the lease.")


def recover_lost_requests(*, older_than: timedelta | None = None) -> int:
    """Housekeeping: requests "sending" for longer than a lease whose members were never claimed again."""
    cutoff = timezone.now() - (older_than or claim_lease())
    tokens = set(SyncRequest.objects.filter(outcome=RequestOutcome.SENDING, created_at__lt=cutoff)
                 .exclude(claim_token=None).values_list("claim_token", flat=True))
    live = set(MemberSyncState.objects.filter(claim_token__in=tokens, claimed_until__gte=timezone.now())
               .values_list("claim_token", flat=True))
    return _recover_lost(tokens - live)


# --- building -------------------------------------------------------------------------------------

@dataclass
class MappingPlan:
    specs: list[tuple[LoyaltyField, payloads.AttributeSpec]]
    columns: list[str]
    context: FieldContext

    @classmethod
    def load(cls, connection: Connection, *, only: set[str] | None = None) -> MappingPlan:
        fields = loyalty_fields()
        specs = []
        for mapping in connection.mappings.all():
            loyalty_field = fields.get(mapping.loyalty_field)
            if loyalty_field is None or (only is not None and mapping.remote_field not in only
                                         and mapping.loyalty_field not in only):
                continue
            specs.append((loyalty_field, payloads.AttributeSpec(mapping.remote_field, loyalty_field.braze_type)))
        columns = sorted({c for f, _ in specs for c in f.columns} | {"id", "member_id"})
        return cls(specs=specs, columns=columns, context=FieldContext.load())

    def values(self, row: dict[str, Any]) -> dict[str, Any]:
        """The converted value of every mapped field; raises ``PayloadError`` naming the first bad one."""
        out = {}
        for loyalty_field, spec in self.specs:
            raw = loyalty_field.extract(row, self.context)
            out[spec.remote_field] = payloads.convert_value(spec.braze_type, raw, where=spec.remote_field)
        return out


def outbox_object(item: OutboxItem, external_id: str, app_id: str) -> tuple[str, dict]:
    data = item.payload
    if item.kind == OutboxKind.EVENT:
        return "events", payloads.event_object(external_id, name=data["name"], time=data["time"],
                                               properties=data.get("properties"), app_id=app_id)
    if item.kind == OutboxKind.PURCHASE:
        return "purchases", payloads.purchase_object(
            external_id, product_id=data["product_id"], currency=data["currency"], price=data["price"],
            quantity=data.get("quantity", 1), time=data["time"], properties=data.get("properties"), app_id=app_id)
    raise ValueError(item.kind)


def build(connection: Connection, token: uuid.UUID, plan: MappingPlan, *, force: bool = False
          ) -> tuple[list[MemberWork], list[payloads.UserObjects]]:
    """Build every claimed member's objects. ``force`` sends mapped values even if Braze has them."""
    states = {
        pk: (version, attempts, last_sent)
        for pk, version, attempts, last_sent in MemberSyncState.objects.filter(claim_token=token)
        .values_list("pk", "version", "attempts", "last_sent_values")
    }
    rows = Member.objects.filter(pk__in=list(states)).values(*plan.columns)
    outbox: dict[int, list[OutboxItem]] = {}
    for item in OutboxItem.objects.filter(member_id__in=list(states), status=OutboxStatus.PENDING).order_by("id"):
        bucket = outbox.setdefault(item.member_id, [])
        if len(bucket) < MAX_OUTBOX_PER_MEMBER:
            bucket.append(item)
    works, users = [], []
    send_all = connection.send_mode == SendMode.ALL_MAPPED_FIELDS
    for row in rows.iterator(chunk_size=2000):
        version, attempts, last_sent = states[row["id"]]
        work = MemberWork(pk=row["id"], external_id=row["member_id"], version=version, attempts=attempts,
                          last_sent=last_sent or {}, outbox=outbox.get(row["id"], []))
        works.append(work)
        objects: list[tuple[str, dict, Any]] = []
        try:
            payloads.check_external_id(work.external_id)
            work.values = plan.values(row)
        except payloads.PayloadError as err:
            work.error = f"Cannot send {err.field}: {err.problem}"
            work.values = None
        attributes: dict[str, Any] = {}
        if work.values is not None:
            changed = {k: v for k, v in work.values.items() if k not in work.last_sent or work.last_sent[k] != v}
            if changed or force:
                attributes = dict(work.values) if (send_all or force) else changed
                work.sent_values = dict(attributes)
        merge_objects = False
        for item in work.outbox:
            if item.kind == OutboxKind.ATTRIBUTES:
                attributes.update(item.payload.get("attributes", {}))
                merge_objects = merge_objects or bool(item.payload.get("merge_objects"))
        if attributes and not work.error.startswith("Cannot send external_id"):
            objects.append(("attributes", payloads.attributes_object(work.external_id, attributes,
                                                                     merge_objects=merge_objects), work))
        for item in work.outbox:
            if item.kind == OutboxKind.ATTRIBUTES:
                continue
            try:
                array, obj = outbox_object(item, work.external_id, connection.app_id)
            except (payloads.PayloadError, KeyError, ValueError, TypeError) as err:
                item.last_error = f"Cannot send: {err}"
                item.status = OutboxStatus.FAILED
                continue
            objects.append((array, obj, OutboxOwner(item, work)))
        users.append(payloads.UserObjects(key=work.pk, objects=objects))
    return works, users


# --- sending --------------------------------------------------------------------------------------

class Deliverer:
    """Sends the claimed members of one batch and writes back every outcome."""

    def __init__(self, connection: Connection, client: BrazeClient, *, trigger: str = "sync", partial: bool = False):
        self.connection = connection
        self.client = client
        self.trigger = trigger
        # A partial send (some mapped fields only) must not mark a member with other changes as synced.
        self.partial = partial

    def deliver(self, token: uuid.UUID, *, plan: MappingPlan | None = None, force: bool = False) -> DeliveryReport:
        report = DeliveryReport()
        plan = plan or MappingPlan.load(self.connection)
        works, users = build(self.connection, token, plan, force=force)
        by_pk = {w.pk: w for w in works}
        # Outbox items that failed to build never leave; record them now.
        self._save_outbox([i for w in works for i in w.outbox if i.status == OutboxStatus.FAILED])
        sending = [u for u in users if u.objects]
        # Members with nothing to send: either unchanged, or their values cannot be sent.
        quiet = [by_pk[u.key] for u in users if not u.objects]
        self._finish_quiet(token, quiet, report)
        requests = payloads.plan_requests(
            sending, max_objects=self.connection.batch_size,
            per_array_limit=self.connection.batch_size if self.connection.per_array_limit else None)
        self._send_all(token, requests, report)
        return report

    def _send_all(self, token: uuid.UUID, requests: list[payloads.RequestPlan], report: DeliveryReport) -> None:
        """Send the requests in order, the next one on the wire while this thread records the last
        answer (one request in flight besides the one being recorded)."""
        in_flight: tuple[_Prepared, Future] | None = None
        try:
            for index, plan in enumerate(requests):
                try:
                    prepared = self._prepare(token, plan, report)
                except SyncStopped:
                    self._release_from(token, requests, index)
                    raise
                future = _sender().submit(_post, self.client, prepared.data)
                if in_flight is not None:
                    previous, in_flight = in_flight, None
                    try:
                        self._complete(token, previous[0], previous[1].result(), report)
                    except SyncStopped:
                        # The request already on the wire still gets its answer recorded.
                        self._complete(token, prepared, future.result(), report, stopping=True)
                        self._release_from(token, requests, index + 1)
                        raise
                in_flight = (prepared, future)
        finally:
            if in_flight is not None:
                self._complete(token, in_flight[0], in_flight[1].result(), report)

    @staticmethod
    def _release_from(token: uuid.UUID, requests: list[payloads.RequestPlan], start: int) -> None:
        release(token, {owner.group_key for p in requests[start:] for owners in p.owners.values() for owner in owners})

    def _prepare(self, token: uuid.UUID, plan: payloads.RequestPlan, report: DeliveryReport) -> _Prepared:
        data = payloads.encode(plan.body())
        outbox_ids = [o.item.pk for owners in plan.owners.values() for o in owners if isinstance(o, OutboxOwner)]
        try:
            ratelimit.acquire(self.connection)
        except TimeoutError:
            raise SyncStopped("rate limit budget exhausted", wait=1.0) from None
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

    def _send(self, token: uuid.UUID, plan: payloads.RequestPlan, report: DeliveryReport) -> None:
        prepared = self._prepare(token, plan, report)
        self._complete(token, prepared, _post(self.client, prepared.data), report)

    def _complete(self, token: uuid.UUID, prepared: _Prepared, answer: TrackResult | errors.BrazeError,
                  report: DeliveryReport, *, stopping: bool = False) -> None:
        plan, request = prepared.plan, prepared.request
        if isinstance(answer, errors.BrazeRequestRejected) and not (answer.errors and answer.status == 400):
            # Refused as a whole without saying which object: halve it to isolate the bad ones.
            self._log(request, answer, RequestOutcome.REJECTED)
            report.count_error(answer.kind)
            halves = payloads.split_plan(plan)
            if halves is None:
                with transaction.atomic():
                    self._fail(token, request, plan, f"Braze refused the request ({answer.status}): {answer.message}",
                               report, answer)
                return
            for half in halves:
                self._send(token, half, report)
            return
        # Recording the answer is one transaction: a worker killed half-way leaves the request
        # "sending", which the next claim of these members reads as lost (and counts).
        with transaction.atomic():
            stop = self._record(token, request, plan, answer, report)
        if stop is not None and not stopping:
            raise stop

    def _record(self, token: uuid.UUID, request: SyncRequest, plan: payloads.RequestPlan,
                answer: TrackResult | errors.BrazeError, report: DeliveryReport) -> SyncStopped | None:
        """Apply Braze's answer to every member and item of the request; returns a stop when sending must pause."""
        members = _members_of(plan)
        if isinstance(answer, TrackResult):
            self._log(request, answer, RequestOutcome.PARTIAL if answer.errors else RequestOutcome.SUCCESS)
            self._apply_success(token, request, plan, answer.errors, report, message=answer.message)
            return None
        err = answer
        report.count_error(err.kind)
        if isinstance(err, errors.BrazeRequestRejected):  # 400 naming every object: all of them are invalid
            self._log(request, err, RequestOutcome.REJECTED)
            self._apply_success(token, request, plan, err.errors, report, all_failed=True, message=err.message)
            return None
        if isinstance(err, errors.BrazeRateLimited):
            self._log(request, err, RequestOutcome.RATE_LIMITED)
            self._pause(err.retry_after, f"Rate limited by Braze: {err.message}")
            release(token, members)
            return SyncStopped("rate limited", wait=err.retry_after)
        if isinstance(err, errors.BrazeAuthError):
            self._log(request, err, RequestOutcome.AUTH_ERROR)
            Connection.objects.filter(pk=self.connection.pk).update(
                status=ConnectionStatus.NEEDS_ATTENTION, last_message=_auth_message(err), last_checked_at=timezone.now())
            release(token, members)
            return SyncStopped("connection needs attention")
        if isinstance(err, errors.BrazeServerError | errors.BrazeTransportError):
            maybe = isinstance(err, errors.BrazeTransportError) and err.maybe_delivered
            self._log(request, err, RequestOutcome.SERVER_ERROR if isinstance(err, errors.BrazeServerError)
                      else RequestOutcome.TRANSPORT, maybe_delivered=maybe)
            attempts = self._retry_later(token, plan, err, maybe_delivered=maybe, report=report)
            self._pause(backoff_seconds(attempts), f"Braze did not answer properly: {err.message}")
            return SyncStopped("Braze unavailable", wait=1.0)
        self._log(request, err, RequestOutcome.CLIENT_ERROR)
        self._fail(token, request, plan, f"Braze refused the request ({err.status}): {err.message}", report, err)
        return None

    # --- outcomes ---------------------------------------------------------------------------------

    def _log(self, request: SyncRequest, answer: TrackResult | errors.BrazeError, outcome: str, *,
             maybe_delivered: bool = False) -> None:
        if isinstance(answer, TrackResult):
            status, message, errs, duration = answer.status, answer.message, answer.errors, answer.duration_ms
        else:
            status, message, duration = answer.status, answer.message, answer.duration_ms
            errs = getattr(answer, "errors", None) or []
        request.outcome, request.http_status, request.message = outcome, status, message[:2000]
        request.errors, request.duration_ms, request.maybe_delivered = errs[:200], duration, maybe_delivered
        request.save()

    def _pause(self, seconds: float, message: str) -> None:
        until = timezone.now() + timedelta(seconds=max(0.0, seconds))
        Connection.objects.filter(pk=self.connection.pk).filter(
            Q(paused_until__isnull=True) | Q(paused_until__lt=until)).update(paused_until=until, last_message=message[:2000])

    def _apply_success(self, token, request, plan: payloads.RequestPlan, errs: list[dict], report: DeliveryReport, *,
                       all_failed: bool = False, message: str = "") -> None:
        refused: dict[tuple[str, int], str] = {}
        for err in errs or []:
            if isinstance(err, dict) and isinstance(err.get("index"), int):
                refused[(str(err.get("input_array")), err["index"])] = str(err.get("type") or message or "refused")
        member_errors: dict[int, str] = {}
        sent_items, failed_items = [], []
        now = timezone.now()
        for array in ("attributes", "events", "purchases"):
            for index, owner in enumerate(plan.owners[array]):
                problem = refused.get((array, index)) or (message or "refused" if all_failed else None)
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
        works = _works_of(plan)
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
        # One multi-row INSERT: Django's bulk_create spends more time preparing these rows than the
        # database inserting them, and executemany is a round trip per row on PostgreSQL.
        params = [value for w in works
                  for value in (request.pk, w.pk, objects_per_member[w.pk], member_errors.get(w.pk, ""))]
        with db_connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {db_connection.ops.quote_name(SyncRequestMember._meta.db_table)} "
                "(request_id, member_id, object_count, error) VALUES " + ", ".join(["(%s, %s, %s, %s)"] * len(works)),
                params)
        report.data_points += request.data_points
        # A member whose mapped values could not be built stays failed even if its events went out.
        for w in works:
            w.error = member_errors.get(w.pk) or w.error
        failed = [w for w in works if w.error]
        self._finish(token, [w for w in works if not w.error], request, report)
        self._finish_failed(token, failed, request, report)

    def _fail(self, token, request, plan, message: str, report: DeliveryReport, err: errors.BrazeError) -> None:
        self._apply_success(token, request, plan, [], report, all_failed=True, message=message)

    def _retry_later(self, token, plan: payloads.RequestPlan, err: errors.BrazeError, *, maybe_delivered: bool,
                     report: DeliveryReport) -> int:
        works = _works_of(plan)
        now = timezone.now()
        highest = 0
        items = [i for w in works for i in w.outbox]
        for item in items:
            item.attempts += 1
            if maybe_delivered and item.kind != OutboxKind.ATTRIBUTES:
                item.ambiguous_sends += 1
            item.last_error = f"Retrying: {err.message}"
        OutboxItem.objects.bulk_update(items, ["attempts", "ambiguous_sends", "last_error"])
        with transaction.atomic():
            states = list(MemberSyncState.objects.select_for_update().filter(claim_token=token, pk__in=[w.pk for w in works]))
            for state in states:
                state.attempts += 1
                highest = max(highest, state.attempts)
                too_old = state.dirty_since and now - state.dirty_since > DEAD_AFTER
                if state.attempts >= self.connection.max_attempts or too_old:
                    state.status = SyncStatus.DEAD
                    state.next_attempt_at = None
                    OutboxItem.objects.filter(member_id=state.pk, status=OutboxStatus.PENDING).update(
                        status=OutboxStatus.DEAD, last_error=f"Gave up after {state.attempts} attempts: {err.message}")
                else:
                    state.next_attempt_at = now + timedelta(seconds=backoff_seconds(state.attempts))
                    report.members_retrying += 1
                state.last_error = f"{err.message} (attempt {state.attempts})"
                state.last_error_kind = err.kind
                state.claim_token, state.claimed_until = None, None
            MemberSyncState.objects.bulk_update(
                states, ["attempts", "status", "next_attempt_at", "last_error", "last_error_kind", "claim_token",
                         "claimed_until"])
        return highest

    def _finish_quiet(self, token, works: list[MemberWork], report: DeliveryReport) -> None:
        failed = [w for w in works if w.error]
        ok = [w for w in works if not w.error]
        report.members_unchanged += len(ok)
        self._finish(token, ok, None, report, count=False)
        self._finish_failed(token, failed, None, report)

    def _finish(self, token, works: list[MemberWork], request: SyncRequest | None, report: DeliveryReport, *,
                count: bool = True) -> None:
        """Braze has these members' values: synced, unless the member changed again meanwhile.

        One UPDATE for what all members share (the status compares ``version`` with the claimed
        version in SQL) and one ``UPDATE ... FROM (VALUES ...)`` for the values each member sent:
        per-row ``bulk_update`` CASE expressions were the slowest part of a resync, and
        ``executemany`` is a round trip per row on PostgreSQL."""
        if not works:
            return
        table = MemberSyncState._meta.db_table
        values_field = MemberSyncState._meta.get_field("last_sent_values")
        rows = [(values_field.get_db_prep_save({**w.last_sent, **w.sent_values}, db_connection), w.pk)
                for w in works if w.sent_values or not w.last_sent]
        updates: dict[str, Any] = {"attempts": 0, "next_attempt_at": None, "last_error": "", "last_error_kind": "",
                                   "claim_token": None, "claimed_until": None}
        if request is not None:
            updates.update(last_synced_at=timezone.now(), last_request_id=request.pk)
        if not self.partial:
            same = Q(version=F("claimed_version"))
            updates.update(synced_version=F("claimed_version"),
                           status=Case(When(same, then=Value(SyncStatus.SYNCED)), default=Value(SyncStatus.PENDING)),
                           dirty_since=Case(When(same, then=Value(None)), default=F("dirty_since")))
        with transaction.atomic():
            if rows:
                q = db_connection.ops.quote_name
                token_param = MemberSyncState._meta.get_field("claim_token").get_db_prep_value(token, db_connection)
                if db_connection.vendor == "postgresql":
                    values = ", ".join(["(%s::bigint, %s::jsonb)"] * len(rows))
                    source = f"(VALUES {values}) AS sent(id, value)"
                    sent_id, sent_value = "sent.id", "sent.value"
                else:  # SQLite names the columns of a VALUES list column1, column2, ...
                    source = f"(VALUES {', '.join(['(%s, %s)'] * len(rows))}) AS sent"
                    sent_id, sent_value = "sent.column1", "sent.column2"
                with db_connection.cursor() as cursor:
                    cursor.execute(
                        f"UPDATE {q(table)} SET last_sent_values = {sent_value} FROM {source} "
                        f"WHERE {q(table)}.member_id = {sent_id} AND {q(table)}.claim_token = %s",
                        [p for value, pk in rows for p in (pk, value)] + [token_param])
            done = MemberSyncState.objects.filter(claim_token=token, pk__in=[w.pk for w in works]).update(**updates)
        if count:
            report.members_sent += done

    def _finish_failed(self, token, works: list[MemberWork], request: SyncRequest | None, report: DeliveryReport) -> None:
        """Braze refused these members' data (or it cannot be sent): failed until the member changes."""
        if not works:
            return
        report.members_failed += len(works)
        by_error: dict[str, list[int]] = {}
        for work in works:
            by_error.setdefault(work.error[:2000], []).append(work.pk)
        same = Q(version=F("claimed_version"))
        with transaction.atomic():
            for error, pks in by_error.items():
                updates: dict[str, Any] = {
                    "status": Case(When(same, then=Value(SyncStatus.FAILED)), default=Value(SyncStatus.PENDING)),
                    "last_error": error, "last_error_kind": "invalid_data", "attempts": 0, "next_attempt_at": None,
                    "claim_token": None, "claimed_until": None}
                if request is not None:
                    updates["last_request_id"] = request.pk
                MemberSyncState.objects.filter(claim_token=token, pk__in=pks).update(**updates)

    @staticmethod
    def _save_outbox(items: list[OutboxItem]) -> None:
        """Write the items' new state: one UPDATE per outcome and message rather than a row-by-row bulk_update."""
        groups: dict[tuple, list[int]] = {}
        for item in items:
            groups.setdefault((item.status, item.last_error, item.request_id, item.sent_at), []).append(item.pk)
        for (status, last_error, request_id, sent_at), pks in groups.items():
            OutboxItem.objects.filter(pk__in=pks).update(status=status, last_error=last_error, request_id=request_id,
                                                         sent_at=sent_at)


def _works_of(plan: payloads.RequestPlan) -> list[MemberWork]:
    seen: dict[int, MemberWork] = {}
    for owners in plan.owners.values():
        for owner in owners:
            work = owner.member if isinstance(owner, OutboxOwner) else owner
            seen.setdefault(work.pk, work)
    return list(seen.values())


def _members_of(plan: payloads.RequestPlan) -> set[int]:
    return {w.pk for w in _works_of(plan)}


def data_points_of(obj: dict[str, Any]) -> int:
    """Braze's billing unit: each attribute written, each key of a nested object; country/language are free."""
    points = 0
    for key, value in obj.items():
        if key in payloads.RESERVED_ATTRIBUTE_KEYS or key in ("country", "language"):
            continue
        if isinstance(value, dict) and not any(k.startswith("$") for k in value) and value:
            points += _leaf_count(value)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            points += sum(_leaf_count(v) or 1 for v in value)
        else:
            points += 1
    return points


def _leaf_count(value: dict) -> int:
    return sum(_leaf_count(v) if isinstance(v, dict) and v and "$time" not in v else 1 for v in value.values())


def _auth_message(err: errors.BrazeError) -> str:
    hint = {
        401: "Braze does not accept this API key (invalid key, another workspace's key, or the wrong instance URL).",
        403: "The API key lacks the users.track permission, or the account is inactive.",
        404: "The instance URL does not answer /users/track; check the REST endpoint.",
    }.get(err.status or 0, "Braze refused the credentials.")
    return f"{hint} Braze said: {err.message} (HTTP {err.status}). Sending is paused; fix it and press Connect."


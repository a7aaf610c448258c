"""Full or partial resync: push the whole program (or a selection) to Braze.

Members are walked in primary-key order in chunks (keyset pagination: memory stays flat however
many members there are). Each chunk is claimed like the worker claims pending members, so a
resync and the workers never send one member at the same time, and goes through the same
``Deliverer``: the same batching, rate limiter, retry rules and request log.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Max, QuerySet
from django.utils import timezone

from loyaltysync.models import Member, Tier

from . import building, delivery, errors, interrupts, payloads, queue, services
from .models import (
    Connection,
    ConnectionStatus,
    MemberSyncState,
    RemoteKind,
    ResyncRun,
    ResyncStatus,
    SendMode,
    SyncRequest,
)
from .standard_fields import SUBSCRIPTION_GROUPS

logger = logging.getLogger(__name__)

# How much longer than a claim lease a resync waits for members other processes hold.
CLAIM_WAIT_MARGIN = 10.0


class ResyncError(Exception):
    """The resync cannot start or go on; the message says why and what to do."""


@dataclass
class Selection:
    all: bool = False
    member_ids: list[str] = field(default_factory=list)
    since: datetime | None = None
    tier: str | None = None
    fields: list[str] = field(default_factory=list)
    clear: list[str] = field(default_factory=list)  # attributes to remove from Braze (no longer mapped)

    @property
    def clear_alone(self) -> bool:
        """``clear`` with no other selection: the members Braze was last sent any of those attributes."""
        return bool(self.clear) and not (self.all or self.member_ids or self.since or self.tier)

    def queryset(self) -> QuerySet[Member]:
        """The selected members in primary-key order. ``clear`` alone selects the members Braze was last
        sent any of those attributes; with another selection it narrows nothing."""
        if not (self.all or self.member_ids or self.since or self.tier or self.clear):
            raise ResyncError("Choose what to resync: --all, --member ID, --since DATE or --tier NAME.")
        qs = Member.objects.all()
        if self.clear_alone:
            qs = qs.filter(braze_sync__last_sent_values__has_any_keys=self.clear)
        if self.member_ids:
            qs = qs.filter(member_id__in=self.member_ids)
        if self.since:
            qs = qs.filter(updated_at__gte=self.since)
        if self.tier:
            qs = qs.filter(tier__name=self.tier)
        return qs.order_by("pk")

    def check_exists(self) -> None:
        """Refuse a selection that contradicts itself, or names a tier or members that do not exist (a typo
        would resync nothing)."""
        if self.all and (self.member_ids or self.since or self.tier):
            given = [name for name, value in (("--member", self.member_ids), ("--since", self.since),
                                              ("--tier", self.tier)) if value]
            raise ResyncError(f"--all selects every member and cannot be narrowed by {' or '.join(given)}; "
                              "leave out --all to resync only those.")
        if self.tier and not Tier.objects.filter(name=self.tier).exists():
            known = ", ".join(Tier.objects.order_by("points_threshold").values_list("name", flat=True)) or "none"
            raise ResyncError(f"--tier: there is no tier named {self.tier!r} (tiers: {known}).")
        if self.member_ids:
            found = set(Member.objects.filter(member_id__in=self.member_ids).values_list("member_id", flat=True))
            unknown = [member_id for member_id in self.member_ids if member_id not in found]
            if unknown:
                raise ResyncError(f"--member: no member with id {', '.join(repr(m) for m in unknown[:20])}.")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["since"] = self.since.isoformat() if self.since else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Selection:
        data = dict(data)
        data["since"] = datetime.fromisoformat(data["since"]) if data.get("since") else None
        return cls(**data)


@dataclass
class DryRunReport:
    members: int
    would_send: int
    unchanged: int
    unsendable: int
    requests: int
    data_points: int
    sample: dict[str, Any] | None
    errors: list[str]
    member_ids: list[str] = field(default_factory=list)  # the first members that would be sent


MEMBER_IDS_SHOWN = 20


def _mapping_plan(connection: Connection, selection: Selection) -> building.MappingPlan:
    only = set(selection.fields) if selection.fields else None
    if selection.clear and not only:
        plan = building.MappingPlan.clearing(frozenset())
    else:
        plan = building.MappingPlan.load(connection, only=only)
    if only:
        known = ({spec.remote_field for _, spec in plan.specs} | {f.key for f, _ in [*plan.specs, *plan.groups]}
                 | {group_id for _, group_id in plan.groups} | ({SUBSCRIPTION_GROUPS} if plan.groups else set()))
        unknown = sorted(only - known)
        if unknown:
            raise ResyncError(f"--fields: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not mapped "
                              "(give Braze attribute names or loyalty field keys of existing mappings).")
    if selection.clear:
        _clear_check(connection, selection.clear)
        plan.clear = frozenset(selection.clear)
    if plan.empty:
        raise ResyncError("The connection has no field mappings to send.")
    return plan


def _clear_check(connection: Connection, names: list[str]) -> None:
    """Refuse to remove what a mapping still sends (the next change would send it again) and what Braze
    cannot remove with null."""
    if SUBSCRIPTION_GROUPS in names:
        raise ResyncError(f"--clear: {SUBSCRIPTION_GROUPS} cannot be removed; a member's state in a group is set "
                          "by its consent (unsubscribed), not removed.")
    mapped = {m.remote_field: m.loyalty_field for m in connection.mappings.filter(remote_kind=RemoteKind.ATTRIBUTE)}
    still = [f"{name} (mapped from {mapped[name]})" for name in names if name in mapped]
    if still:
        raise ResyncError(f"--clear: {', '.join(still)} {'is' if len(still) == 1 else 'are'} still mapped; remove "
                          "the mapping first, or the next change would send it again.")
    for name in names:
        if problem := payloads.remote_name_problem(name):
            raise ResyncError(f"--clear: the attribute name {name!r} {problem}.")


def _require_connection() -> Connection:
    connection = services.connection_active()
    if connection is None:
        raise ResyncError("There is no active Braze connection.")
    return connection


def resync_dry_run(*, selection: Selection, force: bool = False, batch_size: int | None = None) -> DryRunReport:
    """What a resync would send, without sending or changing anything."""
    connection = _require_connection()
    selection.check_exists()
    plan = _mapping_plan(connection, selection)
    batch_size = batch_size or connection.batch_size
    ids = selection.queryset().values_list("pk", flat=True)
    report = DryRunReport(0, 0, 0, 0, 0, 0, None, [])
    pending_objects = 0
    chunk: list[int] = []

    def flush(chunk_ids: list[int]) -> None:
        nonlocal pending_objects
        states = {pk: (last_sent, maybe_sent) for pk, last_sent, maybe_sent in MemberSyncState.objects.filter(
            pk__in=chunk_ids).values_list("pk", "last_sent_values", "maybe_sent")}
        for row in Member.objects.filter(pk__in=chunk_ids).values(*plan.columns):
            report.members += 1
            before, maybe_sent = states.get(row["id"], (None, None))
            before = before or {}
            values, unsendable = plan.sendable_values(row, before, maybe_sent)
            if unsendable:  # the member's other attributes are still sent
                report.unsendable += 1
                if len(report.errors) < 20:
                    report.errors.append(f"{row['member_id']}: {'; '.join(unsendable.values())}")
            sent = building.attributes_to_send(values, before, force=force,
                                               send_all=connection.send_mode == SendMode.ALL_MAPPED_FIELDS,
                                               maybe_sent=building.maybe_sent_names(maybe_sent, values))
            if not sent:
                report.unchanged += 1
                continue
            report.would_send += 1
            if len(report.member_ids) < MEMBER_IDS_SHOWN:
                report.member_ids.append(row["member_id"])
            report.data_points += building.data_points_of(sent)
            pending_objects += 1
            if report.sample is None:
                report.sample = {"attributes": [payloads.attributes_object(row["member_id"], sent)]}

    for pk in ids.iterator(chunk_size=2000):
        chunk.append(pk)
        if len(chunk) >= 2000:
            flush(chunk)
            chunk = []
    if chunk:
        flush(chunk)
    report.requests = -(-pending_objects // batch_size)
    return report


ProgressCallback = Callable[[int, ResyncRun], None]


def resync_start(*, selection: Selection, force: bool = False, batch_size: int | None = None) -> ResyncRun:
    connection = _require_connection()
    selection.check_exists()
    _mapping_plan(connection, selection)  # refuse unknown --fields before anything starts
    options = {"selection": selection.to_json(), "force": force, "batch_size": batch_size or connection.batch_size}
    # What the run sends has a request after this one: after an interruption, its members count as sent
    # (``Deliverer.sent_after``), and a forced run does not force them again (``building.build``).
    options["requests_after"] = SyncRequest.objects.aggregate(last=Max("pk"))["last"] or 0
    if force:
        options["forced_after"] = options["requests_after"]
    return ResyncRun.objects.create(options=options, total=selection.queryset().count())


def resync_last_interrupted() -> ResyncRun | None:
    """The latest run that did not finish, for ``--resume``: interrupted, or running but given up by its
    process (killed: it saved no progress for a claim lease). Raises ``ResyncError`` when that run is still
    being sent by another process: two processes sending one run would each count its members."""
    run = ResyncRun.objects.exclude(status=ResyncStatus.FINISHED).order_by("-created_at").first()
    if run is not None and run.status == ResyncStatus.RUNNING and run.driven_until and run.driven_until > timezone.now():
        raise ResyncError(
            f"Resync #{run.pk} is running in another process (it saved its progress "
            f"{(timezone.now() - run.driven_until + queue.claim_lease()).total_seconds():.0f}s ago). Stop it "
            "(Ctrl-C or SIGTERM) and run --resume then; if its process was killed, --resume can go on after "
            f"{timezone.localtime(run.driven_until):%H:%M:%S}.")
    return run


def resync_drive(run: ResyncRun) -> None:
    """Note on the run (saved with it) that this process sends it and will save its progress again within
    a claim lease (``resync_last_interrupted``)."""
    run.driven_until = timezone.now() + queue.claim_lease()


@dataclass
class Sender:
    """What every chunk of one resync is sent with (built once per process)."""

    selection: Selection
    force: bool
    forced_after: int | None  # see ``building.build``
    plan: building.MappingPlan
    deliverer: delivery.Deliverer
    chunk_size: int
    # Called before the walk waits (workers hold its members, Braze asked it to wait): the run's process, or
    # a part's worker, tells that it is alive, so a long wait is not taken for a killed process.
    keep_alive: Callable[[], None] | None = None
    # The report of a chunk the walk stopped in (its first claim's): the requests it sent count for the run.
    unfinished: delivery.DeliveryReport | None = None

    def wait(self, seconds: float) -> None:
        if self.keep_alive is not None:
            self.keep_alive()
        with interrupts.wait_interruptibly():
            time.sleep(seconds)


def resync_sender(run: ResyncRun) -> Sender:
    """Check the connection and prepare the run's plan, client and deliverer."""
    connection = _require_connection()
    if connection.status == ConnectionStatus.NEEDS_ATTENTION:
        raise ResyncError(f"The connection needs attention: {connection.last_message} Fix it and run braze_check.")
    selection = Selection.from_json(run.options["selection"])
    connection.batch_size = min(75, int(run.options.get("batch_size") or connection.batch_size))
    plan = _mapping_plan(connection, selection)
    try:
        client = services.client_for(connection)
    except errors.BrazeConfigurationError as err:  # an endpoint or proxy that cannot be used
        raise ResyncError(str(err)) from None
    force, partial = bool(run.options.get("force")), bool(selection.fields or selection.clear)
    # Only a run that forces every mapped field marks its requests as such: a member it sent has all its
    # values in Braze (``building.build``'s ``forced_after``). A forced run of some fields resumed sends
    # them again.
    full_force = force and not partial
    deliverer = delivery.Deliverer(connection, client, trigger=building.FORCED_RESYNC if full_force else "resync",
                                   partial=partial, member_rows=not selection.all,
                                   sent_after=run.options.get("requests_after"))
    return Sender(selection=selection, force=force, forced_after=run.options.get("forced_after") if full_force else None,
                  plan=plan, deliverer=deliverer, chunk_size=connection.batch_size * 8)


ChunkDone = Callable[[list[int], delivery.DeliveryReport], bool]


def resync_walk(sender: Sender, *, after: int, last: int | None, on_chunk: ChunkDone, max_stalls: int = 20) -> bool:
    """Send the selected members with ``after < pk <= last`` in key order, a chunk at a time;
    ``on_chunk(ids, report)`` records each chunk and returns whether to go on. Returns whether the
    range was walked to its end.

    While the last answers of a chunk are on their way, the next chunk is claimed and built
    (``_Lookahead``): the worker does not wait idle for Braze's round trip at every chunk's end. With
    the sandbox answering 30 ms late, as Braze on the internet, that wait was a third of a worker's
    time."""
    chunk = _chunk_take(sender, after=after, last=last)
    while chunk is not None:
        ahead = _Lookahead(sender, after=chunk.ids[-1], last=last)
        recorded = False
        try:
            report = _deliver_chunk(sender, chunk, max_stalls, while_answers_come=ahead.take)
            go_on = on_chunk(chunk.ids, report)
            recorded = True
            interrupts.safe_point()  # also where no request went out (every member unchanged)
        except BaseException:  # Ctrl-C, a stop, the database: what this run did not send goes back as it was
            if not recorded and chunk.built is not None:
                sender.unfinished = chunk.built.report  # its requests went out; its members are counted on resume
            ahead.give_back()
            _unsent_forget(chunk.born)
            raise
        if not go_on:
            ahead.give_back()
            return False
        chunk = ahead.result()
    return True


@dataclass
class _Chunk:
    """The next members in key order (``ids``), claimed (``claimed``, under ``token``) and built."""

    ids: list[int]
    token: uuid.UUID
    claimed: list[int]
    born: list[int]  # the state rows ``states_ensure`` added for them
    built: delivery.Built | None  # None when no member could be claimed (workers hold them all)


def _chunk_take(sender: Sender, *, after: int, last: int | None) -> _Chunk | None:
    """The chunk of members after ``after`` (``None`` past ``last``): state rows added for the members
    never synced (born claimed), the rest claimed, and the claim built."""
    qs = sender.selection.queryset().filter(pk__gt=after)
    if last is not None:
        qs = qs.filter(pk__lte=last)
    ids = list(qs.values_list("pk", flat=True)[:sender.chunk_size])
    if not ids:
        return None
    token = uuid.uuid4()
    born: list[int] = []
    try:
        born = queue.states_ensure(ids, claimed_by=token) or []
        token, claimed = queue.claim(limit=len(ids), member_ids=ids, include_synced=True, token=token, held=born)
        built = (sender.deliverer.build(token, plan=sender.plan, force=sender.force, forced_after=sender.forced_after)
                 if claimed else None)
    except BaseException:  # Ctrl-C too: the rows born claimed go back now rather than after the lease
        queue.abandon(token)
        _unsent_forget(born)
        raise
    return _Chunk(ids=ids, token=token, claimed=claimed, born=born, built=built)


class _Lookahead:
    """The chunk after the one being sent, taken while that one's last answers come (``take``, called
    by ``Deliverer.send``), or when asked for (``result``) if its sending stopped before. An error in
    taking it is raised by ``result``, after the chunk before has recorded its answers."""

    def __init__(self, sender: Sender, *, after: int, last: int | None):
        self._sender, self._after, self._last = sender, after, last
        self._taken = False
        self._chunk: _Chunk | None = None
        self._error: Exception | None = None

    def take(self) -> None:
        if self._taken:
            return
        self._taken = True
        try:
            self._chunk = _chunk_take(self._sender, after=self._after, last=self._last)
        except Exception as err:  # the database, say: raised once the answers on their way are recorded
            self._error = err

    def result(self) -> _Chunk | None:
        self.take()
        if self._error is not None:
            raise self._error
        return self._chunk

    def give_back(self) -> None:
        """The walk stops before sending the chunk taken: its members go back as they were. When the
        database is what stopped it, this may fail too: the walk's own error is the one raised, and the
        members are free again after the claim's lease."""
        chunk, self._chunk = self._chunk, None
        if chunk is None or not chunk.claimed:
            return
        try:
            queue.release_unsent(chunk.token, born=chunk.born)
        except Exception:
            logger.exception("Could not give back the resync's next chunk; its members are free again after the lease.")


def _unsent_forget(born: list[int]) -> None:
    """``queue.unsent_forget``, for a walk that is stopping: its own error is the one to raise."""
    try:
        queue.unsent_forget(born)
    except Exception:
        logger.exception("Could not remove the state rows of members the resync did not send; they stay pending.")


def resync_execute(*, run: ResyncRun, progress: ProgressCallback | None = None, max_stalls: int = 20) -> ResyncRun:
    """Send the run's members from its cursor on, in this process. Ctrl-C or a crash leaves the run resumable."""
    sender = resync_sender(run)
    sender.keep_alive = lambda: ResyncRun.objects.filter(pk=run.pk).update(
        driven_until=timezone.now() + queue.claim_lease())
    started = time.monotonic() - run.elapsed_seconds
    run.status = ResyncStatus.RUNNING
    resync_drive(run)
    run.save(update_fields=["status", "driven_until"])

    def chunk_done(ids: list[int], report: delivery.DeliveryReport) -> bool:
        run.cursor = ids[-1]
        run.members_done += len(ids)
        run.members_sent += report.members_sent
        run.members_unchanged += report.members_unchanged
        run.members_failed += report.members_failed
        run.requests += report.requests
        run.data_points += report.data_points
        run.elapsed_seconds = time.monotonic() - started
        resync_drive(run)
        run.save()
        if progress:
            progress(len(ids), run)
        return True

    try:
        resync_walk(sender, after=run.cursor, last=None, on_chunk=chunk_done, max_stalls=max_stalls)
    except KeyboardInterrupt:
        _count_unfinished(run, sender)
        resync_stop(run, started, ResyncStatus.INTERRUPTED, "Interrupted; run again with --resume to go on.")
        raise
    except ResyncError as err:
        _count_unfinished(run, sender)
        resync_stop(run, started, ResyncStatus.INTERRUPTED, str(err))
        raise
    except Exception as err:  # the database, say: the run is interrupted, not left "running"
        _count_unfinished(run, sender)
        resync_stop(run, started, ResyncStatus.INTERRUPTED, f"Stopped by an error: {err}. Run again with --resume.")
        raise
    resync_stop(run, started, ResyncStatus.FINISHED, "")
    return run


def _count_unfinished(run: ResyncRun, sender: Sender) -> None:
    """The requests and data points of the chunk the run stopped in went to Braze: they count now. Its members
    count when ``--resume`` passes them (as sent, ``Deliverer.sent_after``), with the chunk."""
    if sender.unfinished is not None:
        run.requests += sender.unfinished.requests
        run.data_points += sender.unfinished.data_points
        sender.unfinished = None


def resync_stop(run: ResyncRun, started: float, status: str, message: str) -> None:
    """Record how the run ended (finished, or interrupted with why) and its time."""
    run.status = status
    run.message = message
    run.driven_until = None
    run.elapsed_seconds = time.monotonic() - started
    run.finished_at = timezone.now() if status == ResyncStatus.FINISHED else None
    run.save()


def _deliver_chunk(sender: Sender, chunk: _Chunk, max_stalls: int, *,
                   while_answers_come: Callable[[], None] | None = None) -> delivery.DeliveryReport:
    """Send the chunk's members: its first claim is ``chunk``'s, taken and built already; members it
    did not get (workers held them) or did not send (sending stopped) are claimed again.
    ``while_answers_come`` goes to the first claim's ``Deliverer.send``."""
    total = delivery.DeliveryReport()
    remaining = list(chunk.ids)
    stalls = 0
    first: _Chunk | None = chunk
    held_by_others_since: float | None = None
    while remaining:
        built = None
        if first is not None:
            token, claimed, built, first = first.token, first.claimed, first.built, None
        else:
            token, claimed = queue.claim(limit=len(remaining), member_ids=remaining, include_synced=True)
        if not claimed:
            # A member erased since the chunk was read has no state row left to claim: it is done.
            remaining = list(Member.objects.filter(pk__in=remaining).values_list("pk", flat=True))
            if not remaining:
                break
            # Workers hold these members right now: they send them and let go, or, when the worker was
            # killed, its claim runs out after a lease. Wait that long, not longer.
            now = time.monotonic()
            held_by_others_since = held_by_others_since or now
            if now - held_by_others_since > queue.claim_lease().total_seconds() + CLAIM_WAIT_MARGIN:
                raise ResyncError("Members stayed claimed by workers for longer than a claim lease "
                                  f"({settings.BRAZE_CLAIM_LEASE_SECONDS} s); try again later.")
            sender.wait(0.5)
            continue
        held_by_others_since = None
        round_ = delivery.deliver_claim(sender.deliverer, token, plan=sender.plan, force=sender.force,
                                        forced_after=sender.forced_after, built=built,
                                        while_answers_come=while_answers_come)
        while_answers_come = None  # once per chunk: it takes the next chunk
        total.merge(round_.report)
        stop = round_.stop
        # Members Braze answered for are done, also when the round stopped early: sending them
        # again would repeat what Braze already accepted.
        done = set(claimed) if stop is None else round_.report.settled
        remaining = [pk for pk in remaining if pk not in done]
        if stop is None:
            stalls = 0
        else:
            connection = Connection.objects.get(pk=sender.deliverer.connection.pk)
            if connection.status == ConnectionStatus.NEEDS_ATTENTION:
                raise ResyncError(f"Stopped: {connection.last_message}")
            if not stop.rate_limited:  # waiting for the rate limit's reset is not a failed try
                stalls += 1
            if stalls > max_stalls:
                raise ResyncError(f"Stopped after {stalls} failed tries: {stop.reason}. Run again with --resume.")
            paused = connection.paused_until
            wait = max(stop.wait, (paused - timezone.now()).total_seconds() if paused else 0.0, 0.5)
            sender.wait(min(wait, 30.0))
    return total


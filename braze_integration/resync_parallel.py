"""A resync on every qcluster worker: the run split into key ranges (``ResyncPart``), each sent by
a task.

Each part is leased to one task at a time and remembers the last member it finished, so a part
whose worker was killed is taken up again, from there, once its lease runs out; the member claims
of ``queue`` make sure a member is never sent by two processes at once. The process that started
the run (``braze_resync``) watches: it sums the parts into the run (one progress bar), queues again a
part whose lease ran out, and sends the parts itself when no worker takes one (no qcluster running).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid

from django.conf import settings
from django.db import connection as db_connection
from django.db.models import F, Q, QuerySet, Sum
from django.utils import timezone

from loyaltysync import collector

from . import delivery, interrupts, monitoring, resync
from .models import ResyncCounters, ResyncPart, ResyncRun, ResyncStatus

logger = logging.getLogger(__name__)

PART_TASK = "braze_integration.tasks.resync_part"
PART_TIME_BUDGET = 60.0  # a task gives its part back (and queues it again) after this long
WATCH_INTERVAL = 0.3  # how often the command sums the parts' progress and looks for lost ones
FINISH_CHECK = 0.05  # how often, in between, it looks whether the last part finished (one cheap query)
# Workers note themselves at every task and the periodic one runs each minute: one seen this
# recently is probably running.
WORKER_SEEN_WITHIN = 150.0
COUNTERS = tuple(f.name for f in ResyncCounters._meta.get_fields())


def workers_running() -> bool:
    """Whether a qcluster worker was seen lately (else the resync runs in the command's process at once).
    On SQLite only if ``BRAZE_RESYNC_PARALLEL_ON_SQLITE`` (the default)."""
    if db_connection.vendor == "sqlite" and not settings.BRAZE_RESYNC_PARALLEL_ON_SQLITE:
        return False
    seen = monitoring.worker_last_seen()
    return seen is not None and (timezone.now() - seen).total_seconds() < WORKER_SEEN_WITHIN


def parts_ensure(run: ResyncRun) -> int:
    """Split the run's members (from its cursor on) into key ranges of about
    ``BRAZE_RESYNC_PART_MEMBERS``, once; returns how many parts the run has. Only the primary keys
    are read, streamed: memory stays flat however many members there are."""
    existing = run.parts.count()
    if existing:
        return existing
    size = max(1, settings.BRAZE_RESYNC_PART_MEMBERS)
    selection = resync.Selection.from_json(run.options["selection"])
    bounds: list[tuple[int, int]] = []
    after, count, pk = run.cursor, 0, None
    for pk in selection.queryset().filter(pk__gt=run.cursor).values_list("pk", flat=True).iterator(chunk_size=5000):
        count += 1
        if count == size:
            bounds.append((after, pk))
            after, count = pk, 0
    if count:
        bounds.append((after, pk))
    ResyncPart.objects.bulk_create(
        ResyncPart(run=run, number=number, after=low, last=high, cursor=low)
        for number, (low, high) in enumerate(bounds, start=1))
    return len(bounds)


def _lease() -> float:
    return float(settings.BRAZE_CLAIM_LEASE_SECONDS)


def _free(now) -> Q:
    return Q(finished=False) & (Q(leased_until__isnull=True) | Q(leased_until__lt=now))


def part_execute(*, part_id: int, time_budget: float = PART_TIME_BUDGET, requeue: bool = True) -> str:
    """Send one part from its cursor on, holding its lease; returns what happened.

    Gives the part back after ``time_budget`` seconds (queuing it again when ``requeue``), when
    the run was interrupted, or when the lease was lost; a ``ResyncError`` is written on the part,
    where the watching command reads it."""
    token = uuid.uuid4()
    now = timezone.now()
    taken = ResyncPart.objects.filter(_free(now), pk=part_id, run__status=ResyncStatus.RUNNING).update(
        lease_token=token, leased_until=now + timezone.timedelta(seconds=_lease()))
    if not taken:
        return f"part {part_id}: finished, taken by another worker, or its run is not running"
    part = ResyncPart.objects.select_related("run").get(pk=part_id)
    mine = ResyncPart.objects.filter(pk=part_id, lease_token=token)
    deadline = time.monotonic() + time_budget
    stopped = ""

    def chunk_done(ids: list[int], report: delivery.DeliveryReport) -> bool:
        nonlocal stopped
        kept = mine.update(
            cursor=ids[-1], members_done=F("members_done") + len(ids),
            members_sent=F("members_sent") + report.members_sent,
            members_unchanged=F("members_unchanged") + report.members_unchanged,
            members_failed=F("members_failed") + report.members_failed, requests=F("requests") + report.requests,
            data_points=F("data_points") + report.data_points,
            leased_until=timezone.now() + timezone.timedelta(seconds=_lease()))
        if not kept:
            stopped = "lease lost"
        elif ResyncRun.objects.filter(pk=part.run_id).exclude(status=ResyncStatus.RUNNING).exists():
            stopped = "run interrupted"
        elif time.monotonic() > deadline:
            stopped = "time budget spent"
        return not stopped

    sender = None
    try:
        sender = resync.resync_sender(part.run)
        sender.keep_alive = lambda: mine.update(leased_until=timezone.now() + timezone.timedelta(seconds=_lease()))
        finished = resync.resync_walk(sender, after=part.cursor, last=part.last, on_chunk=chunk_done)
    except resync.ResyncError as err:
        mine.update(lease_token=None, leased_until=None, message=str(err), **_unfinished_counts(sender))
        return f"part {part.number}: {err}"
    except BaseException:
        mine.update(lease_token=None, leased_until=None, **_unfinished_counts(sender))
        raise
    mine.update(lease_token=None, leased_until=None, finished=finished, done_by=f"{socket.gethostname()}:{os.getpid()}")
    if not finished and stopped == "time budget spent" and requeue:
        part_queue(part_ids=[part_id])
    return f"part {part.number}: {'finished' if finished else stopped}"


def _unfinished_counts(sender: resync.Sender | None) -> dict[str, F]:
    """The requests and data points of the chunk a part stopped in, to add to the part (as
    ``resync._count_unfinished`` does for a run sent in one process)."""
    unfinished = sender.unfinished if sender is not None else None
    if unfinished is None:
        return {}
    return {"requests": F("requests") + unfinished.requests, "data_points": F("data_points") + unfinished.data_points}


def part_queue(*, part_ids: list[int]) -> None:
    from django_q.tasks import async_task

    for part_id in part_ids:
        async_task(PART_TASK, part_id, task_name=f"braze-resync-part-{part_id}", q_options={"save": False})


def resync_parallel_execute(*, run: ResyncRun, progress: resync.ProgressCallback | None = None,
                            pickup_wait: float | None = None, local: bool = False) -> ResyncRun:
    """Run the resync as parts on the workers and watch it to the end (or send the parts here when no
    worker takes one within ``pickup_wait`` seconds). Ctrl-C interrupts every part; ``--resume``
    queues the unfinished ones again. ``local``: send the unfinished parts here, queuing none (a run that
    began on the workers, resumed ``--in-process``)."""
    pickup_wait = 0.0 if local else settings.BRAZE_RESYNC_PICKUP_SECONDS if pickup_wait is None else pickup_wait
    resync.resync_sender(run)  # refuse a broken connection or unknown fields before queuing anything
    parts_ensure(run)
    started = time.monotonic() - run.elapsed_seconds
    run.status, run.message = ResyncStatus.RUNNING, ""
    resync.resync_drive(run)
    run.save(update_fields=["status", "message", "driven_until"])
    parts = run.parts.all()
    parts.update(message="")
    if not local:
        part_queue(part_ids=list(parts.filter(_free(timezone.now())).values_list("pk", flat=True)))
    last_activity = time.monotonic()
    try:
        while True:
            _sleep_unless_finished(parts)
            _sum_into(run, started, progress)
            if ResyncRun.objects.filter(pk=run.pk).exclude(status=ResyncStatus.RUNNING).exists():
                raise resync.ResyncError(f"Resync #{run.pk} was stopped by another process; run --resume to go on.")
            failed = parts.filter(finished=False, lease_token__isnull=True).exclude(message="").first()
            if failed is not None:
                raise resync.ResyncError(f"Part {failed.number} stopped: {failed.message}")
            if not parts.filter(finished=False).exists():
                break
            now = timezone.now()
            # A lease that ran out: its worker was killed. Queue the part again (it goes on from its cursor).
            lost = list(parts.filter(finished=False, leased_until__lt=now).values_list("pk", flat=True))
            if lost:
                parts.filter(pk__in=lost, leased_until__lt=now).update(leased_until=None, lease_token=None)
                part_queue(part_ids=lost)
                last_activity = time.monotonic()
            if parts.filter(leased_until__gte=now).exists():
                last_activity = time.monotonic()
            elif time.monotonic() - last_activity > pickup_wait:
                # Nobody took a part for pickup_wait seconds: no worker runs; send them here.
                collector.freeze_startup()  # full collections skip Django's objects from now on
                for part_id in parts.filter(_free(now)).values_list("pk", flat=True):
                    part_execute(part_id=part_id, time_budget=float("inf"), requeue=False)
                    _sum_into(run, started, progress)
                last_activity = time.monotonic()
    except KeyboardInterrupt:
        _sum_into(run, started)
        resync.resync_stop(run, started, ResyncStatus.INTERRUPTED, "Interrupted; run again with --resume to go on.")
        raise
    except resync.ResyncError as err:
        _sum_into(run, started)
        resync.resync_stop(run, started, ResyncStatus.INTERRUPTED, str(err))
        raise
    _sum_into(run, started)
    resync.resync_stop(run, started, ResyncStatus.FINISHED, "")
    return run


def _sleep_unless_finished(parts: QuerySet[ResyncPart]) -> None:
    """Wait ``WATCH_INTERVAL``, or less once no part is left to do: the command ends when the last
    part does, not up to a whole interval later (with both cores busy until then)."""
    deadline = time.monotonic() + WATCH_INTERVAL
    while time.monotonic() < deadline:
        with interrupts.wait_interruptibly():
            time.sleep(FINISH_CHECK)
        if not parts.filter(finished=False).exists():
            return


def _sum_into(run: ResyncRun, started: float, progress: resync.ProgressCallback | None = None) -> None:
    before = run.members_done
    totals = run.parts.aggregate(**{name: Sum(name) for name in COUNTERS})
    for name in COUNTERS:
        setattr(run, name, totals[name] or 0)
    last = run.parts.filter(finished=False).order_by("number").values_list("cursor", flat=True).first()
    run.cursor = last if last is not None else run.parts.order_by("-number").values_list("last", flat=True).first() or 0
    run.elapsed_seconds = time.monotonic() - started
    resync.resync_drive(run)
    run.save(update_fields=[*COUNTERS, "cursor", "elapsed_seconds", "driven_until"])
    if progress and run.members_done != before:
        progress(run.members_done - before, run)

"""`braze_resync` on every qcluster worker: key ranges as tasks, one run, each member sent once, and
a part whose worker was SIGKILLed goes on from where it stopped with `--resume`."""

from __future__ import annotations

import os
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from braze_integration import monitoring, resync, resync_parallel
from braze_integration.models import MemberSyncState, ResyncPart, ResyncRun, ResyncStatus, SyncHeartbeat
from loyaltysync.models import Member

from .conftest import assert_sandbox_matches_database, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PART_MEMBERS = 300


def seed(count: int) -> None:
    Member.objects.bulk_create(Member(member_id=f"p-{i:05d}", first_name=f"N{i}", points_spendable=i)
                               for i in range(count))


@pytest.fixture
def parts_of_300(settings):
    settings.BRAZE_RESYNC_PARALLEL_ON_SQLITE = True  # the same code path on both databases
    settings.BRAZE_RESYNC_PART_MEMBERS = PART_MEMBERS
    settings.BRAZE_RESYNC_PICKUP_SECONDS = 30  # the workers must take the parts; this process only watches


def test_given_two_workers_when_resyncing_all_then_the_workers_send_every_member_once(
        braze_connection, sandbox, start_worker, parts_of_300, settings):
    seed(1200)
    start_worker(workers=2, redis_url=settings.REDIS_URL)
    wait_until(lambda: monitoring.worker_last_seen() is not None, timeout=30, what="the worker's first task")
    out = StringIO()

    call_command("braze_resync", "--all", stdout=out, stderr=StringIO())

    run = ResyncRun.objects.get()
    assert run.status == ResyncStatus.FINISHED and run.members_done == 1200 and run.members_sent == 1200
    assert "done: 1200 members" in out.getvalue()
    parts = list(ResyncPart.objects.filter(run=run))
    assert len(parts) == 4 and all(p.finished for p in parts)
    # The workers took the parts; this process sends a part itself only when no worker took it within the
    # pickup time, which a busy CI machine may cause for one part, so at least half went through workers.
    assert all(p.done_by for p in parts)
    assert sum(not p.done_by.endswith(f":{os.getpid()}") for p in parts) >= len(parts) // 2
    stats = sandbox.stats()
    assert stats["users"] == 1200
    assert stats["objects"]["attributes"] == 1200  # each member once
    assert MemberSyncState.objects.filter(status="synced").count() == 1200
    assert_sandbox_matches_database(sandbox)


def test_given_a_worker_sigkilled_mid_resync_when_resumed_then_every_member_is_sent(
        braze_connection, sandbox, start_worker, parts_of_300, settings):
    seed(2400)
    sandbox.set_faults(latency_ms=150)  # keep the parts busy long enough to kill the worker half-way
    worker = start_worker(workers=2, redis_url=settings.REDIS_URL)  # the broker this process queues on
    run = resync.resync_start(selection=resync.Selection(all=True))
    resync_parallel.parts_ensure(run)
    ResyncRun.objects.filter(pk=run.pk).update(status=ResyncStatus.RUNNING)
    resync_parallel.part_queue(part_ids=list(run.parts.values_list("pk", flat=True)))
    wait_until(lambda: sum(run.parts.values_list("members_done", flat=True)) >= 600, timeout=60,
               what="the workers to finish some chunks")

    worker.kill()
    done_before = sum(run.parts.values_list("members_done", flat=True))
    assert done_before < 2400
    sandbox.set_faults(latency_ms=0)
    start_worker(workers=2, redis_url=settings.REDIS_URL)
    out = StringIO()
    call_command("braze_resync", "--resume", stdout=out, stderr=StringIO())

    run.refresh_from_db()
    assert run.status == ResyncStatus.FINISHED
    assert run.members_done == 2400  # every part went on from its cursor: no chunk counted twice
    assert "done: 2400 members" in out.getvalue()
    stats = sandbox.stats()
    assert stats["users"] == 2400
    # Only the requests whose answers were not recorded when the worker died may have gone twice: two
    # tasks, each with at most BRAZE_REQUESTS_IN_FLIGHT of them.
    assert 2400 <= stats["objects"]["attributes"] <= 2400 + 2 * settings.BRAZE_REQUESTS_IN_FLIGHT * 75
    assert MemberSyncState.objects.filter(status="synced").count() == 2400
    assert_sandbox_matches_database(sandbox)


def test_given_a_worker_seen_lately_but_gone_when_resyncing_all_then_the_command_sends_the_parts_itself(
        braze_connection, sandbox, settings):
    settings.BRAZE_RESYNC_PARALLEL_ON_SQLITE = True
    settings.BRAZE_RESYNC_PART_MEMBERS = PART_MEMBERS
    settings.BRAZE_RESYNC_PICKUP_SECONDS = 0.5
    SyncHeartbeat.objects.create(pk=monitoring.HEARTBEAT_PK, worker_seen_at=timezone.now())
    seed(700)

    call_command("braze_resync", "--all", stdout=StringIO(), stderr=StringIO())

    run = ResyncRun.objects.get()
    assert run.status == ResyncStatus.FINISHED and run.members_done == 700
    assert [p.done_by.endswith(f":{os.getpid()}") for p in run.parts.all()] == [True, True, True]
    assert sandbox.stats()["objects"]["attributes"] == 700


def test_given_no_worker_seen_when_resyncing_all_then_the_command_sends_at_once_without_parts(
        braze_connection, sandbox, parts_of_300):
    seed(400)

    call_command("braze_resync", "--all", stdout=StringIO(), stderr=StringIO())

    run = ResyncRun.objects.get()
    assert run.status == ResyncStatus.FINISHED and run.members_done == 400
    assert not run.parts.exists()  # no 30-second wait for a worker that was never there


def test_a_run_begun_as_parts_resumed_in_process_sends_its_unfinished_parts_here_and_counts_each_member_once(
        braze_connection, sandbox, parts_of_300):
    """Given a run of three parts whose first part the workers finished before it was interrupted, when it
    is resumed with --in-process, then this process sends the other two parts and the totals count each
    member once (it walked the whole run again from a cursor that means nothing for parts: 1,500 members
    done of 900, the finished part's members counted as unchanged, its parts never marked finished)."""
    seed(900)
    run = resync.resync_start(selection=resync.Selection(all=True))
    resync_parallel.parts_ensure(run)
    ResyncRun.objects.filter(pk=run.pk).update(status=ResyncStatus.RUNNING)
    first = run.parts.order_by("number").first()
    resync_parallel.part_execute(part_id=first.pk, time_budget=float("inf"), requeue=False)
    ResyncRun.objects.filter(pk=run.pk).update(status=ResyncStatus.INTERRUPTED)
    out = StringIO()

    call_command("braze_resync", "--resume", "--in-process", stdout=out, stderr=StringIO())

    run.refresh_from_db()
    assert "done: 900 members" in out.getvalue()
    assert (run.status, run.members_done, run.members_sent, run.members_unchanged) == (ResyncStatus.FINISHED, 900, 900, 0)
    assert all(part.finished for part in run.parts.all())
    assert sandbox.stats()["objects"]["attributes"] == 900

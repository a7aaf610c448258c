"""The worker heartbeat, the last successful send, the "stalled" alarm, and a connection that heals."""

from __future__ import annotations

import logging
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from braze_integration import monitoring, services, tasks
from braze_integration.models import Connection, MemberChange, MemberSyncState, SyncHeartbeat, SyncStatus
from loyaltysync.models import Member
from tests.braze.members import make_member

DASHBOARD = "/admin/braze_integration/connection/dashboard/"


@pytest.fixture(autouse=True)
def fresh_heartbeat(settings):
    settings.BRAZE_FLUSH_LINGER_SECONDS = 0
    monitoring.heartbeat_forget()
    yield
    monitoring.heartbeat_forget()


def status_output() -> str:
    out = StringIO()
    call_command("braze_status", stdout=out)
    return out.getvalue()


def test_given_no_worker_ever_ran_then_worker_last_seen_is_none_and_a_task_run_sets_it(braze_connection, sandbox):
    assert monitoring.worker_last_seen() is None and monitoring.last_success() is None
    member = make_member("m-1")

    before = timezone.now()
    tasks.sync_flush()

    assert monitoring.worker_last_seen() >= before
    assert monitoring.last_success() >= before
    assert MemberSyncState.objects.get(pk=member.pk).status == SyncStatus.SYNCED


def test_given_many_requests_in_one_flush_then_the_heartbeat_is_written_once_per_figure(braze_connection, sandbox):
    Connection.objects.filter(pk=braze_connection.pk).update(batch_size=5)
    Member.objects.bulk_create(Member(member_id=f"h-{i}", first_name="Ada") for i in range(60))
    services.member_sync_enqueue(member_ids=Member.objects.values_list("pk", flat=True), schedule=False)
    SyncHeartbeat.objects.create(pk=1)  # a worker ran before

    with CaptureQueriesContext(db_connection) as queries:
        tasks.sync_flush()

    assert sandbox.stats()["users"] == 60 and len(sandbox.requests()) >= 12
    writes = [q["sql"] for q in queries if "syncheartbeat" in q["sql"] and not q["sql"].startswith("SELECT")]
    assert len(writes) == 2  # worker seen, last success: not one per request, not one per member


@pytest.mark.usefixtures("q_sync")
def test_given_tasks_run_inline_then_no_worker_is_counted_as_seen(braze_connection, sandbox):
    make_member("m-1")  # its flush runs inline, in this process

    assert MemberSyncState.objects.get().status == SyncStatus.SYNCED
    assert monitoring.worker_last_seen() is None
    assert monitoring.last_success() is not None


def test_given_old_pending_work_and_no_worker_then_the_dashboard_and_braze_status_raise_the_alarm(
        braze_connection, admin_client, settings):
    settings.BRAZE_ALARM_PENDING_SECONDS = 600
    member = make_member("m-1")  # saved 20 minutes ago; no worker has looked since
    assert MemberChange.objects.filter(member_id=member.pk).update(changed_at=timezone.now() - timedelta(minutes=20))

    page = admin_client.get(DASHBOARD).content.decode()
    output = status_output()

    assert 'id="braze-alarms"' in page and "no sync worker ran" in page
    assert '<td id="braze-worker-last-seen">never</td>' in page
    assert "ALARM:" in output and "no sync worker ran" in output and "Worker seen:     never" in output

    monitoring.worker_seen()
    page = admin_client.get(DASHBOARD).content.decode()

    assert 'id="braze-alarms"' not in page and "ago" in page.split('id="braze-worker-last-seen">')[1][:40]
    assert "ALARM" not in status_output()


def test_given_a_dead_worker_but_young_pending_work_then_there_is_no_alarm(braze_connection, settings):
    settings.BRAZE_ALARM_PENDING_SECONDS = 600
    SyncHeartbeat.objects.create(pk=1, worker_seen_at=timezone.now() - timedelta(hours=3))
    make_member("m-1")

    assert services.sync_status_summary()["alarms"] == {}
    settings.BRAZE_ALARM_PENDING_SECONDS = 0
    assert set(services.sync_status_summary()["alarms"]) == {monitoring.STALLED}


def test_given_braze_failed_once_then_the_first_success_clears_the_pause_and_its_error(
        braze_connection, sandbox, caplog):
    caplog.set_level(logging.INFO, logger="braze_integration")
    member = make_member("m-1")
    sandbox.set_faults(fail_next=1)

    services.sync_flush(max_wait=0)  # a worker that does not sleep through the pause
    connection = Connection.objects.get(pk=braze_connection.pk)
    assert connection.paused_until is not None and connection.last_message
    assert "Braze sync paused until" in caplog.text

    # The pause and the member's backoff are over.
    Connection.objects.filter(pk=connection.pk).update(paused_until=timezone.now() - timedelta(seconds=1))
    assert services.sync_status_summary()["connection"]["paused_until"] is None  # a past pause is not shown
    MemberSyncState.objects.filter(pk=member.pk).update(next_attempt_at=None)
    tasks.sync_flush()

    connection.refresh_from_db()
    assert connection.paused_until is None and connection.last_message == ""
    assert MemberSyncState.objects.get(pk=member.pk).status == SyncStatus.SYNCED
    assert "Braze sync resumed" in caplog.text


def test_given_the_last_attempt_fails_then_the_dead_letter_is_logged_once(braze_connection, sandbox, caplog):
    Connection.objects.filter(pk=braze_connection.pk).update(max_attempts=1)
    member = make_member("m-1")
    sandbox.set_faults(fail_next=1)

    tasks.sync_flush()

    assert MemberSyncState.objects.get(pk=member.pk).status == SyncStatus.DEAD
    lines = [r for r in caplog.records if "gave up on member" in r.getMessage()]
    assert len(lines) == 1 and f"#{member.pk}" in lines[0].getMessage()

"""Locks taken by the event-recording path: a web request and a worker touching the same member must not
deadlock (PostgreSQL; SQLite serialises writers with IMMEDIATE transactions and has no row locks).

The pattern the review found: the web request locks the member, then (in a ``post_save`` receiver) upserts
the member's Braze sync state; a worker's transaction holds that sync state row and, at COMMIT, its deferred
foreign-key check asks for ``FOR KEY SHARE`` on the member. ``FOR UPDATE`` on the member conflicts with that
check (a deadlock, one side aborted); ``FOR NO KEY UPDATE`` does not.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections, transaction

from braze_integration import services as braze_services
from braze_integration.models import OutboxItem, OutboxKind
from loyaltysync import services
from loyaltysync.models import Member

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are PostgreSQL's")


def _wait_until_blocked(pid: int, timeout: float = 10.0) -> None:
    """Waits until backend ``pid`` waits for a lock (so the test's order of events is certain)."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
            row = cursor.fetchone()
            if row and row[0] == "Lock":
                return
            time.sleep(0.02)
    raise AssertionError(f"backend {pid} never waited for a lock")


def _in_thread(work) -> tuple[threading.Thread, dict]:
    """Runs ``work`` on its own database connection; the dict gets its backend ``pid`` and ``error``."""
    outcome: dict = {}
    started = threading.Event()

    def run():
        try:
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                outcome["pid"] = cursor.fetchone()[0]
            started.set()
            work()
        except Exception as error:  # reported to the test
            outcome["error"] = error
        finally:
            started.set()
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    return thread, outcome


@pytest.fixture
def member(braze_connection, loyalty_settings, tiers):
    member, _ = services.event_record(member_id="M-1", action="opt_in", data={}, source="api")
    return member


def test_given_a_worker_holding_the_sync_state_when_a_web_request_records_an_event_then_neither_deadlocks(member):
    def web_request():
        # Inside an outer transaction so that no retry can hide a deadlock.
        with transaction.atomic():
            services.event_record(member_id="M-1", action="point_add", data={"points": 5}, source="api")

    worker_error = None
    thread = None
    try:
        with transaction.atomic():
            # The worker: holds the member's sync state row and has written a row whose foreign key on the
            # member is checked at COMMIT (Django's foreign keys are DEFERRABLE INITIALLY DEFERRED).
            braze_services.member_sync_enqueue(member_ids=[member.pk], schedule=False)
            OutboxItem.objects.create(member=member, kind=OutboxKind.EVENT, payload={"name": "visit"})
            thread, web = _in_thread(web_request)
            _wait_until_blocked(web["pid"])  # the web request holds the member, waits for the sync state
        # Leaving the block committed: the foreign-key check ran then.
    except Exception as error:
        worker_error = error
    thread.join(30)

    assert not thread.is_alive()
    assert worker_error is None
    assert "error" not in web, web.get("error")
    assert Member.objects.get(pk=member.pk).points_spendable == 5

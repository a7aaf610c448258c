"""Locks taken by the event-recording path: a web request and a worker touching the same member must not
deadlock, and the web request must not wait for the worker (PostgreSQL; SQLite serialises writers with
IMMEDIATE transactions and has no row locks).

The pattern the review found: the web request locks the member; a worker's transaction holds the member's
Braze sync state row and, at COMMIT, its deferred foreign-key check asks for ``FOR KEY SHARE`` on the
member. ``FOR UPDATE`` on the member conflicts with that check (a deadlock, one side aborted); ``FOR NO KEY
UPDATE`` does not. The web request's save appends a change row and touches no sync state row, so it does
not wait for the worker at all.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections, transaction

from braze_integration import queue as braze_queue
from braze_integration.models import OutboxItem, OutboxKind
from loyaltysync import services
from loyaltysync.models import Member

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are PostgreSQL's")


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


def test_given_a_worker_recording_an_answer_when_a_web_request_records_an_event_then_it_waits_for_nothing(member):
    token, claimed = braze_queue.claim(limit=10)
    assert claimed == [member.pk]

    def web_request():
        # Inside an outer transaction so that no retry can hide a deadlock.
        with transaction.atomic():
            services.event_record(member_id="M-1", action="point_add", data={"points": 5}, source="api")

    with transaction.atomic():
        # The worker records Braze's answer: it holds the member's sync state row until it commits, and has
        # written a row whose foreign key on the member is checked at COMMIT (Django's foreign keys are
        # DEFERRABLE INITIALLY DEFERRED).
        braze_queue.finish_synced(token, member_ids=[member.pk], sent_values={member.pk: {"points": 0}},
                                  request_id=None, partial=False)
        OutboxItem.objects.create(member=member, kind=OutboxKind.EVENT, payload={"name": "visit"})
        thread, web = _in_thread(web_request)
        thread.join(10)
        done_while_the_worker_held_the_row = not thread.is_alive()
    thread.join(30)

    assert done_while_the_worker_held_the_row  # the save appended a change; it waited for no worker
    assert "error" not in web, web.get("error")
    assert Member.objects.get(pk=member.pk).points_spendable == 5
    # The change saved while the answer was being recorded is not lost: the member is due again.
    assert braze_queue.claimable_exists()


def test_given_a_worker_recording_an_answer_when_a_checkout_starts_a_workflow_then_it_waits_for_nothing(member):
    """A workflow listening to the event holds the member's sync back until it has run (its attributes and
    events then go with the event's mapped values in one request). That hold is written as a change row
    too: it must not wait for the worker's lock on the member's state row either."""
    from tests.workflows.factories import make_workflow
    from workflows.models import TriggerKind, TriggerRecord

    make_workflow(name="Points", trigger_kind=TriggerKind.EVENT, trigger_action="point_add")
    token, claimed = braze_queue.claim(limit=10)
    assert claimed == [member.pk]

    def web_request():
        with transaction.atomic():
            services.event_record(member_id="M-1", action="point_add", data={"points": 5}, source="api")

    with transaction.atomic():
        braze_queue.finish_synced(token, member_ids=[member.pk], sent_values={member.pk: {"points": 0}},
                                  request_id=None, partial=False)
        thread, web = _in_thread(web_request)
        thread.join(10)
        done_while_the_worker_held_the_row = not thread.is_alive()
    thread.join(30)

    assert done_while_the_worker_held_the_row
    assert "error" not in web, web.get("error")
    assert TriggerRecord.objects.filter(member=member).count() == 1
    # Held: nothing is due until the workflow has run and released the member...
    assert not braze_queue.claimable_exists()
    braze_queue.unhold([member.pk])
    # ... and then the change is due.
    assert braze_queue.claimable_exists()


def test_given_a_row_referring_to_the_member_being_inserted_when_a_custom_field_is_saved_then_it_waits_for_nothing(
        member):
    """A worker or a checkout inserting a row that refers to the member holds ``FOR KEY SHARE`` on it until
    it commits. A save that merges a JSON object reads the stored one under ``FOR NO KEY UPDATE``, as the
    save's own UPDATE locks the row, which does not conflict with it."""
    stale = Member.objects.get(pk=member.pk)

    def script_saves():
        stale.custom_fields = {**stale.custom_fields, "shoe_size": 42}
        stale.save()

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {Member._meta.db_table} WHERE id = %s FOR KEY SHARE", [member.pk])
        thread, saved = _in_thread(script_saves)
        thread.join(5)
        done_while_the_row_was_share_locked = not thread.is_alive()
    thread.join(30)

    assert done_while_the_row_was_share_locked
    assert "error" not in saved, saved.get("error")
    assert Member.objects.get(pk=member.pk).custom_fields["shoe_size"] == 42

"""Faults the sync survives, with real worker processes, a real database and the sandbox over HTTP.

After each fault, once things are back: every profile in the sandbox equals the database, every
custom event is there (duplicates only where an answer was lost, and those are counted), and the
request log tells what happened.
"""

from __future__ import annotations

import time

import pytest
from django.db import transaction

from braze_integration import services
from braze_integration.models import Connection, ConnectionStatus, OutboxItem, SyncRequest
from loyaltysync.models import Member

from .conftest import all_synced, assert_sandbox_matches_database, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def create_members(count: int, prefix: str = "f", *, with_event: bool = True) -> list[Member]:
    members = []
    with transaction.atomic():
        for index in range(count):
            member = Member.objects.create(member_id=f"{prefix}-{index:04d}", first_name=f"First {index}",
                                           points_spendable=index)
            if with_event:
                services.outbox_enqueue(member_id=member.pk, kind="event", dedupe_key=f"{prefix}-{index}",
                                        payload={"name": "fault_test", "time": "2026-11-25T10:00:00Z",
                                                 "properties": {"n": index}})
            members.append(member)
    return members


def test_worker_killed_mid_batch_then_restarted_loses_nothing(braze_connection, sandbox, start_worker):
    sandbox.set_faults(latency_ms=400)  # keep requests in flight long enough to kill the worker mid-batch
    create_members(300)
    worker = start_worker()
    wait_until(lambda: sandbox.stats()["requests"] >= 1, timeout=30, what="the first request")

    worker.kill()
    sent_before_restart = sandbox.stats()["users"]
    assert sent_before_restart < 300, "the kill came too late to interrupt anything"
    sandbox.set_faults(latency_ms=0)
    start_worker()

    wait_until(all_synced, timeout=90, what="every member synced after the restart")
    assert_sandbox_matches_database(sandbox)
    assert sandbox.stats()["users"] == 300


def test_sandbox_errors_and_timeouts_are_retried_until_everything_is_in(braze_connection, sandbox, start_worker):
    sandbox.set_faults(error_rate=0.3, timeout_rate=0.1, hang_seconds=3, seed=7)
    create_members(200)
    start_worker()
    wait_until(lambda: SyncRequest.objects.filter(outcome__in=["server_error", "transport"]).exists(), timeout=60,
               what="a failed request")
    time.sleep(2)
    sandbox.set_faults(error_rate=0, timeout_rate=0)

    wait_until(all_synced, timeout=120, what="every member synced after the errors stopped")
    assert_sandbox_matches_database(sandbox)
    assert SyncRequest.objects.filter(outcome="success").exists()


def test_lost_answers_are_counted_and_are_the_only_duplicates(braze_connection, sandbox, start_worker):
    sandbox.set_faults(ack_lost_next=1)
    create_members(10)
    start_worker()

    wait_until(all_synced, timeout=60, what="every member synced")
    ambiguous = sum(OutboxItem.objects.values_list("ambiguous_sends", flat=True))
    events = sum(len(sandbox.user(m.member_id)["events"]) for m in Member.objects.all())
    assert ambiguous == 10  # the one lost answer carried all ten members' events
    assert events == 10 + ambiguous
    assert_sandbox_matches_database(sandbox)


def test_rate_limited_hard_for_a_while_then_everything_goes_through(braze_connection, sandbox, start_worker):
    sandbox.set_faults(rate_limit="2/1s")
    braze_connection.batch_size = 10
    braze_connection.save()
    create_members(60, with_event=False)
    start_worker()
    # The pause lasts as long as Braze's Retry-After (about a second here): the first success after it
    # clears it, so it is watched for rather than read once.
    wait_until(lambda: sandbox.stats()["rate_limited"] >= 1 and Connection.objects.get().paused_until is not None,
               timeout=30, interval=0.05, what="a 429 and the pause it sets")
    sandbox.set_faults(rate_limit=None)

    wait_until(all_synced, timeout=90, what="every member synced after the rate limit")
    assert_sandbox_matches_database(sandbox)
    assert SyncRequest.objects.filter(outcome="rate_limited").exists()


def test_bad_credentials_pause_sending_and_fixed_credentials_resume_it(braze_connection, sandbox, start_worker):
    sandbox.set_keys(["a-different-key-000000"])
    start_worker()
    create_members(20)
    wait_until(lambda: Connection.objects.get().status == ConnectionStatus.NEEDS_ATTENTION, timeout=30,
               what="the connection to need attention")
    connection = Connection.objects.get()
    assert "Invalid API Key" in connection.last_message
    create_members(5, prefix="later")  # saves keep working meanwhile
    assert sandbox.stats()["users"] == 0

    from tests.conftest import SANDBOX_KEY

    sandbox.set_keys([SANDBOX_KEY])
    assert services.connection_verify(connection=connection).ok

    wait_until(all_synced, timeout=60, what="every member synced after Connect")
    assert_sandbox_matches_database(sandbox)
    assert sandbox.stats()["users"] == 25

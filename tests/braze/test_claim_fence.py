"""The fence before each request leaves: a worker sends only members its claim still holds, with lease
enough left for Braze's answer (a real database, the sandbox over real HTTP).

What an attack found without it: a worker paused past its lease (SIGSTOP, a stalled machine) woke up
and sent what it had built, after another worker had sent the members' newer values (Braze kept the old
ones, and their events arrived twice, uncounted), and recreated the profiles of members erased meanwhile.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from braze_integration import delivery, queue, ratelimit, services
from braze_integration.models import MemberSyncState, OutboxItem, SyncStatus
from loyaltysync import services as loyalty

from .members import claim_everyone, deliverer_for, make_member

pytestmark = pytest.mark.django_db(transaction=True)


def deliver(connection, token) -> delivery.Round:
    return delivery.deliver_claim(deliverer_for(connection), token, force=True)


@pytest.fixture
def before_first_send(monkeypatch):
    """Runs a function once, where the worker waits for the rate limiter before its first request: after it
    built the claim, before anything left (where a pause hurts most)."""
    acquire = ratelimit.acquire
    pending = []

    def acquire_after(connection, **kwargs):
        while pending:
            pending.pop()()
        return acquire(connection, **kwargs)

    monkeypatch.setattr(delivery.ratelimit, "acquire", acquire_after)
    return pending.append


def test_a_worker_paused_past_its_lease_sends_nothing_it_built(braze_connection, sandbox, before_first_send):
    braze_connection.batch_size = 2
    members = [make_member(f"m-pause-{i}") for i in range(4)]
    services.outbox_enqueue(member_id=members[0].pk, kind="event", dedupe_key="pause-visit",
                            payload={"name": "visit", "time": "2026-12-02T10:00:00Z"})
    token = claim_everyone(members)
    taken = {}

    def paused_past_the_lease():
        MemberSyncState.objects.filter(claim_token=token).update(claimed_until=timezone.now() - timedelta(seconds=1))
        taken["token"], taken["members"] = queue.claim(limit=10)  # another worker, once the lease ran out

    before_first_send(paused_past_the_lease)
    round_ = deliver(braze_connection, token)

    assert round_.stop is not None and round_.stop.reason == delivery.CLAIM_LOST
    assert sandbox.stats()["users"] == 0  # nothing stale reached Braze
    assert sorted(taken["members"]) == sorted(m.pk for m in members)
    assert set(MemberSyncState.objects.values_list("claim_token", flat=True)) == {taken["token"]}
    event = OutboxItem.objects.get()
    assert event.ambiguous_sends == 0 and event.status == "pending"  # the other worker sends it, once


def test_a_member_erased_after_the_claim_was_built_is_not_sent_and_the_others_go_in_the_next_round(
        braze_connection, sandbox, before_first_send):
    members = [make_member(f"m-erase-{i}") for i in range(3)]
    token = claim_everyone(members)
    before_first_send(lambda: loyalty.member_erase(member_id="m-erase-1", erased_by="dpo", source="shell"))

    round_ = deliver(braze_connection, token)

    assert round_.stop is not None and round_.stop.reason == delivery.CLAIM_LOST
    assert sandbox.stats()["users"] == 0
    assert not MemberSyncState.objects.exclude(claim_token=None).exists()  # the others are free again

    services.sync_flush()

    assert sandbox.user("m-erase-0") is not None and sandbox.user("m-erase-2") is not None
    assert sandbox.user("m-erase-1") is None
    assert MemberSyncState.objects.filter(status=SyncStatus.SYNCED).count() == 2


def test_a_claim_slowed_past_a_third_of_its_lease_extends_it_and_sends_everything(
        braze_connection, sandbox, settings, monkeypatch):
    """Without the extension, the fence would stop a claim that the rate limiter slowed (lease 3 s here,
    0.8 s a request, five requests)."""
    settings.BRAZE_CLAIM_LEASE_SECONDS = 3
    braze_connection.batch_size = 1
    members = [make_member(f"m-slow-{i}") for i in range(5)]
    token = claim_everyone(members)
    acquire = ratelimit.acquire

    def slow_acquire(connection, **kwargs):
        import time

        time.sleep(0.8)
        return acquire(connection, **kwargs)

    monkeypatch.setattr(delivery.ratelimit, "acquire", slow_acquire)
    round_ = deliver(braze_connection, token)

    assert round_.stop is None
    assert MemberSyncState.objects.filter(status=SyncStatus.SYNCED).count() == 5
    assert sandbox.stats()["users"] == 5


def test_a_flush_that_loses_its_claim_claims_again_and_sends_the_rest_at_once(braze_connection, sandbox,
                                                                            before_first_send):
    for i in range(3):
        make_member(f"m-again-{i}")
    MemberSyncState.objects.update(status=SyncStatus.PENDING)
    before_first_send(lambda: loyalty.member_erase(member_id="m-again-1", erased_by="dpo", source="shell"))

    result = services.sync_flush()

    assert sandbox.user("m-again-0") is not None and sandbox.user("m-again-2") is not None
    assert sandbox.user("m-again-1") is None
    assert MemberSyncState.objects.filter(status=SyncStatus.SYNCED).count() == 2
    assert result.report.members_sent == 2
    assert result.stopped == ""  # the lost claim is not why the task ended


def test_a_lease_too_short_for_braze_s_answer_is_named_at_startup(settings):
    """With a lease under twice the answer's wait, the fence is half the lease: a request may still be
    on its way when another worker takes its members (found by an attack with a 10 s lease)."""
    from django.core.management import call_command

    assert queue.claim_lease_check() == []  # the defaults: 120 s against 2 x (10 + 5) s
    settings.BRAZE_CLAIM_LEASE_SECONDS, settings.BRAZE_HTTP_TIMEOUT = 10, 10
    [warning] = queue.claim_lease_check()
    assert warning.id == "braze_integration.W002"
    assert "BRAZE_CLAIM_LEASE_SECONDS (10)" in warning.msg and "30 s" in warning.msg
    call_command("check")  # a warning, not an error: commands (and qcluster) still start
    settings.BRAZE_CLAIM_LEASE_SECONDS = 30
    assert queue.claim_lease_check() == []

"""Erased members in Braze: their profiles are deleted over /users/delete (batches of 50, through the flush,
the rate limiter and the pauses), and nothing sent around the erasure can bring a profile back."""

from __future__ import annotations

import pytest
from django.utils import timezone

from braze_integration import delivery, services
from braze_integration.models import (
    BrazeDeletion,
    Connection,
    ConnectionStatus,
    DeletionStatus,
    OutboxItem,
    SyncRequest,
)
from loyaltysync import services as loyalty
from loyaltysync.models import Member
from tests.conftest import SANDBOX_KEY

from .members import make_member

TRACK, DELETE = "/users/track", "/users/delete"


def erase(member_id: str) -> None:
    loyalty.member_erase(member_id=member_id, erased_by="dpo", source="shell")


def flush() -> None:
    services.sync_flush(time_budget=10, max_wait=2)


def set_keys(sandbox, *, api_keys=(), track_only_keys=()) -> None:
    sandbox.session.post(f"{sandbox.url}/sandbox/keys", json={
        "api_keys": list(api_keys), "track_only_keys": list(track_only_keys), "no_permission_keys": []},
        timeout=5).raise_for_status()


def endpoint_calls(sandbox, endpoint: str) -> int:
    return sum(1 for entry in sandbox.requests() if entry.get("endpoint") == endpoint)


@pytest.mark.usefixtures("q_sync")
def test_erasing_a_synced_member_deletes_its_profile_and_logs_brazes_answer_without_the_id(braze_connection, sandbox):
    make_member("m-1")
    make_member("m-2")
    assert sandbox.user("m-1") is not None

    erase("m-1")

    assert sandbox.user("m-1") is None
    assert sandbox.user("m-2") is not None
    deletion = BrazeDeletion.objects.get()
    assert deletion.status == DeletionStatus.DELETED and deletion.external_id == ""
    assert deletion.member_hash == loyalty.member_id_hash("m-1")
    assert (deletion.http_status, deletion.times_sent) == (201, 1) and "deleted: 1" in deletion.message
    assert SyncRequest.objects.get(trigger="erasure").outcome == "success"


def test_deletions_go_in_batches_of_at_most_50_external_ids(braze_connection, sandbox):
    Member.objects.bulk_create([Member(member_id=f"b-{n:02d}") for n in range(60)])
    for n in range(60):
        erase(f"b-{n:02d}")

    flush()

    assert BrazeDeletion.objects.filter(status=DeletionStatus.DELETED).count() == 60
    assert SyncRequest.objects.filter(trigger="erasure").count() == 2
    assert endpoint_calls(sandbox, DELETE) == 2


def test_a_key_without_users_delete_pauses_the_connection_and_keeps_the_deletion(braze_connection, sandbox):
    make_member("m-1")
    flush()
    set_keys(sandbox, track_only_keys=[SANDBOX_KEY])

    erase("m-1")
    flush()

    connection = Connection.objects.get()
    assert connection.status == ConnectionStatus.NEEDS_ATTENTION
    assert "users.delete" in connection.last_message
    deletion = BrazeDeletion.objects.get()
    assert (deletion.status, deletion.http_status, deletion.external_id) == (DeletionStatus.PENDING, 403, "m-1")
    assert sandbox.user("m-1") is not None

    # When the key gets the permission and Connect succeeds, the deletion goes out
    set_keys(sandbox, api_keys=[SANDBOX_KEY])
    Connection.objects.update(status=ConnectionStatus.CONNECTED, paused_until=None)
    flush()
    assert sandbox.user("m-1") is None
    assert BrazeDeletion.objects.get().status == DeletionStatus.DELETED


def test_a_pending_sync_and_outbox_event_of_an_erased_member_are_never_sent(braze_connection, sandbox):
    # Given a member changed and with an event queued, not yet sent
    member = make_member("m-1")
    services.outbox_enqueue(member_id=member.pk, kind="event",
                            payload={"name": "late_event", "time": timezone.now().isoformat()})
    # When it is erased before the flush
    erase("m-1")
    flush()

    # Then no /users/track request went out, the outbox is gone, and Braze was told to delete the profile
    assert endpoint_calls(sandbox, TRACK) == 0
    assert not OutboxItem.objects.exists()
    assert endpoint_calls(sandbox, DELETE) == 1
    assert sandbox.user("m-1") is None


def test_a_member_erased_after_its_batch_was_built_is_left_out_of_the_request(braze_connection, sandbox, monkeypatch):
    make_member("m-1")
    make_member("m-2")
    built = delivery.build

    def build_then_erase(*args, **kwargs):
        result = built(*args, **kwargs)
        erase("m-1")  # the erasure commits while the worker holds the built batch
        return result

    monkeypatch.setattr(delivery, "build", build_then_erase)
    flush()

    assert sandbox.user("m-1") is None
    assert sandbox.user("m-2") is not None


def test_a_request_on_its_way_when_the_member_is_erased_is_undone_by_a_second_deletion(
        braze_connection, sandbox, monkeypatch):
    make_member("m-1")
    post = delivery._post

    def post_then_erase_and_delete(client, data):
        answer = post(client, data)  # the profile is (re)created in Braze
        if b'"m-1"' in data and not BrazeDeletion.objects.exists():
            erase("m-1")
            flush_deletions_now()  # the deletion overtakes the answer of the track request
        return answer

    def flush_deletions_now():
        from braze_integration import erasure

        connection = Connection.objects.get()
        erasure.deletions_deliver(connection, services.client_for(connection), backoff=delivery.backoff_seconds)

    monkeypatch.setattr(delivery, "_post", post_then_erase_and_delete)
    flush()
    flush()

    # Then the profile the late request recreated is deleted: the deletion waited for the claim that held
    # the member (it could not overtake the answer), and went once the claim was over.
    assert sandbox.user("m-1") is None
    assert BrazeDeletion.objects.get().times_sent == 1
    assert endpoint_calls(sandbox, DELETE) == 1


def test_the_check_after_an_answer_reads_only_erasures_since_the_full_check(braze_connection):
    """After a full check of a claim (``since``: its time less the margin), the check after each answer
    reads erasures from then on only: one that is older was seen by the full check already."""
    from datetime import timedelta

    from braze_integration import erasure
    from loyaltysync.models import ErasureRecord

    make_member("m-1")
    make_member("m-2")
    erase("m-1")
    erase("m-2")
    ErasureRecord.objects.filter(member_hash=loyalty.member_id_hash("m-2")).update(
        erased_at=timezone.now() - erasure.TOMBSTONE_MARGIN - timedelta(minutes=1))
    since = timezone.now() - erasure.TOMBSTONE_MARGIN

    assert erasure.tombstoned(["m-1", "m-2", "m-3"]) == {"m-1", "m-2"}
    assert erasure.tombstoned(["m-1", "m-2", "m-3"], since=since) == {"m-1"}
    assert erasure.tombstoned(["m-2", "m-3"], since=since) == set()


def test_a_member_erased_while_its_request_was_on_its_way_is_deleted_again_even_when_sending_is_interrupted(
        braze_connection, sandbox, monkeypatch):
    from braze_integration import erasure

    make_member("m-1")
    make_member("m-2")
    post = delivery._post
    calls = []

    def erase_then_interrupt(client, data):
        calls.append(1)
        answer = post(client, data)  # the profile is (re)created in Braze
        if b'"m-1"' in data:
            erase("m-1")
            connection = Connection.objects.get()
            erasure.deletions_deliver(connection, services.client_for(connection), backoff=delivery.backoff_seconds)
            # The deletion waits for the claim that holds m-1 (until its lease has run out at the latest).
            assert BrazeDeletion.objects.get().status == DeletionStatus.PENDING
            assert BrazeDeletion.objects.get().next_attempt_at > timezone.now()
            raise KeyboardInterrupt  # Ctrl-C (or SIGTERM) right after Braze took the request
        return answer

    monkeypatch.setattr(delivery, "_post", erase_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        services.member_sync_now(member_ids=list(Member.objects.values_list("pk", flat=True)), force=True)

    # Then the deletion of the profile the request recreated is due now: the claim is over
    deletion = BrazeDeletion.objects.get()
    assert deletion.external_id == "m-1" and deletion.status == DeletionStatus.PENDING
    assert deletion.next_attempt_at is None


def test_an_erasure_while_a_claim_holds_the_member_is_sent_after_its_lease_if_the_worker_never_ends_it(
        braze_connection, sandbox, settings):
    """The worker may be dead with a request on its way (an attack SIGKILLed one): the deletion then goes
    once the lease has run out and the request's answer could have come, so it comes after that request."""
    from datetime import timedelta

    from braze_integration import erasure, queue
    from braze_integration.models import MemberSyncState

    member = make_member("m-1")
    MemberSyncState.objects.filter(pk=member.pk).update(status="pending")
    queue.claim(limit=1)  # a worker that then died
    held_until = MemberSyncState.objects.get(pk=member.pk).claimed_until

    erase("m-1")

    deletion = BrazeDeletion.objects.get()
    assert deletion.next_attempt_at == held_until + timedelta(seconds=settings.BRAZE_HTTP_TIMEOUT + 5)
    assert not erasure.deletions_due_exist()
    BrazeDeletion.objects.update(next_attempt_at=timezone.now())  # that time has come
    connection = Connection.objects.get()
    erasure.deletions_deliver(connection, services.client_for(connection), backoff=delivery.backoff_seconds)
    assert BrazeDeletion.objects.get().status == DeletionStatus.DELETED


@pytest.mark.usefixtures("q_sync")
def test_an_erasure_while_a_worker_lingers_for_member_changes_is_sent_at_once(braze_connection, sandbox, settings):
    from datetime import timedelta

    from braze_integration.models import FlushSlot

    settings.BRAZE_SYNC_CONCURRENCY = 2
    make_member("m-1")
    assert sandbox.user("m-1") is not None
    # A worker lingers and promised to look for member changes: saves queue no task; its looks do not see deletions.
    FlushSlot.objects.create(busy_until=timezone.now() + timedelta(seconds=15),
                             watching_until=timezone.now() + timedelta(seconds=10))

    erase("m-1")

    assert sandbox.user("m-1") is None
    assert BrazeDeletion.objects.get().status == DeletionStatus.DELETED

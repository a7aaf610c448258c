"""One member whose data makes Braze answer 5xx every time: the batch it rides in is halved until
only that member is retried and dead-lettered; its neighbours go through (sandbox over real HTTP)."""

from __future__ import annotations

from braze_integration import services
from braze_integration.models import Connection, MemberSyncState, SyncStatus

from .members import make_member


def run_rounds(connection: Connection, rounds: int) -> None:
    """Flush as often as a day of retries would, without waiting for the backoff."""
    for _ in range(rounds):
        services.sync_flush(max_wait=0)
        MemberSyncState.objects.update(next_attempt_at=None)
        Connection.objects.filter(pk=connection.pk).update(paused_until=None)


def test_given_one_member_braze_always_fails_for_then_only_that_member_is_dead_lettered(braze_connection, sandbox):
    braze_connection.max_attempts = 3
    braze_connection.save()
    members = [make_member(f"n-{i}") for i in range(8)]
    culprit = make_member("n-bad")
    sandbox.set_faults(fail_external_ids=["n-bad"])

    run_rounds(braze_connection, braze_connection.max_attempts + 2)

    states = {s.member.member_id: s for s in MemberSyncState.objects.select_related("member")}
    assert states["n-bad"].status == SyncStatus.DEAD
    assert "Internal Server Error" in states["n-bad"].last_error
    assert all(states[m.member_id].status == SyncStatus.SYNCED for m in members)
    assert all(sandbox.user(m.member_id)["attributes"]["loyalty_first_name"] == "Ada" for m in members)
    assert sandbox.user(culprit.member_id) is None


def test_given_braze_down_for_everyone_then_halving_stops_early_and_everyone_is_retried(braze_connection, sandbox):
    members = [make_member(f"d-{i}") for i in range(16)]
    MemberSyncState.objects.update(attempts=1)  # each already failed once: the next 5xx halves the batch
    sandbox.set_faults(error_rate=1.0)

    services.sync_flush(max_wait=0)

    # The batch of 16, its first half (8), that half's halves (4 + 4), and so on down to one member
    # and its sibling: the second half of each split is not halved again.
    assert sandbox.stats()["requests"] <= 2 * 5
    states = MemberSyncState.objects.filter(pk__in=[m.pk for m in members])
    assert not states.filter(status=SyncStatus.SYNCED).exists()
    assert not states.filter(status=SyncStatus.DEAD).exists()

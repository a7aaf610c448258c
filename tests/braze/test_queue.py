"""The sync queue: saved changes and their fold, pending marks, claims and leases, lost requests,
finishing a claim, flush slots."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from braze_integration import queue
from braze_integration.models import (
    Connection,
    FlushSlot,
    MemberChange,
    MemberSyncState,
    OutboxItem,
    RequestOutcome,
    SyncRequest,
    SyncStatus,
)
from loyaltysync.models import Member

pytestmark = pytest.mark.django_db


@pytest.fixture
def members():
    # No active connection: saving members marks nothing, the tests mark them themselves.
    return [Member.objects.create(member_id=f"q-{i}") for i in range(3)]


def test_given_a_member_marked_twice_then_one_pending_row_with_a_higher_version(members):
    queue.mark_pending([members[0].pk])
    first = MemberSyncState.objects.get(pk=members[0].pk)
    queue.mark_pending([members[0].pk])

    state = MemberSyncState.objects.get(pk=members[0].pk)
    assert state.status == SyncStatus.PENDING
    assert state.version == first.version + 1
    assert state.dirty_since == first.dirty_since  # the oldest change decides how late it is


def test_given_changes_saved_then_the_fold_makes_each_member_pending_once_and_deletes_them(members):
    queue.changes_note([members[0].pk, members[1].pk])
    queue.changes_note([members[0].pk])  # changed twice before any worker looked

    folded = queue.changes_fold()

    assert folded == 3
    assert MemberChange.objects.count() == 0
    states = {s.pk: s for s in MemberSyncState.objects.all()}
    assert set(states) == {members[0].pk, members[1].pk}
    assert all(s.status == SyncStatus.PENDING and s.version == 1 and s.dirty_since for s in states.values())
    assert queue.changes_fold() == 0  # nothing twice


def test_given_a_synced_member_changed_then_the_fold_makes_it_pending_at_a_higher_version(members):
    queue.mark_pending([members[0].pk])
    token, _ = queue.claim(limit=1)
    queue.finish_synced(token, member_ids=[members[0].pk], sent_values={members[0].pk: {"a": 1}}, request_id=None,
                        partial=False)
    queue.changes_note([members[0].pk])

    _, ids = queue.claim(limit=10)  # a claim folds first

    state = MemberSyncState.objects.get(pk=members[0].pk)
    assert ids == [members[0].pk]
    assert (state.version, state.synced_version, state.last_sent_values) == (2, 1, {"a": 1})


def test_given_a_change_saved_while_the_members_request_was_out_then_it_stays_pending(members):
    queue.changes_note([members[0].pk])
    token, _ = queue.claim(limit=1)
    queue.changes_note([members[0].pk])  # saved while the request was out, folded after the answer

    queue.finish_synced(token, member_ids=[members[0].pk], sent_values={members[0].pk: {"a": 1}}, request_id=None,
                        partial=False)

    assert queue.claimable_exists()
    assert MemberSyncState.objects.get(pk=members[0].pk).status == SyncStatus.PENDING


def test_given_a_change_of_a_member_erased_since_then_the_fold_leaves_it_out(members):
    queue.changes_note([members[0].pk, members[1].pk])
    Member.objects.filter(pk=members[0].pk).delete()

    assert queue.changes_fold() == 2
    assert list(MemberSyncState.objects.values_list("pk", flat=True)) == [members[1].pk]
    assert MemberChange.objects.count() == 0


def test_a_change_row_keeps_no_id_counter_and_an_id_given_again_after_a_fold_folds_right(members):
    """On SQLite the change table is a plain rowid table: a save writes no ``sqlite_sequence`` row (a page
    more in each save's commit), and an id may come again once the fold deleted its row."""
    queue.changes_note([members[0].pk])
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM sqlite_sequence WHERE name = %s", [MemberChange._meta.db_table])
            assert cursor.fetchone()[0] == 0
    assert queue.changes_fold() == 1

    queue.changes_note([members[1].pk])
    queue.changes_note([members[0].pk])

    assert queue.changes_fold() == 2
    assert MemberChange.objects.count() == 0
    versions = dict(MemberSyncState.objects.values_list("pk", "version"))
    assert versions == {members[0].pk: 2, members[1].pk: 1}


def test_given_more_changes_than_one_fold_takes_then_all_are_folded(members, monkeypatch):
    monkeypatch.setattr(queue, "FOLD_BATCH", 2)
    for member in members:
        queue.changes_note([member.pk])

    assert queue.changes_fold() == 3
    assert MemberSyncState.objects.filter(status=SyncStatus.PENDING).count() == 3


def test_given_claimed_members_then_no_other_claim_gets_them_until_released(members):
    queue.mark_pending([m.pk for m in members])

    token, ids = queue.claim(limit=10)
    _, again = queue.claim(limit=10)
    queue.release(token, [members[0].pk])
    _, after_release = queue.claim(limit=10)

    assert sorted(ids) == sorted(m.pk for m in members)
    assert again == []
    assert after_release == [members[0].pk]


def test_given_a_claim_whose_lease_ran_out_then_its_unanswered_request_is_lost_and_its_events_ambiguous(members):
    connection = Connection.objects.create(name="c", instance_url="https://rest.fra-01.braze.eu")
    queue.mark_pending([members[0].pk])
    token, _ = queue.claim(limit=1)
    item = OutboxItem.objects.create(member=members[0], kind="event", payload={"name": "x", "time": "2024-01-01"})
    request = SyncRequest.objects.create(connection=connection, claim_token=token, errors=[item.pk])
    MemberSyncState.objects.filter(pk=members[0].pk).update(claimed_until=timezone.now() - timedelta(seconds=1))

    _, ids = queue.claim(limit=1)

    request.refresh_from_db()
    assert ids == [members[0].pk]
    assert request.outcome == RequestOutcome.LOST and request.maybe_delivered
    assert OutboxItem.objects.get(pk=item.pk).ambiguous_sends == 1


def test_given_a_member_changed_during_its_send_then_finishing_leaves_it_pending(members):
    queue.mark_pending([m.pk for m in members[:2]])
    token, _ = queue.claim(limit=10)
    queue.mark_pending([members[1].pk])  # changed again while the request was out

    done = queue.finish_synced(token, member_ids=[m.pk for m in members[:2]],
                               sent_values={members[0].pk: {"a": 1}}, request_id=None, partial=False)

    assert done == 2
    synced, changed = (MemberSyncState.objects.get(pk=m.pk) for m in members[:2])
    assert synced.status == SyncStatus.SYNCED and synced.last_sent_values == {"a": 1} and synced.claim_token is None
    assert changed.status == SyncStatus.PENDING


def test_given_a_refused_member_then_finishing_it_failed_keeps_brazes_words(members):
    queue.mark_pending([members[0].pk])
    token, _ = queue.claim(limit=1)

    queue.finish_failed(token, errors={members[0].pk: "Braze refused it"}, request_id=None)

    state = MemberSyncState.objects.get(pk=members[0].pk)
    assert (state.status, state.last_error, state.claim_token) == (SyncStatus.FAILED, "Braze refused it", None)


def test_states_ensure_adds_missing_rows_and_leaves_existing_ones(members):
    queue.mark_pending([members[0].pk])
    queue.mark_pending([members[0].pk])

    added = queue.states_ensure([m.pk for m in members])

    assert MemberSyncState.objects.count() == 3
    assert MemberSyncState.objects.get(pk=members[0].pk).version == 2
    assert added is None or sorted(added) == [members[1].pk, members[2].pk]  # None: SQLite before 3.35


def test_given_rows_born_claimed_then_the_claim_takes_them_unread_and_picks_only_the_others(members):
    """A resync's chunk: ``states_ensure`` says which rows it added under the token; the claim returns
    those without the pick's read and row locks, and still picks (and stamps) the member that had a row."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    queue.mark_pending([members[0].pk])
    token = uuid.uuid4()
    born = queue.states_ensure([m.pk for m in members], claimed_by=token)
    if born is None:
        pytest.skip("this SQLite cannot return the inserted rows (before 3.35)")

    with CaptureQueriesContext(connection) as picked_too:
        _, claimed = queue.claim(limit=3, member_ids=[m.pk for m in members], include_synced=True, token=token,
                                 held=born)
    with CaptureQueriesContext(connection) as born_only:
        again = uuid.uuid4()
        _, claimed_again = queue.claim(limit=2, member_ids=born, include_synced=True, token=again, held=born)

    assert sorted(claimed) == sorted(m.pk for m in members)  # each once
    assert set(MemberSyncState.objects.values_list("claim_token", flat=True)) == {token}
    picks = [q["sql"] for q in picked_too.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")
             and "claim_token" in q["sql"]]
    assert len(picks) == 1  # the born rows were left out of it: else ``claimed`` would hold them twice
    assert sorted(claimed_again) == sorted(born)
    assert not [q for q in born_only.captured_queries if "membersyncstate" in q["sql"]]


def test_flush_slots_are_limited_to_the_concurrency_and_freed_on_release(settings):
    settings.BRAZE_SYNC_CONCURRENCY = 2

    first, second, third = queue.slot_take(), queue.slot_take(), queue.slot_take()
    queue.slot_release(first)

    assert first and second and third is None
    assert queue.slot_take() == first
    assert FlushSlot.objects.count() == 2


def test_next_due_in_is_the_soonest_retry(members):
    queue.mark_pending([members[0].pk])
    MemberSyncState.objects.filter(pk=members[0].pk).update(next_attempt_at=timezone.now() + timedelta(seconds=30))

    assert not queue.claimable_exists()
    assert 25 < queue.next_due_in() <= 30


def test_given_a_worker_promised_to_look_again_then_saves_ask_nothing_until_shortly_before_then(
        settings, django_assert_num_queries):
    from braze_integration import services

    settings.BRAZE_SYNC_CONCURRENCY = 1
    slot = FlushSlot.objects.create(busy_until=timezone.now() + timedelta(seconds=15),
                                    watching_until=timezone.now() + timedelta(seconds=5))

    assert services.flush_request() is False  # reads the slots once (all busy) and the promise with them
    with django_assert_num_queries(0):
        assert services.flush_request() is False

    FlushSlot.objects.filter(pk=slot.pk).update(watching_until=timezone.now() + timedelta(milliseconds=100))
    queue.slot_take()  # a later read sees the promise end soon: within the margin, saves ask again
    with django_assert_num_queries(1):
        assert services.flush_request() is False


def test_given_a_released_slot_then_its_promise_is_gone(settings):
    settings.BRAZE_SYNC_CONCURRENCY = 1
    slot_id = queue.slot_take()
    queue.slot_renew(slot_id, watching_until=timezone.now() + timedelta(seconds=5))
    queue.slot_release(slot_id)

    assert queue.slot_take() == slot_id
    assert not queue.slot_watched()


def test_given_a_held_member_then_it_is_claimed_only_after_the_hold_is_released_or_over(members):
    queue.mark_pending([members[0].pk, members[1].pk])
    queue.hold([members[0].pk], until=timezone.now() + timedelta(seconds=60))
    queue.hold([members[1].pk], until=timezone.now() - timedelta(seconds=1))  # a hold nobody released, over
    queue.hold([members[2].pk], until=timezone.now() + timedelta(seconds=60))  # no state yet: no change to send

    _, ids = queue.claim(limit=10)
    assert ids == [members[1].pk]
    assert MemberSyncState.objects.get(pk=members[2].pk).status == SyncStatus.SYNCED

    queue.unhold([members[0].pk])
    _, ids = queue.claim(limit=10)
    assert ids == [members[0].pk]


def test_given_a_hold_released_before_any_fold_then_the_member_is_not_held(members):
    """A hold is a change row until a fold takes it: a release that comes first must end it there, or
    the fold would put it on the state row and the member would wait for the hold to run out."""
    queue.changes_note([members[0].pk])
    queue.hold([members[0].pk], until=timezone.now() + timedelta(seconds=60))

    assert queue.unhold([members[0].pk]) == 1
    _, ids = queue.claim(limit=10)
    assert ids == [members[0].pk]


def test_given_a_hold_on_a_synced_member_then_folding_it_changes_nothing_but_the_hold(members):
    queue.mark_pending([members[0].pk])
    MemberSyncState.objects.filter(pk=members[0].pk).update(status=SyncStatus.SYNCED, synced_version=1)
    queue.hold([members[0].pk], until=timezone.now() + timedelta(seconds=60))

    queue.changes_fold()
    state = MemberSyncState.objects.get(pk=members[0].pk)
    assert (state.status, state.version, state.held_until is not None) == (SyncStatus.SYNCED, 1, True)


def test_the_members_of_a_request_are_logged_with_one_look_at_which_still_exist(members):
    from django.db import connection as db_connection
    from django.test.utils import CaptureQueriesContext

    from braze_integration.models import SyncRequestMember

    connection = Connection.objects.create(name="c", instance_url="https://rest.iad-01.braze.com")
    request = SyncRequest.objects.create(connection=connection)
    gone = members[2].pk
    members[2].delete()

    with CaptureQueriesContext(db_connection) as queries:
        queue.request_members_write(request.pk, [(m.pk, 1, "") for m in members])

    member_table = Member._meta.db_table
    looks = [q for q in queries.captured_queries if q["sql"].startswith("SELECT") and member_table in q["sql"]]
    assert len(looks) == 1  # one query for the whole request, not one per member
    logged = set(SyncRequestMember.objects.filter(request=request).values_list("member_id", flat=True))
    assert logged == {members[0].pk, members[1].pk} and gone not in logged


@pytest.mark.django_db(transaction=True)
def test_new_state_rows_wait_for_an_erasure_still_open_and_then_leave_its_member_out():
    import threading
    import time
    import uuid

    from django.db import connection as db_connection
    from django.db import connections, transaction

    from loyaltysync.services import member_erase

    if db_connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers: an erasure cannot be open while the insert runs")
    erased, kept = Member.objects.create(member_id="q-erased"), Member.objects.create(member_id="q-kept")
    opened = threading.Event()

    def erase_slowly():
        try:
            with transaction.atomic():
                member_erase(member_id=erased.member_id, erased_by="test", source="admin")
                opened.set()
                time.sleep(1.0)
        finally:
            connections.close_all()

    thread = threading.Thread(target=erase_slowly)
    thread.start()
    assert opened.wait(10)
    queue.states_ensure([erased.pk, kept.pk], claimed_by=uuid.uuid4())  # waits for the erasure's commit
    thread.join(10)

    assert set(MemberSyncState.objects.values_list("pk", flat=True)) == {kept.pk}


def test_given_a_worker_promised_to_look_again_then_a_save_queues_no_second_task_though_a_slot_is_free(
        settings):
    from braze_integration import services

    settings.BRAZE_SYNC_CONCURRENCY = 2
    FlushSlot.objects.create(busy_until=timezone.now() + timedelta(seconds=15),
                             watching_until=timezone.now() + timedelta(seconds=5))

    assert services.flush_request() is False  # the lingering worker's next look sees the change
    assert FlushSlot.objects.filter(busy_until__gte=timezone.now()).count() == 1
    assert services.flush_request(trust_promise=False) is True  # a task asking for help still gets one
    assert FlushSlot.objects.filter(busy_until__gte=timezone.now()).count() == 2


def test_given_two_tasks_linger_then_the_one_of_the_higher_slot_gives_way(settings):
    from braze_integration import services

    settings.BRAZE_SYNC_CONCURRENCY = 2
    first, second = queue.slot_take(), queue.slot_take()
    queue.slot_renew(first, watching_until=timezone.now() + timedelta(seconds=5))

    assert queue.slot_watched_by_another(second) and not queue.slot_watched_by_another(first)
    found, promised = services._linger_for_work(second, 5.0, None)  # returns at once: the first one watches
    assert (found, promised) == (False, None)
    assert FlushSlot.objects.get(pk=second).watching_until is None


def test_given_a_claim_took_every_waiting_member_then_the_task_lingers_before_claiming_again(
        braze_connection, sandbox, monkeypatch):
    from braze_integration import services

    from .members import make_member

    make_member("m-1")  # no worker runs here: the member waits
    claims, looks = [], []
    real_claim = queue.claim
    monkeypatch.setattr(queue, "claim", lambda **kwargs: claims.append(real_claim(**kwargs)) or claims[-1])

    def a_change_arrives_once(slot_id, seconds, promised):
        looks.append(len(claims))
        if len(looks) == 1:
            make_member("m-2")
            return True, promised
        return False, promised

    monkeypatch.setattr(services, "_linger_for_work", a_change_arrives_once)
    result = services.sync_flush(slot_id=queue.slot_take(), linger=1.0)

    assert result.report.members_sent == 2
    # Each claim that took everything waiting is followed by a look, not by a claim that finds nothing;
    # the one empty claim comes after the last look found nothing, before the slot is given back.
    assert [len(ids) for _, ids in claims] == [1, 1, 0] and looks == [1, 2]


def test_given_another_task_lingers_then_a_task_that_sent_what_was_waiting_ends_without_claiming_again(
        braze_connection, sandbox, monkeypatch, settings):
    from braze_integration import services

    from .members import make_member

    settings.BRAZE_SYNC_CONCURRENCY = 4
    make_member("m-1")  # no worker runs here: the member waits
    watching, mine = queue.slot_take(), queue.slot_take()
    queue.slot_renew(watching, watching_until=timezone.now() + timedelta(seconds=10))
    claims = []
    real_claim = queue.claim
    monkeypatch.setattr(queue, "claim", lambda **kwargs: claims.append(real_claim(**kwargs)) or claims[-1])

    assert mine is not None
    result = services.sync_flush(slot_id=mine, linger=1.0)

    assert result.report.members_sent == 1
    assert [len(ids) for _, ids in claims] == [1]  # the lingering task sees what comes next
    assert FlushSlot.objects.get(pk=mine).busy_until is None


@pytest.mark.django_db(transaction=True)  # the test's own transaction would be the caller's
def test_new_state_rows_and_a_claim_commit_without_waiting_for_the_disk_unless_in_a_callers_transaction(members):
    """A crash of the database server that loses either leaves the members as they were (no row, or due)."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    def lazy(queries):
        return [q for q in queries.captured_queries if "synchronous_commit" in q["sql"]]

    with CaptureQueriesContext(connection) as own:
        queue.states_ensure([members[0].pk])
        queue.claim(limit=1)
    with CaptureQueriesContext(connection) as callers, transaction.atomic():
        queue.states_ensure([members[1].pk])
        queue.claim(limit=1)

    assert len(lazy(own)) == (2 if connection.vendor == "postgresql" else 0)  # SQLite's WAL mode needs nothing
    assert lazy(callers) == []


def test_a_born_row_whose_request_may_have_reached_braze_is_not_forgotten(braze_connection):
    """Given a state row a resync added (born) whose request's answer was lost (``maybe_sent``), when the
    resync stops and forgets the rows it did not send, then that row stays: Braze may hold the member's
    values, and the next send must carry them (a null included)."""
    from braze_integration.models import MemberSyncState
    from loyaltysync.models import Member

    sent, untouched = (Member.objects.create(member_id=f"born-{n}") for n in (1, 2))
    MemberSyncState.objects.filter(pk__in=[sent.pk, untouched.pk]).delete()
    born = queue.states_ensure([sent.pk, untouched.pk]) or [sent.pk, untouched.pk]
    MemberSyncState.objects.filter(pk=sent.pk).update(maybe_sent=["loyalty_points"], attempts=1)

    assert queue.unsent_forget(born) == 1
    assert list(MemberSyncState.objects.filter(pk__in=born).values_list("pk", flat=True)) == [sent.pk]

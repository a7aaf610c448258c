"""The sync end to end: member saves in a real database reach the sandbox over real HTTP."""

from __future__ import annotations

import pytest
from django.db import transaction

from braze_integration.models import MemberSyncState, SyncStatus
from loyaltysync.models import Member, Tier

from .members import make_member

pytestmark = pytest.mark.usefixtures("q_sync")


def test_given_mappings_of_every_type_when_a_member_is_created_then_the_sandbox_holds_every_attribute_typed(
        braze_connection, sandbox):
    gold = Tier.objects.create(name="Gold", points_threshold=0)
    make_member(tier=gold)

    profile = sandbox.user("m-1")

    assert profile is not None
    attrs = profile["attributes"]
    assert attrs["loyalty_points"] == 120
    assert attrs["loyalty_purchase_total"] == 99.9
    assert attrs["loyalty_tier"] == "Gold"
    assert attrs["loyalty_opted_in"] is True
    assert attrs["loyalty_birthday"] == "1990-05-17"
    assert attrs["loyalty_last_products"] == ["sku-1"]
    assert attrs["loyalty_summary"] == {"tier": "Gold", "points": 120, "pending": 0, "purchases": 0}
    assert attrs["loyalty_last_items"] == [{"product_id": "sku-1", "price": 49.95, "quantity": 2}]
    assert attrs["loyalty_first_name"] == "Ada"
    state = MemberSyncState.objects.get(member__member_id="m-1")
    assert state.status == SyncStatus.SYNCED
    assert state.last_synced_at is not None


def test_given_a_synced_member_when_an_unmapped_field_changes_then_nothing_is_sent(braze_connection, sandbox):
    member = make_member()
    requests_before = sandbox.stats()["requests"]

    member.phone = "+49 30 1234"  # not mapped
    member.save()

    assert sandbox.stats()["requests"] == requests_before


def test_given_a_synced_member_when_one_mapped_field_changes_then_all_mapped_fields_are_sent(braze_connection, sandbox):
    member = make_member(tier=Tier.objects.create(name="Silver", points_threshold=0))
    sandbox.reset()  # forget the first sync, keep the connection

    member.first_name = "Grace"
    member.save()

    attrs = sandbox.user("m-1")["attributes"]
    assert attrs["loyalty_first_name"] == "Grace"
    assert attrs["loyalty_points"] == 120  # unchanged, but sent too (Antavo's rule)
    assert len(attrs) == 9


def test_given_changed_fields_mode_when_one_mapped_field_changes_then_only_it_is_sent(braze_connection, sandbox):
    braze_connection.send_mode = "changed_fields"
    braze_connection.save()
    member = make_member()
    sandbox.reset()

    member.first_name = "Grace"
    member.save()

    assert sandbox.user("m-1")["attributes"] == {"loyalty_first_name": "Grace"}


def test_given_a_rolled_back_save_then_nothing_is_sent(braze_connection, sandbox):
    member = make_member()
    sandbox.reset()

    with pytest.raises(RuntimeError), transaction.atomic():
        member.first_name = "Rolled back"
        member.save()
        raise RuntimeError("abort")

    assert sandbox.stats()["requests"] == 0
    assert MemberSyncState.objects.get(pk=member.pk).status == SyncStatus.SYNCED


def test_given_a_rolled_back_save_when_the_same_object_is_saved_again_then_its_values_are_sent(
        braze_connection, sandbox):
    member = make_member()

    with pytest.raises(RuntimeError), transaction.atomic():
        member.first_name = "Retried"
        member.save()
        raise RuntimeError("the caller fails after the save")
    member.save()  # a retry with the same object: the value reaches the database now

    assert sandbox.user("m-1")["attributes"]["loyalty_first_name"] == "Retried"
    assert MemberSyncState.objects.get(pk=member.pk).status == SyncStatus.SYNCED


def test_given_a_save_rolled_back_with_its_savepoint_when_saved_again_in_the_transaction_then_it_is_sent(
        braze_connection, sandbox):
    member = make_member()

    with transaction.atomic():
        member.last_name = "Kept"
        member.save()
        try:
            with transaction.atomic():  # a savepoint
                member.first_name = "Retried"
                member.save()
                raise RuntimeError("abort the savepoint")
        except RuntimeError:
            pass
        member.save()

    assert sandbox.user("m-1")["attributes"]["loyalty_first_name"] == "Retried"


def test_given_a_stale_object_when_it_is_saved_with_an_unmapped_change_then_the_newer_mapped_value_stays(
        braze_connection, sandbox):
    """A script holding a member object while the member changes elsewhere: its save writes only what it
    changed. Writing every field would put the old first name back in the database without a change to
    sync, and Braze would keep the newer one for good."""
    member = make_member()
    stale = Member.objects.get(pk=member.pk)
    member.first_name = "Grace"
    member.points_spendable = 500
    member.save()

    stale.phone = "+49 30 1234"  # not mapped
    stale.save()

    stored = Member.objects.get(pk=member.pk)
    assert (stored.first_name, stored.points_spendable, stored.phone) == ("Grace", 500, "+49 30 1234")
    attrs = sandbox.user("m-1")["attributes"]
    assert (attrs["loyalty_first_name"], attrs["loyalty_points"]) == ("Grace", 500)


def test_given_a_json_field_changed_in_place_when_the_member_is_saved_then_the_change_is_stored_and_sent(
        braze_connection, sandbox):
    member = Member.objects.get(pk=make_member().pk)

    member.last_purchase["items"].append({"product_id": "sku-2", "price": 5, "quantity": 1})
    member.save()

    assert len(Member.objects.get(pk=member.pk).last_purchase["items"]) == 2
    assert sandbox.user("m-1")["attributes"]["loyalty_last_products"] == ["sku-1", "sku-2"]


def test_given_a_member_loaded_without_a_mapped_field_when_the_field_is_set_then_it_is_sent(braze_connection, sandbox):
    member = Member.objects.only("member_id").get(pk=make_member().pk)

    member.first_name = "Grace"
    member.save()

    assert sandbox.user("m-1")["attributes"]["loyalty_first_name"] == "Grace"


def test_given_a_member_erased_meanwhile_when_a_stale_object_is_saved_then_it_is_not_brought_back(
        braze_connection, sandbox):
    from django.db import DatabaseError

    member = make_member()
    stale = Member.objects.get(pk=member.pk)
    Member.objects.filter(pk=member.pk).delete()

    stale.phone = "+49 30 1234"
    with pytest.raises(DatabaseError):
        stale.save()

    assert not Member.objects.filter(member_id="m-1").exists()


def test_given_many_saves_of_one_member_in_a_row_then_the_profile_ends_up_current(braze_connection, sandbox):
    member = make_member()
    for points in range(1, 21):
        member.points_spendable = points
        member.save()

    assert sandbox.user("m-1")["attributes"]["loyalty_points"] == 20
    assert MemberSyncState.objects.get(pk=member.pk).status == SyncStatus.SYNCED


def test_given_200_members_saved_in_one_transaction_then_they_go_in_requests_of_at_most_75(braze_connection, sandbox):
    with transaction.atomic():
        for index in range(200):
            make_member(f"bulk-{index:03d}")

    assert sandbox.stats()["users"] == 200
    sizes = [r["attributes"] + r["events"] + r["purchases"] for r in sandbox.requests()]
    assert max(sizes) <= 75
    assert sum(sizes) == 200
    assert len(sizes) == 3


def test_given_a_save_that_trusted_a_workers_promise_then_the_worker_sends_it_after_the_promise(
        braze_connection, sandbox, monkeypatch):
    import datetime as dt

    from django.utils import timezone

    from braze_integration import queue, services

    member = make_member()
    promised = timezone.now() + dt.timedelta(milliseconds=300)
    monkeypatch.setattr(queue, "_watched_until", promised)  # as a save read it from a lingering worker's slot
    member.first_name = "Grace"
    member.save()  # queues no task: the worker promised to look again
    assert sandbox.user("m-1")["attributes"]["loyalty_first_name"] == "Ada"

    services._promise_keep(promised)  # the worker, leaving, keeps its promise

    assert sandbox.user("m-1")["attributes"]["loyalty_first_name"] == "Grace"


def test_given_another_task_still_lingers_then_a_task_keeping_its_promise_leaves_the_change_to_it(
        braze_connection, sandbox, monkeypatch, settings):
    import datetime as dt

    from django.utils import timezone

    from braze_integration import queue, services
    from braze_integration.models import FlushSlot

    settings.BRAZE_SYNC_CONCURRENCY = 4
    member = make_member()
    promised = timezone.now() + dt.timedelta(milliseconds=400)
    monkeypatch.setattr(queue, "_watched_until", promised)
    member.first_name = "Grace"
    member.save()  # trusted the promise: no task
    # Another task lingers and promised to look for changes for a while yet.
    FlushSlot.objects.create(busy_until=timezone.now() + dt.timedelta(seconds=15),
                             watching_until=timezone.now() + dt.timedelta(seconds=10))

    services._promise_keep(promised)

    # No second task (run inline here, it would have sent the change): the lingering one's next look does.
    assert sandbox.user("m-1")["attributes"]["loyalty_first_name"] == "Ada"
    assert FlushSlot.objects.filter(busy_until__gte=timezone.now()).count() == 1

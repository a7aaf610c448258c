"""The sync end to end: member saves in a real database reach the sandbox over real HTTP."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import transaction

from braze_integration import services
from braze_integration.models import MemberSyncState, SyncRequest, SyncStatus
from loyaltysync.models import Member, Tier

pytestmark = pytest.mark.usefixtures("q_sync")


def make_member(member_id: str = "m-1", **fields) -> Member:
    defaults = dict(first_name="Ada", birth_date=dt.date(1990, 5, 17), points_spendable=120,
                    purchase_total=Decimal("99.90"),
                    last_purchase={"transaction_id": "t1", "total": 99.9, "currency": "EUR",
                                   "items": [{"product_id": "sku-1", "price": 49.95, "quantity": 2}]})
    defaults.update(fields)
    return Member.objects.create(member_id=member_id, **defaults)


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


def test_given_a_value_braze_refuses_then_that_member_fails_with_a_clear_error_and_the_rest_go_through(
        braze_connection, sandbox):
    with transaction.atomic():
        make_member("good-1")
        make_member("bad-1", last_purchase={"items": ["not an object"]})  # Braze wants objects here
        make_member("good-2")

    assert sandbox.user("good-1") is not None
    assert sandbox.user("good-2") is not None
    assert sandbox.user("bad-1") is None
    bad = MemberSyncState.objects.get(member__member_id="bad-1")
    assert bad.status == SyncStatus.FAILED
    assert bad.last_error == "Cannot send loyalty_last_items[0]: expected an object"


def test_given_braze_refuses_one_object_then_only_that_member_is_marked_failed_with_brazes_words(
        braze_connection, sandbox):
    from braze_integration.models import OutboxItem

    with transaction.atomic():
        good = make_member("good-1")
        bad = make_member("bad-1")
        # Our builder passes ad-hoc attributes through; Braze refuses a nested key with a '.'.
        services.outbox_enqueue(member_id=bad.pk, kind="attributes", payload={"attributes": {"prefs": {"a.b": 1}}})

    assert sandbox.user("good-1")["attributes"]["loyalty_first_name"] == "Ada"
    assert MemberSyncState.objects.get(pk=good.pk).status == SyncStatus.SYNCED
    bad_state = MemberSyncState.objects.get(pk=bad.pk)
    assert bad_state.status == SyncStatus.FAILED
    assert bad_state.last_error.startswith("Braze refused the attributes:")
    assert OutboxItem.objects.get(member=bad).status == "failed"
    request = SyncRequest.objects.get(outcome="partial")
    assert request.errors and request.errors[0]["input_array"] == "attributes"


def test_given_an_event_that_cannot_be_built_then_it_fails_alone(braze_connection, sandbox):
    from braze_integration.models import OutboxItem

    member = make_member()
    services.outbox_enqueue(member_id=member.pk, kind="event", payload={"name": "x", "time": "not a time"})

    item = OutboxItem.objects.get()
    assert item.status == "failed"
    assert "not an ISO 8601 date" in item.last_error
    assert sandbox.user("m-1")["events"] == []


def test_every_request_is_logged_with_brazes_answer(braze_connection, sandbox):
    make_member()

    request = SyncRequest.objects.get()
    assert request.outcome == "success"
    assert request.http_status == 201
    assert request.attributes_count == 1
    assert request.members.get().member.member_id == "m-1"


def test_given_braze_refuses_the_request_as_too_big_then_it_is_split_until_everything_goes_through(
        braze_connection, settings):
    """An account on a smaller object limit answers 400 "Max Input Length Exceeded" for our batches:
    the batch is halved until Braze takes it, and nothing is lost."""
    from braze_integration.sandbox import SandboxConfig, SandboxServer
    from tests.conftest import SANDBOX_KEY

    with SandboxServer(SandboxConfig(api_keys={SANDBOX_KEY}, max_objects=20)) as small:
        settings.BRAZE_LOCAL_ENDPOINTS = [*settings.BRAZE_LOCAL_ENDPOINTS, small.url]
        braze_connection.instance_url = small.url
        braze_connection.save()
        with transaction.atomic():
            for index in range(60):
                make_member(f"split-{index:02d}")

        assert len(small.store.profile_keys()) == 60
        assert SyncRequest.objects.filter(outcome="rejected", message="Max Input Length Exceeded").exists()
        assert not MemberSyncState.objects.exclude(status=SyncStatus.SYNCED).exists()


def test_given_an_unexpected_error_mid_batch_then_the_members_are_given_back_at_once(braze_connection, monkeypatch):
    from braze_integration import delivery

    member = make_member("boom")
    MemberSyncState.objects.filter(pk=member.pk).update(status=SyncStatus.PENDING)  # a change waiting

    def explode(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(delivery.Deliverer, "deliver", explode)
    with pytest.raises(RuntimeError):
        services.sync_flush()

    state = MemberSyncState.objects.get(pk=member.pk)
    assert state.claim_token is None and state.claimed_until is None
    assert state.status == SyncStatus.PENDING

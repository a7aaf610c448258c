"""Building: the mapping plan, one member's objects, outbox objects and Braze's data points."""

from __future__ import annotations

import pytest
from django.db import transaction

from braze_integration import building, queue, services
from braze_integration.models import MemberSyncState, OutboxItem, SyncStatus

from .members import make_member


@pytest.mark.parametrize(("obj", "points"), [
    ({"external_id": "m-1", "loyalty_points": 1, "loyalty_tier": "Gold"}, 2),
    ({"external_id": "m-1", "country": "DE", "language": "de", "loyalty_points": 1}, 1),  # free keys
    ({"external_id": "m-1", "summary": {"tier": "Gold", "points": 1, "nested": {"a": 1, "b": 2}}}, 4),
    ({"external_id": "m-1", "items": [{"a": 1, "b": 2}, {}]}, 3),  # an empty object still counts once
    ({"external_id": "m-1", "loyalty_last_products": ["a", "b"]}, 1),  # an array of scalars is one
    ({"external_id": "m-1", "count": {"inc": 1}}, 1),
], ids=["flat", "country-language-free", "nested-object", "array-of-objects", "array", "object-operator"])
def test_data_points_count_like_braze_bills_them(obj, points):
    assert building.data_points_of(obj) == points


def test_given_changed_fields_mode_then_only_the_changed_values_are_built(braze_connection, sandbox):
    braze_connection.send_mode = "changed_fields"
    braze_connection.save()
    member = make_member("b-1")
    queue.changes_fold()  # a worker looked: the member has its state row
    MemberSyncState.objects.filter(pk=member.pk).update(
        status=SyncStatus.PENDING, last_sent_values={"loyalty_points": 120, "loyalty_first_name": "Old"})
    token, _ = queue.claim(limit=1, member_ids=[member.pk])

    works, users = building.build(braze_connection, token, building.MappingPlan.load(braze_connection))

    [work] = works
    assert work.sent_values["loyalty_first_name"] == "Ada" and "loyalty_points" not in work.sent_values
    [(array, obj, owner)] = users[0].objects
    assert array == "attributes" and obj["external_id"] == "b-1" and owner is work


def test_given_more_outbox_items_than_fit_then_the_rest_wait_for_the_next_round(braze_connection):
    member = make_member("b-2")
    with transaction.atomic():
        for index in range(building.MAX_OUTBOX_PER_MEMBER + 5):
            services.outbox_enqueue(member_id=member.pk, kind="event",
                                    payload={"name": f"e{index}", "time": "2024-01-01T00:00:00Z"})
    token, _ = queue.claim(limit=1, member_ids=[member.pk])

    works, users = building.build(braze_connection, token, building.MappingPlan.load(braze_connection))

    assert len(works[0].outbox) == building.MAX_OUTBOX_PER_MEMBER
    assert sum(1 for array, _, _ in users[0].objects if array == "events") == building.MAX_OUTBOX_PER_MEMBER
    assert OutboxItem.objects.count() == building.MAX_OUTBOX_PER_MEMBER + 5


def test_the_preview_is_the_body_the_next_sync_would_send(braze_connection):
    member = make_member("b-3")
    services.outbox_enqueue(member_id=member.pk, kind="event", payload={"name": "welcome", "time": "2024-01-01"})

    body = building.member_body_preview(braze_connection, member)

    assert body["attributes"][0]["external_id"] == "b-3" and body["attributes"][0]["loyalty_points"] == 120
    assert [event["name"] for event in body["events"]] == ["welcome"]


@pytest.mark.usefixtures("q_sync")
def test_given_a_value_braze_refuses_then_only_that_attribute_stays_behind_with_a_clear_error(
        braze_connection, sandbox):
    with transaction.atomic():
        make_member("good-1")
        make_member("bad-1", last_purchase={"items": ["not an object"]})  # Braze wants objects here
        make_member("good-2")

    assert sandbox.user("good-1") is not None
    assert sandbox.user("good-2") is not None
    bad_profile = sandbox.user("bad-1")["attributes"]
    assert "loyalty_last_items" not in bad_profile and bad_profile["loyalty_first_name"] == "Ada"
    bad = MemberSyncState.objects.get(member__member_id="bad-1")
    assert bad.status == SyncStatus.SYNCED and bad.last_error_kind == "unsendable"
    assert bad.last_error.endswith("loyalty_last_items[0]: expected an object")


@pytest.mark.usefixtures("q_sync")
def test_given_an_external_id_braze_refuses_then_that_member_fails_with_a_clear_error(braze_connection, sandbox):
    make_member("\U0001F600" * 255)  # 1,020 bytes in UTF-8: stored by hand, past the services' door

    bad = MemberSyncState.objects.get(member__member_id="\U0001F600" * 255)
    assert bad.status == SyncStatus.FAILED
    assert bad.last_error == "Cannot send external_id: must be at most 987 bytes"


@pytest.mark.usefixtures("q_sync")
def test_given_an_event_that_cannot_be_built_then_it_fails_alone(braze_connection, sandbox):
    from braze_integration.models import OutboxItem

    member = make_member()
    services.outbox_enqueue(member_id=member.pk, kind="event", payload={"name": "x", "time": "not a time"})

    item = OutboxItem.objects.get()
    assert item.status == "failed"
    assert "not an ISO 8601 date" in item.last_error
    assert sandbox.user("m-1")["events"] == []


def test_given_a_new_member_with_empty_fields_then_its_first_sync_sends_no_nulls(braze_connection):
    from loyaltysync.models import Member

    member = Member.objects.create(member_id="b-new", first_name="Ada")  # no tier, birthday or purchases
    token, _ = queue.claim(limit=1, member_ids=[member.pk])

    works, users = building.build(braze_connection, token, building.MappingPlan.load(braze_connection))

    [(array, obj, _)] = users[0].objects
    assert array == "attributes"
    assert None not in obj.values()
    assert "loyalty_birthday" not in obj and "loyalty_tier" not in obj
    assert obj["loyalty_first_name"] == "Ada" and obj["loyalty_points"] == 0
    assert None not in works[0].sent_values.values()


def test_given_a_value_braze_has_when_it_is_emptied_then_null_is_sent_to_remove_it(braze_connection):
    member = make_member("b-emptied", birth_date=None)
    queue.changes_fold()  # a worker looked: the member has its state row
    MemberSyncState.objects.filter(pk=member.pk).update(
        status=SyncStatus.PENDING, last_sent_values={"loyalty_birthday": "1990-05-17", "loyalty_points": 120})
    token, _ = queue.claim(limit=1, member_ids=[member.pk])

    _, users = building.build(braze_connection, token, building.MappingPlan.load(braze_connection))

    [(_, obj, _)] = users[0].objects
    assert obj["loyalty_birthday"] is None  # Braze removes it
    assert "loyalty_tier" not in obj  # never had a value: nothing to remove


@pytest.mark.parametrize(("values", "last_sent", "send_all", "expected"), [
    ({"a": 1, "b": None}, {}, True, {"a": 1}),
    ({"a": None, "b": None}, {}, True, {}),
    ({"a": 1, "b": None}, {"a": 1}, True, {}),
    ({"a": 2, "b": None, "c": 3}, {"a": 1, "c": 3}, False, {"a": 2}),
    ({"a": None, "b": None}, {"a": 1}, True, {"a": None}),
    # PostgreSQL's jsonb keeps a last-sent 1e308 as its digits: the same float, not a change
    ({"a": 1e308, "b": 1.5e19}, {"a": 10**308, "b": 15 * 10**18}, False, {}),
    ({"a": 2.5}, {"a": 2}, False, {"a": 2.5}),
], ids=["first-sync", "all-empty", "unchanged", "changed-only", "removal", "float-kept-as-digits", "float-changed"])
def test_attributes_to_send(values, last_sent, send_all, expected):
    assert building.attributes_to_send(values, last_sent, send_all=send_all, force=False) == expected


def test_json_written_once_in_build_is_the_json_the_request_and_the_stored_values_would_have(braze_connection):
    """A member's attributes object is written to JSON once, in ``build``; the request takes that text and
    the stored last-sent values take it too. Both must be what encoding the objects afresh gives."""
    import json

    from braze_integration import delivery, payloads

    plain = make_member("b-plain", first_name="Zoë 🦊 \"quoted\"")
    with_adhoc = make_member("b-adhoc")
    services.outbox_enqueue(member_id=with_adhoc.pk, kind="attributes",
                            payload={"attributes": {"loyalty_points": 999, "last_store": "Köln"}})
    with_event = make_member("b-event")
    services.outbox_enqueue(member_id=with_event.pk, kind="event", payload={"name": "welcome", "time": "2024-01-01"})
    token, _ = queue.claim(limit=3, member_ids=[plain.pk, with_adhoc.pk, with_event.pk])

    works, users = building.build(braze_connection, token, building.MappingPlan.load(braze_connection))
    [plan] = payloads.plan_requests(users)

    assert payloads.encode_plan(plan, delivery._object_json) == payloads.encode(plan.body())
    by_id = {w.external_id: w for w in works}
    # Ad-hoc attributes ride on the object: it is written afresh, and their values (999 points) are sent.
    assert by_id["b-adhoc"].values_json is None and delivery._object_json(by_id["b-adhoc"]) is None
    sent = {obj["external_id"]: obj for obj in json.loads(payloads.encode_plan(plan, delivery._object_json))["attributes"]}
    assert sent["b-adhoc"]["loyalty_points"] == 999 and sent["b-adhoc"]["last_store"] == "Köln"
    for external_id in ("b-plain", "b-event"):
        work = by_id[external_id]
        assert work.values_json is not None
        assert json.loads(work.last_sent_after_json()) == work.last_sent_after() == work.sent_values


def test_a_member_braze_was_sent_values_before_stores_the_merge_not_the_request_alone(braze_connection):
    member = make_member("b-again")
    queue.changes_fold()  # a worker looked: the member has its state row
    MemberSyncState.objects.filter(pk=member.pk).update(
        status=SyncStatus.PENDING, last_sent_values={"loyalty_points": 1, "old_attribute": "kept"})
    token, _ = queue.claim(limit=1, member_ids=[member.pk])

    [work], _ = building.build(braze_connection, token, building.MappingPlan.load(braze_connection))

    assert work.last_sent_after_json() == {**{"old_attribute": "kept"}, **work.sent_values}


@pytest.mark.parametrize(("values", "last_sent", "maybe_sent", "expected"), [
    ({"a": 1, "b": 2}, {"a": 1, "b": 2}, ["a"], {"a": 1}),  # unchanged, but a lost request carried it
    ({"a": None, "b": 2}, {"b": 2}, ["a"], {"a": None}),  # never accepted, now empty: a null
    ({"a": 1, "b": 2}, {"a": 1, "b": 2}, [], {}),
])
def test_attributes_a_lost_request_may_have_carried_count_as_changed(values, last_sent, maybe_sent, expected):
    assert building.attributes_to_send(values, last_sent, send_all=False, force=False, maybe_sent=maybe_sent) == expected


def test_maybe_sent_true_names_every_mapped_attribute():
    assert set(building.maybe_sent_names(True, {"a": 1, "b": None})) == {"a", "b"}
    assert building.maybe_sent_names(None, {"a": 1}) == ()

"""Pure tests of the sandbox's profile store: Braze write semantics and statistics."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from braze_integration.sandbox.store import ProfileStore, profile_key
from braze_integration.sandbox.validation import ValidatedRequest, validate_track_request

TIME = "2026-11-25T10:00:00Z"


@pytest.fixture
def store() -> ProfileStore:
    return ProfileStore(max_array_length=5)


def write(store: ProfileStore, *attribute_objects: dict[str, Any], **arrays: list[dict[str, Any]]) -> Any:
    """Validate like the server does, then apply."""
    body = {"attributes": list(attribute_objects), **arrays}
    return store.apply(validate_track_request(body))


def attributes_of(store: ProfileStore, key: str = "member-1") -> dict[str, Any]:
    profile = store.profile(key)
    assert profile is not None, f"no profile {key}"
    return profile["attributes"]


def member(**values: Any) -> dict[str, Any]:
    return {"external_id": "member-1", **values}


# --- scalars, null, inc -------------------------------------------------------------------------


def test_given_new_external_id_when_attributes_applied_then_profile_created_with_them(
    store: ProfileStore,
) -> None:
    result = write(store, member(first_name="Ada", points=10, opted_in=True, member_since=TIME))
    assert attributes_of(store) == {"first_name": "Ada", "points": 10, "opted_in": True, "member_since": TIME}
    assert result.attributes_processed == 1
    assert store.profile_keys() == ["member-1"]


def test_given_existing_attribute_when_null_sent_then_attribute_removed(store: ProfileStore) -> None:
    write(store, member(tier="gold", points=1))
    write(store, member(tier=None))
    assert attributes_of(store) == {"points": 1}


def test_given_missing_attribute_when_inc_sent_then_starts_from_zero(store: ProfileStore) -> None:
    write(store, member(visits={"inc": 3}))
    write(store, member(visits={"inc": 2}))
    assert attributes_of(store)["visits"] == 5


def test_given_string_attribute_when_inc_sent_then_value_kept(store: ProfileStore) -> None:
    write(store, member(visits="many"))
    write(store, member(visits={"inc": 2}))
    assert attributes_of(store)["visits"] == "many"


def test_given_identifiers_and_control_keys_when_applied_then_not_stored_as_attributes(
    store: ProfileStore,
) -> None:
    write(store, member(address={"city": "Oslo"}, _merge_objects=True, _update_existing_only=False))
    assert attributes_of(store) == {"address": {"city": "Oslo"}}


# --- arrays ---------------------------------------------------------------------------------------


def test_given_array_with_duplicates_when_set_then_deduplicated_in_order(store: ProfileStore) -> None:
    write(store, member(tags=["b", "a", "b", "c", "a"]))
    assert attributes_of(store)["tags"] == ["b", "a", "c"]


def test_given_array_of_one_and_true_when_set_then_both_kept(store: ProfileStore) -> None:
    write(store, member(flags=[1, True, 1]))
    assert attributes_of(store)["flags"] == [1, True]


def test_given_array_when_add_and_remove_sent_then_set_updated(store: ProfileStore) -> None:
    write(store, member(tags=["a", "b"]))
    write(store, member(tags={"add": ["c", "a"]}))
    write(store, member(tags={"remove": ["b", "zzz"]}))
    assert attributes_of(store)["tags"] == ["a", "c"]


def test_given_missing_array_when_add_sent_then_array_created(store: ProfileStore) -> None:
    write(store, member(tags={"add": ["x"]}))
    assert attributes_of(store)["tags"] == ["x"]


def test_given_full_array_when_add_sent_then_oldest_elements_dropped(store: ProfileStore) -> None:
    write(store, member(tags=["1", "2", "3", "4", "5"]))
    write(store, member(tags={"add": ["6", "7"]}))
    assert attributes_of(store)["tags"] == ["3", "4", "5", "6", "7"]


# --- nested objects ---------------------------------------------------------------------------------


def test_given_nested_object_when_sent_without_merge_then_whole_object_replaced(store: ProfileStore) -> None:
    write(store, member(address={"city": "Oslo", "zip": "0150"}))
    write(store, member(address={"city": "Bergen"}))
    assert attributes_of(store)["address"] == {"city": "Bergen"}


def test_given_nested_object_when_sent_with_merge_then_deep_merged(store: ProfileStore) -> None:
    write(store, member(address={"city": "Oslo", "geo": {"lat": 59.9, "lon": 10.7}}))
    write(store, member(address={"geo": {"lat": 60.4}, "zip": "5003"}, _merge_objects=True))
    assert attributes_of(store)["address"] == {
        "city": "Oslo",
        "geo": {"lat": 60.4, "lon": 10.7},
        "zip": "5003",
    }


def test_given_time_inside_nested_object_when_stored_then_kept_as_sent(store: ProfileStore) -> None:
    write(store, member(address={"moved_in": {"$time": TIME}}))
    assert attributes_of(store)["address"] == {"moved_in": {"$time": TIME}}


# --- arrays of objects --------------------------------------------------------------------------


def pets(store: ProfileStore) -> list[dict[str, Any]]:
    return attributes_of(store)["pets"]


def test_given_array_of_objects_when_set_then_replaced(store: ProfileStore) -> None:
    write(store, member(pets=[{"id": 1, "name": "Rex"}]))
    write(store, member(pets=[{"id": 2, "name": "Tom"}]))
    assert pets(store) == [{"id": 2, "name": "Tom"}]


def test_given_array_of_objects_when_dollar_add_then_appended(store: ProfileStore) -> None:
    write(store, member(pets=[{"id": 1}]))
    write(store, member(pets={"$add": [{"id": 2}, {"id": 3}]}))
    assert pets(store) == [{"id": 1}, {"id": 2}, {"id": 3}]


def test_given_array_of_objects_when_dollar_remove_then_matching_elements_dropped(
    store: ProfileStore,
) -> None:
    write(store, member(pets=[{"id": 1}, {"id": 2}, {"id": 1, "twin": True}]))
    write(store, member(pets={"$remove": [{"$identifier_key": "id", "$identifier_value": 1}]}))
    assert pets(store) == [{"id": 2}]


def test_given_array_of_objects_when_dollar_update_then_matching_element_merged(store: ProfileStore) -> None:
    write(store, member(pets=[{"id": 1, "name": "Rex", "vet": {"city": "Oslo"}}, {"id": 2, "name": "Tom"}]))
    update = {"$identifier_key": "id", "$identifier_value": 1, "$new_object": {"age": 3, "vet": {"zip": "1"}}}
    write(store, member(pets={"$update": [update]}, _merge_objects=True))
    assert pets(store) == [
        {"id": 1, "name": "Rex", "vet": {"city": "Oslo", "zip": "1"}, "age": 3},
        {"id": 2, "name": "Tom"},
    ]


def test_given_two_matching_elements_when_dollar_update_then_they_do_not_share_state(
    store: ProfileStore,
) -> None:
    write(store, member(pets=[{"id": 1, "kind": "dog"}, {"id": 2, "kind": "dog"}]))
    both = {"$identifier_key": "kind", "$identifier_value": "dog", "$new_object": {"vet": {"city": "Oslo"}}}
    write(store, member(pets={"$update": [both]}, _merge_objects=True))
    first = {"$identifier_key": "id", "$identifier_value": 1, "$new_object": {"vet": {"zip": "1"}}}
    write(store, member(pets={"$update": [first]}, _merge_objects=True))
    assert pets(store)[0]["vet"] == {"city": "Oslo", "zip": "1"}
    assert pets(store)[1]["vet"] == {"city": "Oslo"}


# --- identifiers and _update_existing_only ---------------------------------------------------------


def test_given_update_existing_only_for_unknown_user_when_applied_then_nothing_created(
    store: ProfileStore,
) -> None:
    result = write(store, member(tier="gold", _update_existing_only=True))
    assert store.profile("member-1") is None
    assert result.attributes_processed == 1  # skipped silently, as in Braze
    assert store.stats()["data_points"] == 0


def test_given_update_existing_only_for_known_user_when_applied_then_updated(store: ProfileStore) -> None:
    write(store, member(tier="silver"))
    write(store, member(tier="gold", _update_existing_only=True))
    assert attributes_of(store)["tier"] == "gold"


def test_given_alias_and_braze_id_when_applied_then_profiles_keyed_by_them(store: ProfileStore) -> None:
    alias = {"alias_name": "m-9", "alias_label": "loyalty"}
    write(store, {"user_alias": alias, "tier": "gold"}, {"braze_id": "5f2a", "tier": "silver"})
    assert attributes_of(store, "alias:loyalty:m-9") == {"tier": "gold"}
    assert attributes_of(store, "braze_id:5f2a") == {"tier": "silver"}
    assert profile_key({"external_id": "member-1"}) == "member-1"


# --- events and purchases ------------------------------------------------------------------------


def test_given_event_when_applied_then_stored_as_sent_with_received_at(store: ProfileStore) -> None:
    event = {"external_id": "member-1", "name": "points_earned", "time": TIME, "properties": {"points": 5}}
    store.apply(validate_track_request({"events": [event]}), received_at="2026-11-25T10:00:01.000Z")
    [stored] = store.profile("member-1")["events"]
    assert stored == {**event, "received_at": "2026-11-25T10:00:01.000Z"}


def test_given_purchase_without_quantity_when_applied_then_quantity_is_one(store: ProfileStore) -> None:
    purchase = {"external_id": "member-1", "product_id": "v10", "currency": "EUR", "price": 10, "time": TIME}
    write(store, purchases=[purchase])
    [stored] = store.profile("member-1")["purchases"]
    assert stored["quantity"] == 1 and stored["product_id"] == "v10" and "received_at" in stored


def test_given_event_with_update_existing_only_for_unknown_user_when_applied_then_not_stored(
    store: ProfileStore,
) -> None:
    event = {"external_id": "member-1", "name": "e", "time": TIME, "_update_existing_only": True}
    write(store, events=[event])
    assert store.profile("member-1") is None
    assert store.stats()["events_stored"] == 0


def test_given_one_request_when_applied_then_attributes_come_before_events(store: ProfileStore) -> None:
    # The event may only touch existing profiles; the attributes of the same request create it.
    event = {"external_id": "member-1", "name": "joined", "time": TIME, "_update_existing_only": True}
    write(store, member(tier="gold"), events=[event])
    assert len(store.profile("member-1")["events"]) == 1


# --- data points and statistics ------------------------------------------------------------------


def test_given_scalar_attributes_when_applied_then_one_data_point_each_except_free_ones(
    store: ProfileStore,
) -> None:
    result = write(
        store, member(first_name="Ada", tier="gold", country="NO", language="nb", points={"inc": 1})
    )
    assert result.data_points == 3  # first_name, tier, points; country and language are free


def test_given_nested_object_when_applied_then_each_leaf_counts(store: ProfileStore) -> None:
    result = write(
        store, member(address={"city": "Oslo", "geo": {"lat": 1, "lon": 2}, "since": {"$time": TIME}})
    )
    assert result.data_points == 4


def test_given_array_of_objects_when_applied_then_each_property_of_each_object_counts(
    store: ProfileStore,
) -> None:
    result = write(store, member(pets=[{"id": 1, "name": "Rex"}, {"id": 2, "name": "Tom", "age": 3}]))
    assert result.data_points == 5


def test_given_scalar_array_and_deletes_when_applied_then_array_is_one_point_and_deletes_free(
    store: ProfileStore,
) -> None:
    result = write(store, member(tags=["a", "b", "c"], old=None))
    assert result.data_points == 1


def test_given_events_and_purchases_when_applied_then_no_data_points(store: ProfileStore) -> None:
    event = {"external_id": "member-1", "name": "e", "time": TIME, "properties": {"a": 1}}
    purchase = {"external_id": "member-1", "product_id": "p", "currency": "EUR", "price": 1, "time": TIME}
    result = write(store, events=[event], purchases=[purchase])
    assert result.data_points == 0
    assert store.stats()["data_points"] == 0


def test_given_several_requests_when_stats_read_then_totals_add_up(store: ProfileStore) -> None:
    event = {"external_id": "member-2", "name": "e", "time": TIME}
    write(store, member(tier="gold", points=1), events=[event, event])
    store.record_request(status=201, object_counts={"attributes": 1, "events": 2})
    store.record_request(status=400, object_counts={"attributes": 80}, errors=3)
    store.record_request(status=429, object_counts={})
    store.record_request(status=503, object_counts={}, fault="error")
    store.record_request(status=None, object_counts={}, fault="ack_lost")
    stats = store.stats()
    assert stats["requests"] == 5
    assert stats["requests_by_status"] == {"201": 1, "400": 1, "429": 1, "503": 1, "no_answer": 1}
    assert stats["objects"] == {"attributes": 1, "events": 2, "purchases": 0}
    assert stats["data_points"] == 2
    assert stats["events_stored"] == 2
    assert stats["users"] == 2
    assert stats["errors"] == 3
    assert stats["max_objects_in_request"] == 80
    assert stats["rate_limited"] == 1
    assert stats["faults_injected"] == 2
    assert stats["ack_lost"] == 1


def test_given_more_requests_than_the_log_keeps_when_read_then_newest_kept_oldest_first() -> None:
    store = ProfileStore(request_log_size=3)
    for count in range(1, 6):
        store.record_request(status=201, object_counts={"attributes": count})
    assert [entry["attributes"] for entry in store.recent_requests()] == [3, 4, 5]
    assert [entry["attributes"] for entry in store.recent_requests(limit=2)] == [4, 5]
    assert store.recent_requests(limit=0) == []
    assert set(store.recent_requests(limit=1)[0]) >= {"status", "attributes", "events", "purchases", "at"}


def test_given_data_when_reset_then_profiles_stats_and_log_empty(store: ProfileStore) -> None:
    write(store, member(tier="gold"))
    store.record_request(status=201, object_counts={"attributes": 1})
    store.reset()
    assert store.profile_keys() == []
    assert store.stats()["requests"] == 0 and store.stats()["data_points"] == 0
    assert store.recent_requests() == []


def test_given_snapshot_when_profile_changes_later_then_snapshot_unchanged(store: ProfileStore) -> None:
    write(store, member(address={"city": "Oslo"}))
    snapshot = store.profile("member-1")
    write(store, member(address={"city": "Bergen"}, _merge_objects=True))
    assert snapshot["attributes"]["address"] == {"city": "Oslo"}


def test_given_many_threads_incrementing_when_applied_then_no_update_is_lost(store: ProfileStore) -> None:
    request = validate_track_request({"attributes": [member(visits={"inc": 1})]})

    def hammer() -> None:
        for _ in range(500):
            store.apply(ValidatedRequest(attributes=[dict(obj) for obj in request.attributes]))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert attributes_of(store)["visits"] == 4000
    assert store.stats()["objects"]["attributes"] == 4000


def test_given_profiles_when_summarised_then_counts_per_profile_sorted(store: ProfileStore) -> None:
    event = {"external_id": "a", "name": "e", "time": TIME}
    write(store, {"external_id": "b", "x": 1, "y": 2}, events=[event])
    [first, second] = store.profile_summaries()
    assert (first.key, first.attribute_count, first.event_count) == ("a", 0, 1)
    assert (second.key, second.attribute_count, second.event_count) == ("b", 2, 0)


def test_given_profiles_when_deleted_then_gone_counted_and_unknown_keys_ignored(store: ProfileStore) -> None:
    write(store, member(x=1), {"external_id": "member-2", "x": 1})
    assert store.delete(["member-1", "member-1", "nobody"]) == 1
    assert store.profile_keys() == ["member-2"]
    assert store.stats()["users_deleted"] == 1 and store.stats()["users"] == 1


def test_given_delete_request_recorded_when_stats_and_log_read_then_counted_apart(store: ProfileStore) -> None:
    store.record_request(status=201, object_counts={"attributes": 1})
    store.record_delete_request(status=201, identifiers=3, deleted=2)
    store.record_delete_request(status=None, identifiers=1, fault="timeout")
    stats = store.stats()
    assert stats["requests"] == 3
    assert stats["requests_by_endpoint"] == {"/users/track": 1, "/users/delete": 2}
    assert stats["timeouts"] == 1
    entry = store.recent_requests()[1]
    assert (entry["endpoint"], entry["identifiers"], entry["deleted"], entry["status"]) == (
        "/users/delete", 3, 2, 201,
    )  # fmt: skip


def test_given_standard_attributes_when_applied_then_kept_canonical_and_groups_merged(store: ProfileStore) -> None:
    group = {"subscription_group_id": "g1", "subscription_state": "subscribed"}
    write(store, member(country="de", gender="o", subscription_groups=[group]))
    write(store, member(subscription_groups=[{**group, "subscription_group_id": "g2"}]))
    assert attributes_of(store) == {"country": "DE", "gender": "O", "subscription_groups": {"g1": "subscribed", "g2": "subscribed"}}

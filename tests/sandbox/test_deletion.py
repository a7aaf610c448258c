"""`POST /users/delete`: the pure body validation, then the endpoint over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from braze_integration.sandbox import SandboxServer
from braze_integration.sandbox.deletion import delete_identifier_count, validate_delete_request
from braze_integration.sandbox.validation import MAX_INPUT_LENGTH_MESSAGE, RequestRejected

from .sandbox_http import NO_PERMISSION_KEY, TRACK_ONLY_KEY, bearer, delete, member, track, user

# --- validation of the body ---------------------------------------------------------------------


def test_given_each_identifier_kind_when_validated_then_store_keys_of_the_profiles() -> None:
    assert validate_delete_request({"external_ids": ["a", "b"]}).profile_keys == ("a", "b")
    aliases = validate_delete_request({"user_aliases": [{"alias_name": "n", "alias_label": "l"}]})
    assert aliases.profile_keys == ("alias:l:n",)
    assert validate_delete_request({"braze_ids": ["b1"]}).profile_keys == ("braze_id:b1",)


def test_given_50_identifiers_when_validated_then_accepted_and_51_rejected() -> None:
    assert len(validate_delete_request({"external_ids": [f"m{i}" for i in range(50)]}).profile_keys) == 50
    with pytest.raises(RequestRejected) as rejected:
        validate_delete_request({"external_ids": [f"m{i}" for i in range(51)]})
    assert rejected.value.message.startswith(MAX_INPUT_LENGTH_MESSAGE)
    assert "51" in rejected.value.message and "50" in rejected.value.message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"external_ids": ["a"], "braze_ids": ["b"]}, "Only one of"),
        ({}, "One of 'external_ids', 'user_aliases' or 'braze_ids' must be provided"),
        ([], "must be a JSON object"),
        ({"external_ids": []}, "'external_ids' must be a non-empty array"),
        ({"external_ids": "a"}, "'external_ids' must be a non-empty array"),
        ({"external_ids": ["a", 7]}, "'external_ids[1]' must be a non-empty string"),
        ({"braze_ids": [""]}, "'braze_ids[0]' must be a non-empty string"),
        ({"user_aliases": [{"alias_name": "n"}]}, "'user_aliases[0]' must be an object"),
        ({"email_addresses": [{"email": "a@b.co"}]}, "'email_addresses' is not supported"),
    ],
)
def test_given_malformed_body_when_validated_then_rejected_naming_the_problem(body: Any, expected: str) -> None:
    with pytest.raises(RequestRejected) as rejected:
        validate_delete_request(body)
    assert expected in rejected.value.message


def test_given_any_body_when_identifiers_counted_then_every_listed_one_counts() -> None:
    assert delete_identifier_count({"external_ids": ["a", 1], "braze_ids": ["b"]}) == 3
    assert delete_identifier_count(["a"]) == 0


# --- the endpoint over HTTP -------------------------------------------------------------------------


def test_given_profiles_when_deleted_by_external_id_then_201_count_and_they_vanish(server: SandboxServer) -> None:
    track(server, {"attributes": [member("a", x=1), member("b", x=1), member("c", x=1)]})
    response = delete(server, {"external_ids": ["a", "b", "nobody"]})
    assert response.status_code == 201
    assert response.json() == {"deleted": 2, "message": "success"}
    assert user(server, "a").status_code == 404 and user(server, "b").status_code == 404
    listing = requests.get(f"{server.url}/sandbox/users", timeout=5).json()
    assert listing == {"count": 1, "external_ids": ["c"]}
    stats = requests.get(f"{server.url}/sandbox/stats", timeout=5).json()
    assert stats["users_deleted"] == 2 and stats["users"] == 1
    assert stats["requests_by_endpoint"] == {"/users/track": 1, "/users/delete": 1}


def test_given_delete_request_when_log_read_then_entry_names_endpoint_identifiers_and_deleted(
    server: SandboxServer,
) -> None:
    track(server, {"attributes": [member("a", x=1)]})
    delete(server, {"external_ids": ["a", "b"]})
    entries = requests.get(f"{server.url}/sandbox/requests", timeout=5).json()["requests"]
    assert [entry["endpoint"] for entry in entries] == ["/users/track", "/users/delete"]
    assert (entries[1]["status"], entries[1]["identifiers"], entries[1]["deleted"]) == (201, 2, 1)


def test_given_alias_and_braze_id_profiles_when_deleted_by_those_then_gone(server: SandboxServer) -> None:
    alias = {"alias_name": "n", "alias_label": "l"}
    track(server, {"attributes": [{"user_alias": alias, "x": 1}, {"braze_id": "b1", "x": 1}]})
    assert delete(server, {"user_aliases": [alias]}).json()["deleted"] == 1
    assert delete(server, {"braze_ids": ["b1"]}).json()["deleted"] == 1
    assert server.store.profile_keys() == []


def test_given_deleted_user_when_tracked_again_then_a_new_empty_profile(server: SandboxServer) -> None:
    track(server, {"attributes": [member(tier="gold", points=5)]})
    delete(server, {"external_ids": ["member-1"]})
    track(server, {"attributes": [member(points=1)]})
    assert user(server, "member-1").json()["attributes"] == {"points": 1}


@pytest.mark.parametrize(
    "body",
    [
        {"external_ids": [f"m{i}" for i in range(51)]},
        {"external_ids": ["member-1"], "braze_ids": ["b"]},
        {"phone_numbers": ["+4712345678"]},
    ],
)
def test_given_invalid_delete_body_when_posted_then_400_message_and_nothing_deleted(
    server: SandboxServer, body: dict[str, Any]
) -> None:
    track(server, {"attributes": [member(x=1)]})
    response = delete(server, body)
    assert response.status_code == 400
    assert response.json()["message"]
    assert server.store.profile_keys() == ["member-1"]


@pytest.mark.parametrize(
    ("key", "status"), [("unknown", 401), (NO_PERMISSION_KEY, 403), (TRACK_ONLY_KEY, 403)]
)
def test_given_key_without_users_delete_when_deleting_then_refused_and_nothing_deleted(
    server: SandboxServer, key: str, status: int
) -> None:
    track(server, {"attributes": [member(x=1)]})
    response = delete(server, {"external_ids": ["member-1"]}, headers=bearer(key))
    assert response.status_code == status
    if status == 403:
        assert response.json()["message"] == "Access Denied"
        assert "users.delete" in response.json()["detail"]
    else:
        assert response.json() == {"message": "Invalid API Key"}
    assert server.store.profile_keys() == ["member-1"]


def test_given_track_only_key_when_tracking_then_201(server: SandboxServer) -> None:
    response = track(server, {"attributes": [member(x=1)]}, headers=bearer(TRACK_ONLY_KEY))
    assert response.status_code == 201


def test_given_ack_lost_when_deleting_then_deleted_but_unanswered(server: SandboxServer) -> None:
    track(server, {"attributes": [member(x=1)]})
    server.update_faults(ack_lost_next=1)
    with pytest.raises(requests.ConnectionError):
        delete(server, {"external_ids": ["member-1"]})
    assert server.store.profile_keys() == []
    assert server.store.stats()["ack_lost"] == 1


def test_given_fail_next_when_deleting_then_503_and_nothing_deleted(server: SandboxServer) -> None:
    track(server, {"attributes": [member(x=1)]})
    server.update_faults(fail_next=1)
    assert delete(server, {"external_ids": ["member-1"]}).status_code == 503
    assert server.store.profile_keys() == ["member-1"]
    assert delete(server, {"external_ids": ["member-1"]}).json()["deleted"] == 1

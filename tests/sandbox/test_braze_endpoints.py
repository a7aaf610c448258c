"""Braze's endpoints over real HTTP: `/users/track` answers, refusals, rate limits and faults."""

from __future__ import annotations

import json
import time

import pytest
import requests

from braze_integration.sandbox import FaultConfig, SandboxServer
from braze_integration.sandbox.validation import MAX_INPUT_LENGTH_MESSAGE, NO_VALID_DATA_MESSAGE

from .conftest import StartServer
from .sandbox_http import (
    AUTH,
    KEY,
    NO_PERMISSION_KEY,
    RATE_LIMIT_HEADERS,
    bearer,
    delete,
    event,
    member,
    track,
    user,
)

# --- /users/track: success and per-object errors ------------------------------------------------


def test_given_valid_objects_when_posted_then_201_with_counts_and_profile_written(
    server: SandboxServer,
) -> None:
    response = track(server, {"attributes": [member(tier="gold")], "events": [event()]})
    assert response.status_code == 201
    assert response.json() == {
        "message": "success",
        "attributes_processed": 1,
        "events_processed": 1,
        "purchases_processed": 0,
    }
    profile = user(server, "member-1").json()
    assert profile["attributes"] == {"tier": "gold"}
    assert [stored["name"] for stored in profile["events"]] == ["points_earned"]


def test_given_some_invalid_objects_when_posted_then_201_applies_valid_and_lists_errors(
    server: SandboxServer,
) -> None:
    body = {
        "attributes": [member("ok", tier="gold"), member("bad", tier="x" * 256), member("ok2", tier="silver")]
    }
    response = track(server, body)
    assert response.status_code == 201
    payload = response.json()
    assert payload["attributes_processed"] == 2
    [error] = payload["errors"]
    assert (error["input_array"], error["index"]) == ("attributes", 1)
    assert "tier" in error["type"]
    assert server.store.profile_keys() == ["ok", "ok2"]


def test_given_only_invalid_objects_when_posted_then_400_with_errors_and_nothing_written(
    server: SandboxServer,
) -> None:
    response = track(server, {"events": [event(name="$bad")]})
    assert response.status_code == 400
    assert response.json()["message"] == NO_VALID_DATA_MESSAGE
    assert response.json()["errors"][0]["input_array"] == "events"
    assert server.store.profile_keys() == []


def test_given_empty_attributes_and_valid_key_when_posted_then_400_no_valid_data(
    server: SandboxServer,
) -> None:
    # The project's "Connect" check: 400 means the key works and nothing was written.
    response = track(server, {"attributes": []})
    assert response.status_code == 400
    assert response.json() == {"message": NO_VALID_DATA_MESSAGE}
    assert server.store.stats()["users"] == 0


def test_given_76_objects_when_posted_then_400_max_input_length_and_size_recorded(
    server: SandboxServer,
) -> None:
    response = track(server, {"attributes": [member(f"m{i}", x=1) for i in range(76)]})
    assert response.status_code == 400
    assert response.json()["message"] == MAX_INPUT_LENGTH_MESSAGE
    assert server.store.profile_keys() == []
    assert server.store.stats()["max_objects_in_request"] == 76


def test_given_per_array_limit_when_75_per_array_posted_then_201(start_server: StartServer) -> None:
    server = start_server(per_array_limit=75)
    body = {
        "attributes": [member(f"m{i}", x=1) for i in range(75)],
        "events": [event(f"m{i}") for i in range(75)],
    }
    assert track(server, body).status_code == 201


# --- /users/track: refusals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}]
)
def test_given_missing_or_unknown_key_when_posted_then_401_invalid_api_key(
    server: SandboxServer, headers: dict[str, str]
) -> None:
    response = track(server, {"attributes": [member(tier="gold")]}, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"message": "Invalid API Key"}
    assert server.store.profile_keys() == []


def test_given_key_without_users_track_permission_when_posted_then_403_access_denied(
    server: SandboxServer,
) -> None:
    headers = {"Authorization": f"Bearer {NO_PERMISSION_KEY}"}
    response = track(server, {"attributes": [member(tier="gold")]}, headers=headers)
    assert response.status_code == 403
    assert response.json()["message"] == "Access Denied"
    assert "users.track" in response.json()["detail"]
    assert server.store.profile_keys() == []


def test_given_wrong_content_type_when_posted_then_415(server: SandboxServer) -> None:
    body = json.dumps({"attributes": [member(x=1)]})
    response = requests.post(
        server.track_url, data=body, headers={**AUTH, "Content-Type": "text/plain"}, timeout=5
    )
    assert response.status_code == 415
    assert server.store.profile_keys() == []


def test_given_json_content_type_with_charset_when_posted_then_accepted(server: SandboxServer) -> None:
    body = json.dumps({"attributes": [member(x=1)]})
    headers = {**AUTH, "Content-Type": "application/json; charset=utf-8"}
    assert requests.post(server.track_url, data=body, headers=headers, timeout=5).status_code == 201


def test_given_body_over_the_limit_when_posted_then_413_and_connection_still_usable(
    start_server: StartServer, session: requests.Session
) -> None:
    server = start_server(max_body_bytes=1000)
    response = track(
        server,
        {"attributes": [member(note="x" * 200, **{f"a{i}": "y" * 100 for i in range(10)})]},
        session=session,
    )
    assert response.status_code == 413
    assert server.store.profile_keys() == []
    assert track(server, {"attributes": [member(x=1)]}, session=session).status_code == 201


@pytest.mark.parametrize("body", [b"{not json", b'{"attributes": [{"external_id": "m", "x": NaN}]}'])
def test_given_invalid_json_when_posted_then_400_invalid_json(server: SandboxServer, body: bytes) -> None:
    headers = {**AUTH, "Content-Type": "application/json"}
    response = requests.post(server.track_url, data=body, headers=headers, timeout=5)
    assert response.status_code == 400
    assert response.json()["message"].startswith("Invalid JSON")


# --- rate limiting --------------------------------------------------------------------------------


def test_given_rate_limit_when_exceeded_then_429_with_retry_after_and_nothing_written(
    start_server: StartServer,
) -> None:
    # An hour-long window: the test cannot straddle a window boundary.
    server = start_server(rate_limit=(2, 3600.0))
    first = track(server, {"attributes": [member("a", x=1)]})
    second = track(server, {"attributes": [member("b", x=1)]})
    third = track(server, {"attributes": [member("c", x=1)]})
    assert [first.status_code, second.status_code, third.status_code] == [201, 201, 429]
    assert [first.headers["X-RateLimit-Remaining"], second.headers["X-RateLimit-Remaining"]] == ["1", "0"]
    assert third.json() == {"message": "Rate limit exceeded"}
    assert third.headers["X-RateLimit-Limit"] == "2"
    assert 1 <= int(third.headers["Retry-After"]) <= 3600
    reset = int(third.headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 3601
    assert server.store.profile_keys() == ["a", "b"]
    assert server.store.stats()["rate_limited"] == 1


def test_given_rate_limit_when_any_track_answer_then_it_carries_the_headers(
    start_server: StartServer,
) -> None:
    server = start_server(rate_limit=(100, 3600.0))
    response = track(server, {"attributes": [member(x=1)]}, headers={})
    assert response.status_code == 401
    assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(response.headers)


def test_given_no_rate_limit_when_posted_then_no_rate_limit_headers(start_server: StartServer) -> None:
    server = start_server(rate_limit=None)
    response = track(server, {"attributes": [member(x=1)]})
    assert "X-RateLimit-Limit" not in response.headers


def test_given_default_config_when_any_track_answer_then_braze_default_limit_headers(
    server: SandboxServer,
) -> None:
    # Braze's 3,000 per 3 seconds, on successes and refusals alike.
    answers = [
        track(server, {"attributes": [member(x=1)]}),
        track(server, {"attributes": []}),
        track(server, {"attributes": [member(x=1)]}, headers={}),
        track(server, {"attributes": [member(x=1)]}, headers=bearer(NO_PERMISSION_KEY)),
    ]
    server.update_faults(fail_next=1)
    answers.append(track(server, {"attributes": [member(x=1)]}))
    assert [answer.status_code for answer in answers] == [201, 400, 401, 403, 503]
    for answer in answers:
        assert RATE_LIMIT_HEADERS <= set(answer.headers)
        assert answer.headers["X-RateLimit-Limit"] == "3000"
        assert time.time() - 1 <= int(answer.headers["X-RateLimit-Reset"]) <= time.time() + 4
    # Each answer counts against the window; a slow machine may cross into the next window (a new Reset).
    windows: dict[str, list[int]] = {}
    for answer in answers:
        windows.setdefault(answer.headers["X-RateLimit-Reset"], []).append(int(answer.headers["X-RateLimit-Remaining"]))
    for remaining in windows.values():
        assert remaining == sorted(remaining, reverse=True) and len(set(remaining)) == len(remaining)
        assert remaining[0] < 3000


def test_given_fault_rate_limit_when_set_over_http_then_it_overrides_the_default_and_off_removes_it(
    server: SandboxServer,
) -> None:
    faults_url = f"{server.url}/sandbox/faults"
    requests.post(faults_url, json={"rate_limit": "1/1h"}, timeout=5).raise_for_status()
    assert track(server, {"attributes": [member(x=1)]}).status_code == 201
    refused = track(server, {"attributes": [member(x=1)]})
    assert refused.status_code == 429 and refused.headers["X-RateLimit-Limit"] == "1"
    requests.post(faults_url, json={"rate_limit": "off"}, timeout=5).raise_for_status()
    free = track(server, {"attributes": [member(x=1)]})
    assert free.status_code == 201 and not RATE_LIMIT_HEADERS & set(free.headers)


def test_given_track_limit_exhausted_when_deleting_then_delete_has_its_own_limit(
    start_server: StartServer,
) -> None:
    server = start_server(rate_limit=(1, 3600.0))
    track(server, {"attributes": [member("a", x=1)]})
    assert track(server, {"attributes": [member("b", x=1)]}).status_code == 429
    response = delete(server, {"external_ids": ["a"]})
    assert response.status_code == 201
    assert response.headers["X-RateLimit-Limit"] == "20000"  # Braze's 20,000 a minute
    assert int(response.headers["X-RateLimit-Remaining"]) == 19999


def test_given_delete_rate_limit_when_exceeded_then_429_and_nothing_deleted(start_server: StartServer) -> None:
    server = start_server(delete_rate_limit=(1, 3600.0))
    track(server, {"attributes": [member("a", x=1), member("b", x=1)]})
    assert delete(server, {"external_ids": ["a"]}).status_code == 201
    refused = delete(server, {"external_ids": ["b"]})
    assert refused.status_code == 429 and refused.json() == {"message": "Rate limit exceeded"}
    assert "Retry-After" in refused.headers
    assert server.store.profile_keys() == ["b"]
    assert server.store.stats()["rate_limited"] == 1


# --- faults -----------------------------------------------------------------------------------------


def test_given_fail_next_two_when_posting_then_two_503s_then_success_and_no_write_before(
    server: SandboxServer,
) -> None:
    server.update_faults(fail_next=2)
    statuses = [track(server, {"attributes": [member(x=1)]}).status_code for _ in range(3)]
    assert statuses == [503, 503, 201]
    assert server.store.stats()["faults_injected"] == 2
    assert server.store.stats()["objects"]["attributes"] == 1


def test_given_error_rate_one_when_posting_then_500_or_503_and_profiles_unchanged(
    start_server: StartServer,
) -> None:
    server = start_server(faults=FaultConfig(error_rate=1.0, seed=7))
    statuses = {track(server, {"attributes": [member(x=1)]}).status_code for _ in range(20)}
    assert statuses <= {500, 503} and statuses
    assert server.store.profile_keys() == []


def test_given_latency_when_posting_then_answer_is_delayed(server: SandboxServer) -> None:
    server.update_faults(latency_ms=150)
    started = time.perf_counter()
    assert track(server, {"attributes": [member(x=1)]}).status_code == 201
    assert time.perf_counter() - started >= 0.15


def test_given_timeout_rate_one_when_posting_then_connection_closed_unanswered_and_nothing_written(
    start_server: StartServer,
) -> None:
    server = start_server(faults=FaultConfig(timeout_rate=1.0, hang_seconds=0.2))
    started = time.perf_counter()
    with pytest.raises(requests.ConnectionError):
        track(server, {"attributes": [member(x=1)]})
    assert time.perf_counter() - started >= 0.2
    assert server.store.profile_keys() == []
    assert server.store.stats()["timeouts"] == 1
    assert server.store.stats()["requests_by_status"] == {"no_answer": 1}


def test_given_ack_lost_when_posting_then_written_but_unanswered_and_next_request_answered(
    server: SandboxServer, session: requests.Session
) -> None:
    server.update_faults(ack_lost_next=1)
    with pytest.raises(requests.ConnectionError):
        track(server, {"events": [event()]}, session=session)
    # Braze has the event although the sender never heard back: a blind retry duplicates it.
    assert len(user(server, "member-1").json()["events"]) == 1
    assert track(server, {"events": [event()]}, session=session).status_code == 201
    assert len(user(server, "member-1").json()["events"]) == 2
    assert server.store.stats()["ack_lost"] == 1

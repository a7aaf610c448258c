"""The sandbox over real HTTP: a server on a free port in a thread, spoken to with `requests`."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
import requests

from braze_integration.sandbox import FaultConfig, SandboxConfig, SandboxServer
from braze_integration.sandbox.validation import MAX_INPUT_LENGTH_MESSAGE, NO_VALID_DATA_MESSAGE

KEY = "test-key"
NO_PERMISSION_KEY = "read-only-key"
TIME = "2026-11-25T10:00:00Z"
AUTH = {"Authorization": f"Bearer {KEY}"}

StartServer = Callable[..., SandboxServer]


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Start sandboxes with custom settings; all are stopped after the test."""
    servers: list[SandboxServer] = []

    def start(**settings: Any) -> SandboxServer:
        settings.setdefault("api_keys", {KEY})
        settings.setdefault("no_permission_keys", {NO_PERMISSION_KEY})
        server = SandboxServer(SandboxConfig(**settings)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(start_server: StartServer) -> SandboxServer:
    return start_server()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def track(
    server: SandboxServer,
    body: Any,
    *,
    session: requests.Session | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    return (session or requests).post(
        server.track_url, json=body, headers=AUTH if headers is None else headers, timeout=10
    )


def member(external_id: str = "member-1", **values: Any) -> dict[str, Any]:
    return {"external_id": external_id, **values}


def event(external_id: str = "member-1", **values: Any) -> dict[str, Any]:
    return {"external_id": external_id, "name": "points_earned", "time": TIME, **values}


def user(server: SandboxServer, external_id: str) -> requests.Response:
    return requests.get(f"{server.url}/sandbox/users/{quote(external_id, safe='')}", timeout=5)


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


def test_given_trailing_slash_when_posted_then_403(server: SandboxServer) -> None:
    response = requests.post(
        server.track_url + "/", json={"attributes": [member(x=1)]}, headers=AUTH, timeout=5
    )
    assert response.status_code == 403
    assert server.store.profile_keys() == []


def test_given_unknown_path_when_requested_then_404_json_message(server: SandboxServer) -> None:
    response = requests.post(f"{server.url}/users/trak", json={}, headers=AUTH, timeout=5)
    assert response.status_code == 404
    assert "message" in response.json()
    assert response.headers["Content-Length"] == str(len(response.content))


def test_given_get_on_track_when_requested_then_405(server: SandboxServer) -> None:
    assert requests.get(server.track_url, timeout=5).status_code == 405


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


def test_given_no_rate_limit_when_posted_then_no_rate_limit_headers(server: SandboxServer) -> None:
    response = track(server, {"attributes": [member(x=1)]})
    assert "X-RateLimit-Limit" not in response.headers


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


def test_given_hanging_request_when_server_stops_then_stop_does_not_wait_for_the_hang(
    start_server: StartServer,
) -> None:
    server = start_server(faults=FaultConfig(timeout_rate=1.0, hang_seconds=30))
    outcome: list[BaseException] = []

    def post() -> None:
        try:
            track(server, {"attributes": [member(x=1)]})
        except requests.RequestException as err:
            outcome.append(err)

    client = threading.Thread(target=post)
    client.start()
    time.sleep(0.2)
    started = time.perf_counter()
    server.stop()
    client.join(5)
    assert time.perf_counter() - started < 5
    assert not client.is_alive() and len(outcome) == 1


# --- keep-alive and connection handling ----------------------------------------------------------


def test_given_one_connection_when_posting_twice_then_both_answered_on_the_same_socket(
    server: SandboxServer,
) -> None:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=5)
    body = json.dumps({"attributes": [member(x=1)]})
    headers = {**AUTH, "Content-Type": "application/json"}
    try:
        connection.request("POST", "/users/track", body=body, headers=headers)
        first = connection.getresponse()
        first.read()
        local_address = connection.sock.getsockname()
        connection.request("POST", "/users/track", body=body, headers=headers)
        second = connection.getresponse()
        second.read()
        assert (first.status, second.status) == (201, 201)
        assert not first.will_close
        assert connection.sock.getsockname() == local_address
        assert first.getheader("Content-Length") is not None
    finally:
        connection.close()


def test_given_keep_alive_session_when_many_small_requests_then_no_delayed_ack_stalls(
    server: SandboxServer, session: requests.Session
) -> None:
    # With Nagle's algorithm interfering each answer waits ~40 ms for a delayed ACK:
    # 50 requests would take 2 s or more. Unhindered they take a few tens of milliseconds.
    started = time.perf_counter()
    for index in range(50):
        assert track(server, {"attributes": [member(f"m{index}", x=1)]}, session=session).status_code == 201
    assert time.perf_counter() - started < 1.5


def test_given_idle_keep_alive_connection_when_server_stops_then_its_handler_thread_ends(
    start_server: StartServer, session: requests.Session
) -> None:
    threads_before = threading.active_count()
    server = start_server()
    assert track(server, {"attributes": [member(x=1)]}, session=session).status_code == 201
    server.stop()
    deadline = time.monotonic() + 3
    while threading.active_count() > threads_before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert threading.active_count() <= threads_before


# --- inspection endpoints ---------------------------------------------------------------------------


def test_given_id_with_slash_and_space_when_fetched_url_encoded_then_found(server: SandboxServer) -> None:
    track(server, {"attributes": [member("club/member 7ø", tier="gold")]})
    response = user(server, "club/member 7ø")
    assert response.status_code == 200
    assert response.json()["external_id"] == "club/member 7ø"
    assert set(response.json()) == {"external_id", "attributes", "events", "purchases"}


def test_given_unknown_id_when_fetched_then_404_not_found(server: SandboxServer) -> None:
    response = user(server, "nobody")
    assert response.status_code == 404
    assert response.json() == {"message": "not found"}


def test_given_profiles_when_listed_then_sorted_ids_and_count(server: SandboxServer) -> None:
    track(server, {"attributes": [member("b", x=1), member("a", x=1), member("c", x=1)]})
    listing = requests.get(f"{server.url}/sandbox/users", timeout=5).json()
    assert listing == {"count": 3, "external_ids": ["a", "b", "c"]}


def test_given_requests_when_stats_fetched_then_counts_by_status_and_array(server: SandboxServer) -> None:
    track(server, {"attributes": [member(first_name="Ada", country="NO")], "events": [event(), event()]})
    track(server, {"attributes": []})
    stats = requests.get(f"{server.url}/sandbox/stats", timeout=5).json()
    assert stats["requests"] == 2
    assert stats["requests_by_status"] == {"201": 1, "400": 1}
    assert stats["objects"] == {"attributes": 1, "events": 2, "purchases": 0}
    assert stats["data_points"] == 1  # country is free
    assert stats["events_stored"] == 2
    assert stats["users"] == 1
    assert stats["max_objects_in_request"] == 3


def test_given_requests_when_log_fetched_with_limit_then_newest_entries_without_bodies(
    server: SandboxServer,
) -> None:
    track(server, {"attributes": [member(x=1)], "events": [event()]})
    track(server, {"attributes": []})
    response = requests.get(f"{server.url}/sandbox/requests", params={"limit": 1}, timeout=5).json()
    [entry] = response["requests"]
    assert entry["status"] == 400 and entry["attributes"] == 0
    everything = requests.get(f"{server.url}/sandbox/requests", timeout=5).json()["requests"]
    assert [(item["status"], item["attributes"], item["events"]) for item in everything] == [
        (201, 1, 1),
        (400, 0, 0),
    ]
    assert "body" not in entry and "at" in entry


def test_given_bad_limit_when_log_fetched_then_400(server: SandboxServer) -> None:
    assert requests.get(f"{server.url}/sandbox/requests?limit=-1", timeout=5).status_code == 400


def test_given_data_when_reset_posted_then_profiles_and_stats_empty_but_keys_kept(
    server: SandboxServer,
) -> None:
    track(server, {"attributes": [member(x=1)]})
    assert requests.post(f"{server.url}/sandbox/reset", timeout=5).status_code == 200
    assert requests.get(f"{server.url}/sandbox/users", timeout=5).json()["count"] == 0
    assert requests.get(f"{server.url}/sandbox/stats", timeout=5).json()["requests"] == 0
    assert track(server, {"attributes": [member(x=1)]}).status_code == 201


def test_given_profiles_when_overview_page_fetched_then_html_lists_escaped_ids_with_links(
    server: SandboxServer,
) -> None:
    track(server, {"attributes": [member("<b>7</b>", tier="gold", points=3)], "events": [event("<b>7</b>")]})
    response = requests.get(f"{server.url}/sandbox/", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "&lt;b&gt;7&lt;/b&gt;" in response.text and "<b>7</b>" not in response.text
    assert 'href="/sandbox/users/%3Cb%3E7%3C%2Fb%3E"' in response.text
    assert "<td>2</td><td>1</td>" in response.text  # two attributes, one event


# --- control endpoints ------------------------------------------------------------------------------


def test_given_fault_settings_posted_when_read_back_then_current_config_returned(
    server: SandboxServer,
) -> None:
    answer = requests.post(
        f"{server.url}/sandbox/faults",
        json={"error_rate": 0.2, "fail_next": 3, "rate_limit": "10/1s"},
        timeout=5,
    ).json()
    assert answer["error_rate"] == 0.2 and answer["fail_next"] == 3 and answer["rate_limit"] == "10/1s"
    assert requests.get(f"{server.url}/sandbox/faults", timeout=5).json() == answer
    assert server.rate_limit == (10, 1.0)
    requests.post(f"{server.url}/sandbox/faults", json={"rate_limit": None}, timeout=5)
    assert server.rate_limit is None
    assert server.faults.error_rate == 0.2  # unchanged by a partial update


@pytest.mark.parametrize(
    "settings",
    [{"error_rate": 2}, {"fail_next": -1}, {"bogus": 1}, {"rate_limit": "fast"}, {"error_rate": "x"}],
)
def test_given_invalid_fault_settings_when_posted_then_400_and_nothing_changed(
    server: SandboxServer, settings: dict[str, Any]
) -> None:
    before = requests.get(f"{server.url}/sandbox/faults", timeout=5).json()
    response = requests.post(f"{server.url}/sandbox/faults", json=settings, timeout=5)
    assert response.status_code == 400
    assert requests.get(f"{server.url}/sandbox/faults", timeout=5).json() == before


def test_given_fail_next_set_over_http_when_posting_then_503(server: SandboxServer) -> None:
    requests.post(f"{server.url}/sandbox/faults", json={"fail_next": 1}, timeout=5).raise_for_status()
    assert track(server, {"attributes": [member(x=1)]}).status_code == 503


def test_given_bad_credentials_when_keys_fixed_at_run_time_then_requests_accepted(
    server: SandboxServer,
) -> None:
    new_key = {"Authorization": "Bearer rotated"}
    assert track(server, {"attributes": [member(x=1)]}, headers=new_key).status_code == 401
    answer = requests.post(f"{server.url}/sandbox/keys", json={"api_keys": ["rotated"]}, timeout=5)
    assert answer.json() == {"api_keys": ["rotated"], "no_permission_keys": [NO_PERMISSION_KEY]}
    assert track(server, {"attributes": [member(x=1)]}, headers=new_key).status_code == 201
    assert track(server, {"attributes": [member(x=1)]}).status_code == 401  # the old key is gone


def test_given_malformed_keys_update_when_posted_then_400(server: SandboxServer) -> None:
    response = requests.post(f"{server.url}/sandbox/keys", json={"api_keys": "one"}, timeout=5)
    assert response.status_code == 400
    assert server.api_keys == frozenset({KEY})


# --- Python API ---------------------------------------------------------------------------------------


def test_given_context_manager_when_used_then_serves_inside_and_stops_after() -> None:
    with SandboxServer(SandboxConfig(api_keys=["k"])) as server:
        url = server.url
        assert url.startswith("http://127.0.0.1:") and server.port > 0
        response = requests.post(
            server.track_url,
            json={"attributes": [member(x=1)]},
            headers={"Authorization": "Bearer k"},
            timeout=5,
        )
        assert response.status_code == 201
        assert server.store.profile("member-1")["attributes"] == {"x": 1}
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/sandbox/stats", timeout=2)

"""HTTP plumbing over real sockets: routing of misused paths, keep-alive and connection handling."""

from __future__ import annotations

import http.client
import json
import time

import requests

from braze_integration.sandbox import SandboxServer

from .sandbox_http import (
    AUTH,
    member,
    track,
)

# --- routing -----------------------------------------------------------------------------------


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

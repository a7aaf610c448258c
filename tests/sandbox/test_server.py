"""`SandboxServer` from Python: starting, stopping and the context manager."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from braze_integration.sandbox import FaultConfig, SandboxConfig, SandboxServer

from .conftest import StartServer
from .sandbox_http import (
    member,
    track,
)

# --- life cycle ----------------------------------------------------------------------------------


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

"""Fixtures of the sandbox's own tests: sandboxes on free ports, stopped after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from braze_integration.sandbox import SandboxConfig, SandboxServer

from .sandbox_http import KEY, NO_PERMISSION_KEY, TRACK_ONLY_KEY

StartServer = Callable[..., SandboxServer]


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Start sandboxes with custom settings; all are stopped after the test."""
    servers: list[SandboxServer] = []

    def start(**settings: Any) -> SandboxServer:
        settings.setdefault("api_keys", {KEY})
        settings.setdefault("no_permission_keys", {NO_PERMISSION_KEY})
        settings.setdefault("track_only_keys", {TRACK_ONLY_KEY})
        server = SandboxServer(SandboxConfig(**settings)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(start_server: StartServer) -> SandboxServer:
    """A sandbox with the default configuration (Braze's rate limits included)."""
    return start_server()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session

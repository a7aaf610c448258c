"""Speaking to a started sandbox over real HTTP: the keys its tests use and request helpers."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from braze_integration.sandbox import SandboxServer

KEY = "test-key"
NO_PERMISSION_KEY = "read-only-key"
TRACK_ONLY_KEY = "track-only-key"
TIME = "2026-11-25T10:00:00Z"
AUTH = {"Authorization": f"Bearer {KEY}"}
RATE_LIMIT_HEADERS = {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


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


def delete(
    server: SandboxServer,
    body: Any,
    *,
    session: requests.Session | None = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    return (session or requests).post(
        server.delete_url, json=body, headers=AUTH if headers is None else headers, timeout=10
    )


def member(external_id: str = "member-1", **values: Any) -> dict[str, Any]:
    return {"external_id": external_id, **values}


def event(external_id: str = "member-1", **values: Any) -> dict[str, Any]:
    return {"external_id": external_id, "name": "points_earned", "time": TIME, **values}


def user(server: SandboxServer, external_id: str) -> requests.Response:
    return requests.get(f"{server.url}/sandbox/users/{quote(external_id, safe='')}", timeout=5)

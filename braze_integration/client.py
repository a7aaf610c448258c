"""The Braze transport: the only module that speaks HTTP to Braze.

It knows HTTP and Braze's status codes, nothing of the ORM. One keep-alive connection pool per
endpoint, a timeout on every call, no retries and no redirects followed, and every failure turned
into the project's own exception (``braze_integration.errors``) with the response attached.

It posts with urllib3, the HTTP library under ``requests``: ``requests`` added about 0.8 ms of CPU to
every request (sessions, hooks, cookies, adapters), and the thread that sends shares the GIL with
the one recording answers. Proxy and CA settings come from the environment, as with ``requests``.
"""

from __future__ import annotations

import email.utils
import json
import os
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import certifi
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from . import errors
from .logging import secret_register
from .payloads import encode

USER_AGENT = "loyaltysync/0.1 (+braze-integration)"
TRACK_PATH = "/users/track"
DELETE_PATH = "/users/delete"
MAX_DELETE_IDS = 50  # Braze's limit of external_ids per /users/delete request


def connection_pool(base_url: str) -> urllib3.PoolManager:
    """Keep-alive connections to one endpoint. The environment is read once, here: ``HTTPS_PROXY`` /
    ``HTTP_PROXY`` and ``NO_PROXY`` (as ``requests`` reads them), and the CA bundle from
    ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE``, else certifi's."""
    parts = urlsplit(base_url)
    # Up to 10 kept-alive connections, as requests keeps: the threads of a web process share the pool.
    options: dict[str, Any] = {"num_pools": 2, "maxsize": 10, "retries": False,
                               "ca_certs": os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
                               or certifi.where()}
    proxy = urllib.request.getproxies_environment().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass_environment(parts.hostname or ""):
        return urllib3.ProxyManager(proxy, **options)
    return urllib3.PoolManager(**options)


@dataclass
class TrackResult:
    """A 2xx answer. ``errors`` lists the objects Braze refused (the others were processed)."""

    status: int
    message: str
    body: dict[str, Any]
    duration_ms: int
    errors: list[dict] = field(default_factory=list)
    rate_limit: dict[str, str] = field(default_factory=dict)


def _rate_limit_headers(response: urllib3.BaseHTTPResponse) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith(("x-ratelimit", "retry-after"))}


def retry_after_seconds(headers: dict[str, str], *, now: float | None = None, default: float = 1.0) -> float:
    """How long to wait after a 429, from any of the headers Braze documents.

    ``X-RateLimit-Reset`` is documented both as UTC epoch seconds and as seconds left: a value
    larger than a year of seconds is read as a timestamp. ``Retry-After`` may be seconds or an HTTP date.
    """
    now = time.time() if now is None else now
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in ("x-ratelimit-retry-after", "retry-after"):
        value = lowered.get(name)
        if value:
            try:
                return max(0.0, float(value))
            except ValueError:
                parsed = email.utils.parsedate_to_datetime(value) if value else None
                if parsed is not None:
                    return max(0.0, parsed.timestamp() - now)
    reset = lowered.get("x-ratelimit-reset")
    if reset:
        try:
            number = float(reset)
        except ValueError:
            return default
        return max(0.0, number - now) if number > 365 * 24 * 3600 else max(0.0, number)
    return default


class BrazeClient:
    """Posts to one Braze REST endpoint with one API key."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 10.0, pool: urllib3.PoolManager | None = None):
        if not api_key:
            raise errors.BrazeConfigurationError("The connection has no API key.")
        self.base_url = base_url.rstrip("/")
        # Registered so that logs and error reports can redact it (its Authorization header is a plain
        # string in every frame of the HTTP library); masked in reprs of this object's attributes.
        self._api_key = secret_register(api_key)
        self.timeout = timeout
        self.pool = pool or connection_pool(self.base_url)

    def __repr__(self) -> str:  # never show the key
        return f"<BrazeClient {self.base_url}>"

    def track(self, body: dict[str, Any]) -> TrackResult:
        """POST ``body`` to ``/users/track``; returns the 2xx answer or raises a ``BrazeError``."""
        return self.post_bytes(encode(body))

    def delete_users(self, external_ids: list[str]) -> TrackResult:
        """POST ``/users/delete`` for these external ids (at most 50); the 2xx answer carries ``deleted``."""
        return self.post_bytes(encode({"external_ids": list(external_ids)}), path=DELETE_PATH)

    def post_bytes(self, data: bytes, *, path: str = TRACK_PATH) -> TrackResult:
        started = time.monotonic()
        try:
            response = self.pool.request(
                "POST", f"{self.base_url}{path}", body=data,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._api_key}",
                         "User-Agent": USER_AGENT},
                timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout), retries=False, redirect=False,
            )
        except NewConnectionError as err:  # refused, or the name did not resolve: nothing was sent
            raise errors.BrazeTransportError("Connection refused", maybe_delivered=False,
                                             duration_ms=_ms(started)) from err
        except ConnectTimeoutError as err:
            raise errors.BrazeTransportError(f"Could not connect: {err.__class__.__name__}", maybe_delivered=False) from err
        except ReadTimeoutError as err:
            raise errors.BrazeTransportError(
                f"No answer within {self.timeout:g}s", maybe_delivered=True, duration_ms=_ms(started)
            ) from err
        except ProtocolError as err:  # reset or dropped after the request may have gone out
            raise errors.BrazeTransportError("Connection lost before an answer", maybe_delivered=True,
                                             duration_ms=_ms(started)) from err
        except HTTPError as err:  # TLS, proxy ...
            raise errors.BrazeTransportError(f"Request failed: {err.__class__.__name__}", maybe_delivered=False) from err
        return self._handle(response, _ms(started))

    def _handle(self, response: urllib3.BaseHTTPResponse, duration_ms: int) -> TrackResult:
        status = response.status
        text = response.data.decode("utf-8", "replace")
        try:
            body = json.loads(text)
        except ValueError:
            body = {"message": text[:500]}
        if not isinstance(body, dict):
            body = {"message": str(body)[:500]}
        message = str(body.get("message") or response.reason or "")
        kwargs = {"status": status, "body": body, "duration_ms": duration_ms}
        if 200 <= status < 300:
            return TrackResult(status=status, message=message, body=body, duration_ms=duration_ms,
                               errors=list(body.get("errors") or []), rate_limit=_rate_limit_headers(response))
        if status == 429:
            raise errors.BrazeRateLimited(message or "Rate limited", retry_after=retry_after_seconds(dict(response.headers)), **kwargs)
        if status in (401, 403, 404):
            raise errors.BrazeAuthError(message or f"HTTP {status}", **kwargs)
        if status in (400, 413):
            raise errors.BrazeRequestRejected(message or f"HTTP {status}", errors=list(body.get("errors") or []), **kwargs)
        if 300 <= status < 400:
            raise errors.BrazeAuthError(f"Braze answered with a redirect ({status}); check the instance URL", **kwargs)
        if status >= 500:
            raise errors.BrazeServerError(message or f"HTTP {status}", **kwargs)
        raise errors.BrazeClientBug(message or f"HTTP {status}", **kwargs)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)

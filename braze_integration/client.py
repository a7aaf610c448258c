"""The Braze transport: the only module that touches ``requests``.

It knows HTTP and Braze's status codes, nothing of the ORM. One session per client (keep-alive),
a timeout on every call, no redirects followed, and every failure turned into the project's own
exception (``braze_integration.errors``) with the response attached.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from . import errors
from .logging import secret_register
from .payloads import encode

USER_AGENT = "loyaltysync/0.1 (+braze-integration)"
TRACK_PATH = "/users/track"
DELETE_PATH = "/users/delete"
MAX_DELETE_IDS = 50  # Braze's limit of external_ids per /users/delete request


@dataclass
class TrackResult:
    """A 2xx answer. ``errors`` lists the objects Braze refused (the others were processed)."""

    status: int
    message: str
    body: dict[str, Any]
    duration_ms: int
    errors: list[dict] = field(default_factory=list)
    rate_limit: dict[str, str] = field(default_factory=dict)


def _rate_limit_headers(response: requests.Response) -> dict[str, str]:
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


def keepalive_session(base_url: str) -> requests.Session:
    """A session for one endpoint, the environment's proxy and CA settings (``HTTPS_PROXY``, ``NO_PROXY``,
    ``REQUESTS_CA_BUNDLE``...) read once, here. A session that trusts the environment reads them again on
    every call, proxy bypass list included: about a third of its CPU per request. It also reads
    ``~/.netrc``, whose credentials must never replace the API key."""
    session = requests.Session()
    environment = session.merge_environment_settings(base_url, {}, None, None, None)
    session.proxies.update(environment["proxies"])
    session.verify = environment["verify"]
    session.trust_env = False
    return session


class BrazeClient:
    """Posts to one Braze REST endpoint with one API key."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 10.0, session: requests.Session | None = None):
        if not api_key:
            raise errors.BrazeConfigurationError("The connection has no API key.")
        self.base_url = base_url.rstrip("/")
        # Registered so that logs and error reports can redact it (its Authorization header is a plain
        # string in every frame of requests); masked in reprs of this object's attributes.
        self._api_key = secret_register(api_key)
        self.timeout = timeout
        self.session = session or keepalive_session(self.base_url)
        self.session.headers.update({"User-Agent": USER_AGENT})

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
            response = self.session.post(
                f"{self.base_url}{path}",
                data=data,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._api_key}"},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.ConnectTimeout as err:
            raise errors.BrazeTransportError(f"Could not connect: {err.__class__.__name__}", maybe_delivered=False) from err
        except requests.ReadTimeout as err:
            raise errors.BrazeTransportError(
                f"No answer within {self.timeout:g}s", maybe_delivered=True, duration_ms=_ms(started)
            ) from err
        except requests.ConnectionError as err:
            # A refused connection never sent anything; a reset or a dropped connection may have.
            refused = "refused" in str(err).lower() or "newconnectionerror" in repr(err).lower()
            raise errors.BrazeTransportError(
                "Connection refused" if refused else "Connection lost before an answer",
                maybe_delivered=not refused, duration_ms=_ms(started),
            ) from err
        except requests.RequestException as err:
            raise errors.BrazeTransportError(f"Request failed: {err.__class__.__name__}", maybe_delivered=False) from err
        return self._handle(response, _ms(started))

    def _handle(self, response: requests.Response, duration_ms: int) -> TrackResult:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = {"message": response.text[:500]}
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

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
import math
import os
import ssl
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import certifi
import requests.utils
import urllib3
from django.conf import settings
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)

from . import errors
from .logging import secret_register
from .payloads import encode

USER_AGENT = "loyaltysync/0.1 (+braze-integration)"
TRACK_PATH = "/users/track"
DELETE_PATH = "/users/delete"
MAX_DELETE_IDS = 50  # Braze's limit of external_ids per /users/delete request


# What is kept of an answer's body: Braze's answers are a few KB; a larger one is cut (and the connection closed).
MAX_ANSWER_BYTES = 1_000_000


def connection_pool(base_url: str) -> urllib3.PoolManager:
    """Keep-alive connections to one endpoint. The environment is read once, here, by the rules of
    ``requests``: the proxy from ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` unless ``NO_PROXY``
    names the host (CIDR ranges too), and the CA bundle (a file or a directory) from
    ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE``, else certifi's. Raises ``BrazeConfigurationError``
    for a proxy that is not an http(s):// one."""
    # Kept-alive connections, as many as requests keeps (10) and at least one for each request a
    # worker keeps in flight: the threads of a web process, and a worker's senders, share the pool.
    options: dict[str, Any] = {"num_pools": 2, "maxsize": max(10, settings.BRAZE_REQUESTS_IN_FLIGHT),
                               "retries": False}
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
    options["ca_cert_dir" if os.path.isdir(bundle) else "ca_certs"] = bundle
    proxy = requests.utils.select_proxy(base_url, requests.utils.get_environ_proxies(base_url))
    if not proxy:
        return urllib3.PoolManager(**options)
    proxy = requests.utils.prepend_scheme_if_needed(proxy, "http")
    scheme = urlsplit(proxy).scheme.lower()
    if scheme not in ("http", "https"):
        raise errors.BrazeConfigurationError(
            f"The proxy for Braze ({scheme}://, from the environment's proxy settings) is not supported: "
            "use an http:// or https:// proxy, or name Braze's host in NO_PROXY.")
    return urllib3.ProxyManager(proxy, **options)


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


# A wait longer than this is read as this long: a header promising hours (or infinity) must not park sending.
MAX_RETRY_AFTER = 3600.0


def retry_after_seconds(headers: dict[str, str], *, now: float | None = None, default: float = 1.0) -> float:
    """How long to wait after a 429, from any of the headers Braze documents (at most ``MAX_RETRY_AFTER``).

    ``X-RateLimit-Reset`` is documented both as UTC epoch seconds and as seconds left: a value
    larger than a year of seconds is read as a timestamp. ``Retry-After`` may be seconds or an HTTP date.
    A header that is none of these is passed over.
    """
    now = time.time() if now is None else now
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in ("x-ratelimit-retry-after", "retry-after"):
        seconds = _seconds_or_date(lowered.get(name) or "", now)
        if seconds is not None:
            return min(MAX_RETRY_AFTER, max(0.0, seconds))
    try:
        reset = float(lowered.get("x-ratelimit-reset") or "")
    except ValueError:
        return default
    if not math.isfinite(reset):
        return default
    return min(MAX_RETRY_AFTER, max(0.0, reset - now if reset > 365 * 24 * 3600 else reset))


def _seconds_or_date(value: str, now: float) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        try:
            return email.utils.parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, OverflowError):
            return None
    return seconds if math.isfinite(seconds) else None


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
                preload_content=False,
            )
            answer = _read_answer(response)
        except (ValueError, UnicodeError):  # a header HTTP cannot carry; the error's text would quote the key
            raise errors.BrazeTransportError(
                "Request failed: the API key holds a character an HTTP header cannot carry (a line break, say); "
                "enter it again", maybe_delivered=False) from None
        except SSLError as err:
            # A certificate refused in the handshake sent nothing; a TLS failure later may have followed the request.
            verify = isinstance(err.__context__, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(err)
            raise errors.BrazeTransportError(f"Request failed: {'untrusted certificate' if verify else 'TLS error'}",
                                             maybe_delivered=not verify, duration_ms=_ms(started)) from err
        except ProxyError as err:
            # Not reaching the proxy sent nothing; a connection through it that broke may have carried the request.
            unreached = (isinstance(err.original_error, NewConnectionError | ConnectTimeoutError)
                         or "Tunnel connection failed" in str(err.original_error))  # CONNECT refused
            raise errors.BrazeTransportError("Could not reach the proxy" if unreached else "Connection through the proxy lost",
                                             maybe_delivered=not unreached, duration_ms=_ms(started)) from err
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
        except HTTPError as err:  # an answer that came and could not be read (decoding, headers): it was sent
            raise errors.BrazeTransportError(f"Request failed: {err.__class__.__name__}", maybe_delivered=True,
                                             duration_ms=_ms(started)) from err
        return self._handle(response, answer, _ms(started))

    def _handle(self, response: urllib3.BaseHTTPResponse, answer: bytes, duration_ms: int) -> TrackResult:
        status = response.status
        text = answer.decode("utf-8", "replace")
        try:
            body = json.loads(text)
        except (ValueError, RecursionError):
            body = {"message": text[:500]}
        if not isinstance(body, dict):
            body = {"message": str(body)[:500]}
        message = str(body.get("message") or response.reason or "")
        kwargs = {"status": status, "body": body, "duration_ms": duration_ms}
        if 200 <= status < 300:
            return TrackResult(status=status, message=message, body=body, duration_ms=duration_ms,
                               errors=_object_errors(body), rate_limit=_rate_limit_headers(response))
        if status == 429:
            raise errors.BrazeRateLimited(message or "Rate limited", retry_after=retry_after_seconds(dict(response.headers)), **kwargs)
        if status in (401, 403, 404):
            raise errors.BrazeAuthError(message or f"HTTP {status}", **kwargs)
        if status in (400, 413):
            raise errors.BrazeRequestRejected(message or f"HTTP {status}", errors=_object_errors(body), **kwargs)
        if 300 <= status < 400:
            raise errors.BrazeAuthError(f"Braze answered with a redirect ({status}); check the instance URL", **kwargs)
        if status >= 500:
            raise errors.BrazeServerError(message or f"HTTP {status}", **kwargs)
        raise errors.BrazeClientBug(message or f"HTTP {status}", **kwargs)


def _read_answer(response: urllib3.BaseHTTPResponse) -> bytes:
    """The answer's body, at most ``MAX_ANSWER_BYTES`` of it: a longer one is cut and its connection
    closed rather than read on."""
    try:
        answer = response.read(MAX_ANSWER_BYTES + 1, decode_content=True)
        if len(answer) > MAX_ANSWER_BYTES:
            response.close()
            return answer[:MAX_ANSWER_BYTES]
        response.drain_conn()
        return answer
    finally:
        response.release_conn()


def _object_errors(body: dict[str, Any]) -> list:
    """Braze's per-object errors (a list; anything else in their place is no per-object error)."""
    found = body.get("errors")
    return list(found) if isinstance(found, list) else []


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)

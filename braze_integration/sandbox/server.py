"""The sandbox HTTP server: Braze's `POST /users/track` plus control and inspection endpoints.

Built on `http.server.ThreadingHTTPServer`, HTTP/1.1 keep-alive, one thread per connection.
Nagle's algorithm is off and each answer goes out in one buffered write; without that every
keep-alive request waits for a delayed ACK (~40 ms) and throughput collapses
(see performance-notes.md).
"""

from __future__ import annotations

import html
import json
import socket
import socketserver
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self
from urllib.parse import parse_qs, quote, unquote

from .config import (
    FaultConfig,
    RateLimit,
    SandboxConfig,
    format_rate_limit,
    parse_rate_limit,
)
from .faults import FaultInjector
from .ratelimit import FixedWindowRateLimiter, RateLimitDecision
from .store import FaultKind, ProfileStore
from .validation import RequestRejected, object_counts, validate_track_request

TRACK_PATH = "/users/track"
SANDBOX_PREFIX = "/sandbox"
DEFAULT_REQUESTS_LIMIT = 100
MAX_CONTROL_BODY_BYTES = 1024 * 1024
MAX_DRAIN_BYTES = 64 * 1024 * 1024
HTML_PROFILE_LIMIT = 1000

KeyAccess = Literal["granted", "no_permission", "invalid"]
_ERROR_MESSAGES = {500: "Internal Server Error", 503: "Service Unavailable"}


class SandboxServer:
    """A local stand-in for Braze's `/users/track`, for tests, the demo and benchmarks.

    Example::

        with SandboxServer(SandboxConfig(api_keys={"k"})) as server:
            requests.post(server.track_url, json=body, headers={"Authorization": "Bearer k"})
            assert server.store.profile("member-1")["attributes"] == {...}

    `start()` binds (port 0 picks a free port) and serves from a daemon thread; `stop()` closes
    the listening socket and every open connection. Faults, the rate limit and the accepted
    keys can be changed while it runs, from Python or over HTTP (`/sandbox/faults`,
    `/sandbox/keys`).
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.store = ProfileStore(
            max_array_length=self.config.max_array_length,
            request_log_size=self.config.request_log_size,
        )
        self.limits = self.config.validation_limits()
        self.fault_injector = FaultInjector(self.config.faults)
        self._rate_limiter = _rate_limiter(self.config.rate_limit)
        self._api_keys = self.config.api_keys
        self._no_permission_keys = self.config.no_permission_keys
        self._httpd: _SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None
        # Set on stop: wakes handlers sleeping for injected latency or hangs.
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    # --- life cycle -----------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve from a background daemon thread; returns self."""
        if self._httpd is not None:
            raise RuntimeError("the sandbox server is already running")
        self._stopping.clear()
        self._httpd = _SandboxHTTPServer((self.config.host, self.config.port), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"braze-sandbox:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close every open connection (idle keep-alive ones included)."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client
        httpd.server_close()
        if thread is not None:
            thread.join(timeout)
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        """The host to connect to (a wildcard bind answers on loopback)."""
        host = self.config.host
        return "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the sandbox server is not running")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:54321` (the REST endpoint to configure)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def track_url(self) -> str:
        return self.url + TRACK_PATH

    # --- run-time control -----------------------------------------------------------------

    @property
    def faults(self) -> FaultConfig:
        """A copy of the current fault configuration."""
        return self.fault_injector.config

    def update_faults(self, **changes: Any) -> FaultConfig:
        """Change fault settings (fields of `FaultConfig`); returns the new configuration."""
        return self.fault_injector.update(**changes)

    @property
    def rate_limit(self) -> RateLimit | None:
        limiter = self._rate_limiter
        return None if limiter is None else (limiter.limit, limiter.window_seconds)

    def set_rate_limit(self, rate_limit: RateLimit | None) -> None:
        """Replace the rate limit (a fresh window starts); None removes it."""
        self._rate_limiter = _rate_limiter(rate_limit)

    def set_api_keys(
        self,
        *,
        api_keys: Iterable[str] | None = None,
        no_permission_keys: Iterable[str] | None = None,
    ) -> None:
        """Replace the accepted keys and/or the keys without `users.track` permission."""
        if api_keys is not None:
            self._api_keys = frozenset(api_keys)
        if no_permission_keys is not None:
            self._no_permission_keys = frozenset(no_permission_keys)

    @property
    def api_keys(self) -> frozenset[str]:
        return self._api_keys

    @property
    def no_permission_keys(self) -> frozenset[str]:
        return self._no_permission_keys

    def key_access(self, key: str | None) -> KeyAccess:
        """What a bearer key may do: write, nothing (no permission), or it is unknown."""
        if key is None:
            return "invalid"
        if key in self._no_permission_keys:
            return "no_permission"
        return "granted" if key in self._api_keys else "invalid"

    def reset(self) -> None:
        """Forget profiles, statistics and the request log; the configuration stays."""
        self.store.reset()

    def runtime_settings(self) -> dict[str, Any]:
        """The fault settings and the rate limit as `/sandbox/faults` shows them."""
        settings = self.faults.as_dict()
        settings["rate_limit"] = format_rate_limit(self.rate_limit)
        return settings

    # --- used by the handler --------------------------------------------------------------

    def check_rate_limit(self) -> RateLimitDecision | None:
        """Count a `/users/track` request against the rate limit (None: no limit set)."""
        limiter = self._rate_limiter
        return None if limiter is None else limiter.hit()

    def pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the server stops."""
        if seconds > 0:
            self._stopping.wait(seconds)

    def _track_connection(self, connection: socket.socket, *, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


def _rate_limiter(rate_limit: RateLimit | None) -> FixedWindowRateLimiter | None:
    return None if rate_limit is None else FixedWindowRateLimiter(*rate_limit)


class _SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _SandboxRequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (getfqdn), which can stall for seconds.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = host, port

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer is normal here (timeouts, ack-lost tests).
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _SandboxRequestHandler(BaseHTTPRequestHandler):
    server: _SandboxHTTPServer

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    # Buffer the answer so headers and body leave in one write (flushed per request).
    wbufsize = 64 * 1024
    # Idle keep-alive connections are closed after this many seconds.
    timeout = 120
    server_version = "BrazeSandbox/1.0"

    # --- plumbing ---------------------------------------------------------------------------

    @property
    def sandbox(self) -> SandboxServer:
        return self.server.sandbox

    def version_string(self) -> str:
        return self.server_version  # no Python version in the Server header

    def setup(self) -> None:
        super().setup()
        self.sandbox._track_connection(self.connection, open_=True)

    def finish(self) -> None:
        self.sandbox._track_connection(self.connection, open_=False)
        super().finish()

    def handle_expect_100(self) -> bool:
        # The 100 Continue must reach the client now, not with the buffered answer.
        accepted = super().handle_expect_100()
        self.wfile.flush()
        return accepted

    def log_message(self, format: str, *args: Any) -> None:
        if self.sandbox.config.log_requests:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch(self._route_get)

    def do_POST(self) -> None:
        self._dispatch(self._route_post)

    def do_PUT(self) -> None:
        self._dispatch(self._route_other)

    def do_PATCH(self) -> None:
        self._dispatch(self._route_other)

    def do_DELETE(self) -> None:
        self._dispatch(self._route_other)

    def _dispatch(self, route: Callable[[str, str], None]) -> None:
        self._responded = False
        path, _, query = self.path.partition("?")
        try:
            route(path, query)
        except (ConnectionError, TimeoutError):
            raise  # the client went away; the server's handle_error drops these quietly
        except Exception:  # a sandbox bug must answer 500, not look like a network fault
            traceback.print_exc(file=sys.stderr)
            if not self._responded:
                self.close_connection = True
                self._send_json(500, {"message": "Sandbox internal error"})

    def _read_body(self, max_bytes: int) -> tuple[bytes | None, bool]:
        """(body, too_large); body None when it is too large or its length is unknown.

        A body too large to keep is still read and discarded (up to `MAX_DRAIN_BYTES`): closing
        a socket with unread data makes the kernel send a reset, which can destroy the 413
        before the client reads it. Beyond that, or without a length, the connection is closed.
        """
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return None, False
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            return None, False
        if length <= max_bytes:
            return (self.rfile.read(length) if length else b""), False
        if length > MAX_DRAIN_BYTES:
            self.close_connection = True
            return None, True
        while length > 0:
            chunk = self.rfile.read(min(length, 64 * 1024))
            if not chunk:
                break
            length -= len(chunk)
        return None, True

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._responded = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        self._send(status, body, "application/json", headers)

    def _drop_without_answer(self) -> None:
        self._responded = True
        self.close_connection = True

    def _bearer_key(self) -> str | None:
        scheme, _, key = (self.headers.get("Authorization") or "").partition(" ")
        key = key.strip()
        return key if scheme.lower() == "bearer" and key else None

    def _content_type_is_json(self) -> bool:
        media_type = (self.headers.get("Content-Type") or "").split(";", 1)[0]
        return media_type.strip().lower() == "application/json"

    # --- routing ----------------------------------------------------------------------------

    def _route_post(self, path: str, query: str) -> None:
        if path == TRACK_PATH:
            self._handle_track()
            return
        body, too_large = self._read_body(MAX_CONTROL_BODY_BYTES)
        if path == TRACK_PATH + "/":
            self._send_json(403, {"message": "Forbidden"})
        elif not path.startswith(SANDBOX_PREFIX + "/"):
            self._send_not_found()
        elif too_large or body is None:
            self._send_json(413 if too_large else 411, {"message": "Unreadable request body"})
        elif path == "/sandbox/reset":
            self.sandbox.reset()
            self._send_json(200, {"message": "reset"})
        elif path == "/sandbox/faults":
            self._handle_faults_update(body)
        elif path == "/sandbox/keys":
            self._handle_keys_update(body)
        else:
            self._send_not_found()

    def _route_get(self, path: str, query: str) -> None:
        self._read_body(MAX_CONTROL_BODY_BYTES)  # keep the stream in step if a GET has a body
        store = self.sandbox.store
        if path == TRACK_PATH:
            self._send_json(405, {"message": "Method Not Allowed"}, {"Allow": "POST"})
        elif path == TRACK_PATH + "/":
            self._send_json(403, {"message": "Forbidden"})
        elif path in (SANDBOX_PREFIX, SANDBOX_PREFIX + "/"):
            page = _render_overview(self.sandbox).encode("utf-8")
            self._send(200, page, "text/html; charset=utf-8")
        elif path == "/sandbox/users":
            keys = store.profile_keys()
            self._send_json(200, {"count": len(keys), "external_ids": keys})
        elif path.startswith("/sandbox/users/"):
            profile = store.profile(unquote(path.removeprefix("/sandbox/users/")))
            if profile is None:
                self._send_json(404, {"message": "not found"})
            else:
                self._send_json(200, profile)
        elif path == "/sandbox/stats":
            self._send_json(200, store.stats())
        elif path == "/sandbox/requests":
            self._handle_requests_log(query)
        elif path == "/sandbox/faults":
            self._send_json(200, self.sandbox.runtime_settings())
        else:
            self._send_not_found()

    def _route_other(self, path: str, query: str) -> None:
        self._read_body(MAX_CONTROL_BODY_BYTES)
        if path == TRACK_PATH:
            self._send_json(405, {"message": "Method Not Allowed"}, {"Allow": "POST"})
        elif path == TRACK_PATH + "/":
            self._send_json(403, {"message": "Forbidden"})
        else:
            self._send_not_found()

    def _send_not_found(self) -> None:
        self._send_json(404, {"message": f"No route for {self.command} {self.path}"})

    # --- POST /users/track ----------------------------------------------------------------

    def _handle_track(self) -> None:
        sandbox = self.sandbox
        body, too_large = self._read_body(sandbox.config.max_body_bytes)
        is_json = self._content_type_is_json()
        # Decode early so even refused requests are logged with their object counts.
        decoded: Any = None
        json_error: str | None = None
        if body is not None and is_json:
            try:
                decoded = json.loads(body, parse_constant=_reject_json_constant)
            except (ValueError, RecursionError) as err:
                json_error = str(err)
        counts = object_counts(decoded)

        decision = sandbox.check_rate_limit()
        headers = {} if decision is None else decision.headers()
        if decision is not None and not decision.allowed:
            self._answer_track(429, {"message": "Rate limit exceeded"}, headers, counts)
            return

        fault = sandbox.fault_injector.before_processing()
        if fault is not None and fault.kind == "timeout":
            sandbox.pause(sandbox.fault_injector.hang_seconds)
            self._drop_without_answer()
            sandbox.store.record_request(status=None, object_counts=counts, fault="timeout")
            return
        if fault is not None:
            status = fault.status or 500
            payload = {"message": _ERROR_MESSAGES.get(status, "Server Error")}
            self._answer_track(status, payload, headers, counts, fault="error")
            return

        access = sandbox.key_access(self._bearer_key())
        if access == "invalid":
            self._answer_track(401, {"message": "Invalid API Key"}, headers, counts)
            return
        if access == "no_permission":
            payload = {
                "message": "Access Denied",
                "detail": "The API key does not have the users.track permission.",
            }
            self._answer_track(403, payload, headers, counts)
            return
        if not is_json:
            payload = {"message": "Unsupported Media Type: Content-Type must be application/json"}
            self._answer_track(415, payload, headers, counts)
            return
        if too_large:
            limit = sandbox.config.max_body_bytes
            payload = {"message": f"Payload Too Large: the body must be at most {limit} bytes"}
            self._answer_track(413, payload, headers, counts)
            return
        if body is None:
            payload = {"message": "Length Required: send the body with a Content-Length"}
            self._answer_track(411, payload, headers, counts)
            return
        if json_error is not None:
            self._answer_track(400, {"message": f"Invalid JSON: {json_error}"}, headers, counts)
            return

        try:
            validated = validate_track_request(decoded, sandbox.limits, body_size=len(body))
        except RequestRejected as rejection:
            payload = {"message": rejection.message}
            if rejection.errors:
                payload["errors"] = rejection.errors
            self._answer_track(400, payload, headers, counts, errors=len(rejection.errors))
            return

        result = sandbox.store.apply(validated)
        errors = len(validated.errors)
        if sandbox.fault_injector.take_ack_lost():
            self._drop_without_answer()
            sandbox.store.record_request(status=None, object_counts=counts, fault="ack_lost", errors=errors)
            return
        payload = {
            "message": "success",
            "attributes_processed": result.attributes_processed,
            "events_processed": result.events_processed,
            "purchases_processed": result.purchases_processed,
        }
        if validated.errors:
            payload["errors"] = validated.errors
        self._answer_track(201, payload, headers, counts, errors=errors)

    def _answer_track(
        self,
        status: int,
        payload: dict[str, Any],
        headers: dict[str, str],
        counts: dict[str, int],
        *,
        fault: FaultKind | None = None,
        errors: int = 0,
    ) -> None:
        self.sandbox.pause(self.sandbox.fault_injector.latency_seconds)
        self._send_json(status, payload, headers)
        self.sandbox.store.record_request(status=status, object_counts=counts, fault=fault, errors=errors)

    # --- control endpoints ----------------------------------------------------------------

    def _handle_faults_update(self, body: bytes) -> None:
        changes = _decode_object(body)
        if changes is None:
            self._send_json(400, {"message": "Expected a JSON object"})
            return
        change_rate_limit = "rate_limit" in changes
        raw_rate_limit = changes.pop("rate_limit", None)
        try:
            rate_limit = None if raw_rate_limit is None else _rate_limit_from_json(raw_rate_limit)
            self.sandbox.update_faults(**changes)
        except (TypeError, ValueError) as err:
            self._send_json(400, {"message": str(err)})
            return
        if change_rate_limit:
            self.sandbox.set_rate_limit(rate_limit)
        self._send_json(200, self.sandbox.runtime_settings())

    def _handle_keys_update(self, body: bytes) -> None:
        changes = _decode_object(body)
        allowed = {"api_keys", "no_permission_keys"}
        if (
            changes is None
            or not set(changes) <= allowed
            or not all(
                isinstance(keys, list) and all(isinstance(key, str) for key in keys)
                for keys in changes.values()
            )
        ):
            message = 'Expected {"api_keys": [...], "no_permission_keys": [...]} (both optional)'
            self._send_json(400, {"message": message})
            return
        self.sandbox.set_api_keys(**changes)
        self._send_json(
            200,
            {
                "api_keys": sorted(self.sandbox.api_keys),
                "no_permission_keys": sorted(self.sandbox.no_permission_keys),
            },
        )

    def _handle_requests_log(self, query: str) -> None:
        values = parse_qs(query).get("limit", [str(DEFAULT_REQUESTS_LIMIT)])
        try:
            limit = int(values[-1])
            if limit < 0:
                raise ValueError
        except ValueError:
            self._send_json(400, {"message": "limit must be a non-negative integer"})
            return
        entries = self.sandbox.store.recent_requests(limit)
        self._send_json(200, {"count": len(entries), "requests": entries})


def _reject_json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decode_object(body: bytes) -> dict[str, Any] | None:
    try:
        decoded = json.loads(body or b"{}", parse_constant=_reject_json_constant)
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None


def _rate_limit_from_json(value: Any) -> RateLimit:
    """`"10/1s"` or `[10, 1]`."""
    if isinstance(value, str):
        return parse_rate_limit(value)
    if (
        isinstance(value, list)
        and len(value) == 2
        and type(value[0]) is int
        and type(value[1]) in (int, float)
        and value[0] >= 1
        and value[1] > 0
    ):
        return value[0], float(value[1])
    raise ValueError('rate_limit must be like "3000/3s", [3000, 3] or null')


def _render_overview(sandbox: SandboxServer) -> str:
    """A plain HTML page listing profiles, so a person can look at what arrived."""
    store = sandbox.store
    stats = store.stats()
    summaries = store.profile_summaries(limit=HTML_PROFILE_LIMIT)
    rows = "\n".join(
        '<tr><td><a href="/sandbox/users/{href}">{key}</a></td>'
        "<td>{attributes}</td><td>{events}</td><td>{purchases}</td></tr>".format(
            href=html.escape(quote(summary.key, safe=""), quote=True),
            key=html.escape(summary.key),
            attributes=summary.attribute_count,
            events=summary.event_count,
            purchases=summary.purchase_count,
        )
        for summary in summaries
    )
    more = stats["users"] - len(summaries)
    more_note = f"<p>… and {more} more (see /sandbox/users).</p>" if more > 0 else ""
    status_counts = ", ".join(
        f"{html.escape(status)}: {count}" for status, count in sorted(stats["requests_by_status"].items())
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Braze sandbox</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: .25rem .6rem; text-align: left; }}
</style></head>
<body>
<h1>Braze sandbox</h1>
<p>{stats["users"]} profiles · {stats["requests"]} requests ({status_counts or "none"}) ·
{stats["data_points"]} data points · {stats["events_stored"]} events ·
{stats["purchases_stored"]} purchases ·
<a href="/sandbox/stats">stats</a> · <a href="/sandbox/requests">recent requests</a> ·
<a href="/sandbox/faults">faults</a></p>
<table>
<thead><tr><th>external_id</th><th>attributes</th><th>events</th><th>purchases</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
{more_note}
</body></html>
"""

"""HTTP plumbing of the sandbox: the threading server, the request handler and the routing.

Owns sockets, keep-alive, reading bodies, writing answers and choosing the endpoint for a path.
What an endpoint answers lives in `braze_endpoints` (Braze's REST API) and `inspection` (the
`/sandbox/...` pages). Nagle's algorithm is off and each answer goes out in one buffered write;
without that every keep-alive request waits for a delayed ACK (~40 ms) and throughput collapses
(see performance-notes.md).
"""

from __future__ import annotations

import json
import socket
import socketserver
import sys
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from . import braze_endpoints, inspection

if TYPE_CHECKING:
    from .server import SandboxServer

SANDBOX_PREFIX = "/sandbox"
MAX_CONTROL_BODY_BYTES = 1024 * 1024
MAX_DRAIN_BYTES = 64 * 1024 * 1024


class SandboxHTTPServer(ThreadingHTTPServer):
    """`ThreadingHTTPServer` bound to one `SandboxServer`, without the slow host name lookup."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, SandboxRequestHandler)

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


class SandboxRequestHandler(BaseHTTPRequestHandler):
    """One connection: routes each request and offers the endpoints the means to answer."""

    server: SandboxHTTPServer

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    # Buffer the answer so headers and body leave in one write (flushed per request).
    wbufsize = 64 * 1024
    # Idle keep-alive connections are closed after this many seconds.
    timeout = 120
    server_version = "BrazeSandbox/1.0"

    @property
    def sandbox(self) -> SandboxServer:
        return self.server.sandbox

    # --- connection life cycle ----------------------------------------------------------

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

    # --- routing ------------------------------------------------------------------------

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
                self.send_json(500, {"message": "Sandbox internal error"})

    def _route_post(self, path: str, query: str) -> None:
        endpoint = braze_endpoints.ENDPOINTS.get(path)
        if endpoint is not None:
            endpoint(self)
            return
        body, too_large = self.read_body(MAX_CONTROL_BODY_BYTES)
        if self._answered_braze_path_misuse(path):
            return
        if not path.startswith(SANDBOX_PREFIX + "/"):
            self.send_not_found()
        elif too_large or body is None:
            self.send_json(413 if too_large else 411, {"message": "Unreadable request body"})
        else:
            inspection.route_post(self, path, body)

    def _route_get(self, path: str, query: str) -> None:
        self.read_body(MAX_CONTROL_BODY_BYTES)  # keep the stream in step if a GET has a body
        if self._answered_braze_path_misuse(path):
            return
        if path == SANDBOX_PREFIX or path.startswith(SANDBOX_PREFIX + "/"):
            inspection.route_get(self, path, query)
        else:
            self.send_not_found()

    def _route_other(self, path: str, query: str) -> None:
        self.read_body(MAX_CONTROL_BODY_BYTES)
        if not self._answered_braze_path_misuse(path):
            self.send_not_found()

    def _answered_braze_path_misuse(self, path: str) -> bool:
        """Braze answers 405 to another method on an endpoint, and 403 to a trailing slash."""
        if path in braze_endpoints.ENDPOINTS:
            self.send_json(405, {"message": "Method Not Allowed"}, {"Allow": "POST"})
            return True
        if path.endswith("/") and path.removesuffix("/") in braze_endpoints.ENDPOINTS:
            self.send_json(403, {"message": "Forbidden"})
            return True
        return False

    # --- reading and answering ----------------------------------------------------------

    def read_body(self, max_bytes: int) -> tuple[bytes | None, bool]:
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

    def send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        """Write one complete answer (it leaves with the next flush, in one write)."""
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

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        self.send(status, body, "application/json", headers)

    def send_not_found(self) -> None:
        self.send_json(404, {"message": f"No route for {self.command} {self.path}"})

    def drop_without_answer(self) -> None:
        """Close the connection without a word (a hang or a lost acknowledgement)."""
        self._responded = True
        self.close_connection = True

    def bearer_key(self) -> str | None:
        scheme, _, key = (self.headers.get("Authorization") or "").partition(" ")
        key = key.strip()
        return key if scheme.lower() == "bearer" and key else None

    def content_type_is_json(self) -> bool:
        media_type = (self.headers.get("Content-Type") or "").split(";", 1)[0]
        return media_type.strip().lower() == "application/json"

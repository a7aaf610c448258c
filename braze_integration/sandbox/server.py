"""`SandboxServer`: the sandbox's life cycle and its run-time settings.

Owns starting and stopping (a daemon thread, every open connection closed on stop), the state
that requests share (profile store, fault injector, rate limiters, keys) and the methods that
change it while the server runs. The HTTP side lives in `httpd`, the Braze endpoints in
`braze_endpoints`, the `/sandbox/...` endpoints in `inspection`.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from typing import Any, Self

from .config import (
    DELETE_PATH,
    TRACK_PATH,
    FaultConfig,
    RateLimit,
    SandboxConfig,
    format_rate_limit,
)
from .faults import FaultInjector
from .httpd import SandboxHTTPServer
from .keys import USERS_TRACK, KeyAccess, KeyRing, Permission
from .ratelimit import FixedWindowRateLimiter, RateLimitDecision
from .store import ProfileStore


class SandboxServer:
    """A local stand-in for Braze's `/users/track` and `/users/delete`, for tests, the demo and
    benchmarks.

    Example::

        with SandboxServer(SandboxConfig(api_keys={"k"})) as server:
            requests.post(server.track_url, json=body, headers={"Authorization": "Bearer k"})
            assert server.store.profile("member-1")["attributes"] == {...}

    `start()` binds (port 0 picks a free port) and serves from a daemon thread; `stop()` closes
    the listening socket and every open connection. Faults, the rate limits and the accepted
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
        # One limiter per endpoint: Braze counts /users/track and /users/delete apart.
        self._rate_limiters = {
            TRACK_PATH: _rate_limiter(self.config.rate_limit),
            DELETE_PATH: _rate_limiter(self.config.delete_rate_limit),
        }
        self._keys = self.config.key_ring()
        self._httpd: SandboxHTTPServer | None = None
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
        self._httpd = SandboxHTTPServer((self.config.host, self.config.port), self)
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

    @property
    def delete_url(self) -> str:
        return self.url + DELETE_PATH

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
        """The `/users/track` rate limit, None when there is none."""
        return _limit_of(self._rate_limiters[TRACK_PATH])

    def set_rate_limit(self, rate_limit: RateLimit | None) -> None:
        """Replace the `/users/track` rate limit (a fresh window starts); None removes it."""
        self._rate_limiters[TRACK_PATH] = _rate_limiter(rate_limit)

    @property
    def delete_rate_limit(self) -> RateLimit | None:
        """The `/users/delete` rate limit, None when there is none."""
        return _limit_of(self._rate_limiters[DELETE_PATH])

    def set_delete_rate_limit(self, rate_limit: RateLimit | None) -> None:
        """Replace the `/users/delete` rate limit (a fresh window starts); None removes it."""
        self._rate_limiters[DELETE_PATH] = _rate_limiter(rate_limit)

    def set_api_keys(
        self,
        *,
        api_keys: Iterable[str] | None = None,
        no_permission_keys: Iterable[str] | None = None,
        track_only_keys: Iterable[str] | None = None,
    ) -> None:
        """Replace some of the key sets (see `keys.KeyRing`); None keeps a set as it is."""
        self._keys = self._keys.replaced(
            api_keys=api_keys, no_permission_keys=no_permission_keys, track_only_keys=track_only_keys
        )

    @property
    def keys(self) -> KeyRing:
        """The current keys with their permissions."""
        return self._keys

    @property
    def api_keys(self) -> frozenset[str]:
        return self._keys.api_keys

    @property
    def no_permission_keys(self) -> frozenset[str]:
        return self._keys.no_permission_keys

    @property
    def track_only_keys(self) -> frozenset[str]:
        return self._keys.track_only_keys

    def key_access(self, key: str | None, permission: Permission = USERS_TRACK) -> KeyAccess:
        """What a bearer key may do: use `permission`, not that (403), or it is unknown (401)."""
        return self._keys.access(key, permission)

    def reset(self) -> None:
        """Forget profiles, statistics and the request log; the configuration stays."""
        self.store.reset()

    def runtime_settings(self) -> dict[str, Any]:
        """The fault settings and the rate limits as `/sandbox/faults` shows them."""
        settings = self.faults.as_dict()
        settings["rate_limit"] = format_rate_limit(self.rate_limit)
        settings["delete_rate_limit"] = format_rate_limit(self.delete_rate_limit)
        return settings

    # --- used by the endpoints ------------------------------------------------------------

    def check_rate_limit(self, path: str = TRACK_PATH) -> RateLimitDecision | None:
        """Count a request to a Braze endpoint against its rate limit (None: no limit set)."""
        limiter = self._rate_limiters[path]
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


def _limit_of(limiter: FixedWindowRateLimiter | None) -> RateLimit | None:
    return None if limiter is None else (limiter.limit, limiter.window_seconds)

"""A fixed-window rate limiter that reports what Braze's rate limit headers carry."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    """The outcome of one request against the limiter."""

    allowed: bool
    limit: int
    remaining: int
    reset_epoch: int  # UTC epoch seconds at which the current window ends
    retry_after: int  # whole seconds until then, at least 1

    def headers(self) -> dict[str, str]:
        """`X-RateLimit-*` headers for every answer, plus `Retry-After` on a refusal."""
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_epoch),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class FixedWindowRateLimiter:
    """At most `limit` requests per window; windows are aligned to the epoch.

    Epoch alignment makes `X-RateLimit-Reset` the same for every client, like a gateway would.
    Refused requests count too, so hammering a full window does not open it early.
    """

    def __init__(self, limit: int, window_seconds: float, *, clock: Callable[[], float] = time.time) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError("limit and window_seconds must be positive")
        self.limit = limit
        self.window_seconds = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._window_start = -1.0
        self._count = 0

    def hit(self) -> RateLimitDecision:
        """Count one request and say whether it may pass."""
        with self._lock:
            now = self._clock()
            window_start = now - (now % self.window_seconds)
            if window_start != self._window_start:
                self._window_start = window_start
                self._count = 0
            self._count += 1
            count = self._count
        window_end = window_start + self.window_seconds
        return RateLimitDecision(
            allowed=count <= self.limit,
            limit=self.limit,
            remaining=max(0, self.limit - count),
            reset_epoch=math.ceil(window_end),
            retry_after=max(1, math.ceil(window_end - now)),
        )

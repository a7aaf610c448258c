"""Throttling per API token: each token (or, for the browsable API, each session user) has its own budget
of ``API_THROTTLE_RATE`` requests; beyond it the API answers 429 with ``Retry-After``. Every answer tells
the caller its budget in ``X-RateLimit-*`` headers (``RateLimitHeadersMixin``)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from rest_framework.authtoken.models import Token
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle


class TokenRateThrottle(SimpleRateThrottle):
    scope = "token"

    def get_rate(self) -> str | None:
        # Read per request, not when the class is defined, so a changed setting (tests, reloads) applies.
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def get_cache_key(self, request, view) -> str:
        if isinstance(request.auth, Token):
            # The cache (Redis in production) holds a digest of the token, never the token itself.
            ident = "token-" + hashlib.sha256(request.auth.key.encode()).hexdigest()[:32]
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            # No REMOTE_ADDR (a WSGI call without one) must not fail the answer.
            ident = "ip-" + (self.get_ident(request) or "unknown")
        return self.cache_format % {"scope": self.scope, "ident": ident}


@dataclass(frozen=True)
class RateLimitState:
    """A caller's budget: ``limit`` requests per window, ``remaining`` of them now, and ``reset``: the Unix
    time (seconds) at which the oldest counted request leaves the window, so one more is allowed."""

    limit: int
    remaining: int
    reset: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }


def rate_limit_state(throttle: SimpleRateThrottle, request, view) -> RateLimitState | None:
    """The budget ``throttle`` keeps for this caller: as ``allow_request`` left it when it ran, otherwise
    (the request was refused before throttling, e.g. 401) read from the cache without counting."""
    if throttle.rate is None:
        return None
    if hasattr(throttle, "history"):
        history, now = throttle.history, throttle.now
    else:
        key = throttle.get_cache_key(request, view)
        if key is None:
            return None
        now = throttle.timer()
        history = [moment for moment in throttle.cache.get(key, []) if moment > now - throttle.duration]
    oldest = history[-1] + throttle.duration if history else now
    return RateLimitState(
        limit=throttle.num_requests,
        remaining=max(0, throttle.num_requests - len(history)),
        reset=math.ceil(oldest),
    )


class RateLimitHeadersMixin:
    """Adds ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` to every answer of an API view (successes
    and errors, not only 429), from the tightest of its throttles, so clients can pace themselves."""

    def get_throttles(self):
        self._rate_limit_throttles = super().get_throttles()
        return self._rate_limit_throttles

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        throttles = getattr(self, "_rate_limit_throttles", None)
        if throttles is None:
            throttles = self.get_throttles()
        states = [
            state
            for throttle in throttles
            if isinstance(throttle, SimpleRateThrottle)
            and (state := rate_limit_state(throttle, request, self)) is not None
        ]
        if states:
            tightest = min(states, key=lambda state: state.remaining)
            for name, value in tightest.headers().items():
                response[name] = value
        return response

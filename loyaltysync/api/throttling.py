"""Throttling per API token: each token (or, for the browsable API, each session user) has its own budget
of ``API_THROTTLE_RATE`` requests; beyond it the API answers 429 with ``Retry-After``."""

from __future__ import annotations

import hashlib

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
            ident = "ip-" + self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}

"""Configuration of the Braze sandbox: what it accepts, its limits and the faults it injects."""

from __future__ import annotations

import re
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field
from typing import Any

from .keys import KeyRing, key_set
from .validation import ValidationLimits

TRACK_PATH = "/users/track"
DELETE_PATH = "/users/delete"
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_HANG_SECONDS = 30.0
_RATE_LIMIT = re.compile(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(ms|s|m|h)?\s*", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

RateLimit = tuple[int, float]
"""(requests allowed, window length in seconds)."""

# Braze's default limits per workspace (reference notes, "Rate limits" and "Deleting users").
BRAZE_TRACK_RATE_LIMIT: RateLimit = (3000, 3.0)
BRAZE_DELETE_RATE_LIMIT: RateLimit = (20000, 60.0)
_NO_RATE_LIMIT_WORDS = frozenset({"off", "none"})


def parse_rate_limit(text: str) -> RateLimit:
    """Parse `"3000/3s"`, `"50000/1m"`, `"10/1"` (seconds) or `"100/h"` into (limit, seconds)."""
    match = _RATE_LIMIT.fullmatch(text)
    if match is None or (match.group(2) is None and match.group(3) is None):
        raise ValueError(f"invalid rate limit {text!r}; expected e.g. '3000/3s' or '50000/1m'")
    amount = float(match.group(2) or 1)
    window = amount * _UNIT_SECONDS[(match.group(3) or "s").lower()]
    limit = int(match.group(1))
    if limit < 1 or window <= 0:
        raise ValueError(f"invalid rate limit {text!r}; limit and window must be positive")
    return limit, window


def parse_optional_rate_limit(text: str) -> RateLimit | None:
    """`parse_rate_limit`, plus `"off"` or `"none"` for no limit at all."""
    if text.strip().lower() in _NO_RATE_LIMIT_WORDS:
        return None
    return parse_rate_limit(text)


def format_rate_limit(rate_limit: RateLimit | None) -> str | None:
    """The inverse of `parse_rate_limit`, in seconds: (3000, 3.0) -> "3000/3s"."""
    if rate_limit is None:
        return None
    limit, window = rate_limit
    return f"{limit}/{window:g}s"


@dataclass(slots=True)
class FaultConfig:
    """Trouble the sandbox causes on its Braze endpoints, changeable while it runs.

    - `error_rate`: share of requests answered 500 or 503 (chosen at random).
    - `timeout_rate`: share of requests that hang `hang_seconds`, then close without answer.
    - `latency_ms`: delay added to every answer.
    - `fail_next`: the next N requests answer 503 (deterministic, for tests).
    - `ack_lost_next`: the next N requests that reach the write step are written, but the
      connection is closed without an answer ("Braze got it, the answer was lost").
    - `fail_external_ids`: every `/users/track` request carrying an object of one of these
      users answers 500, however often it is sent (one user's data that breaks Braze).
    - `seed`: seeds the random choices so a run can be repeated.
    Faulted requests change no profile, except the ack-lost ones.
    """

    error_rate: float = 0.0
    latency_ms: float = 0.0
    timeout_rate: float = 0.0
    hang_seconds: float = DEFAULT_HANG_SECONDS
    fail_next: int = 0
    ack_lost_next: int = 0
    fail_external_ids: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("error_rate", "timeout_rate"):
            share = getattr(self, name)
            if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
                raise ValueError(f"{name} must be a number from 0 to 1, got {share!r}")
        if self.error_rate + self.timeout_rate > 1:
            raise ValueError("error_rate + timeout_rate must not exceed 1")
        for name in ("latency_ms", "hang_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        for name in ("fail_next", "ack_lost_next"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        ids = self.fail_external_ids
        if not isinstance(ids, list | tuple | set | frozenset) or not all(isinstance(i, str) for i in ids):
            raise ValueError(f"fail_external_ids must be a list of strings, got {ids!r}")
        self.fail_external_ids = tuple(ids)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError(f"seed must be an integer or null, got {self.seed!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class SandboxConfig:
    """Everything a `SandboxServer` is started with.

    `api_keys` may track and delete; `track_only_keys` may track but not delete;
    `no_permission_keys` are known keys without either permission (403); see `keys.KeyRing`.
    Object limits: at most `max_objects` in total, or, when `per_array_limit` is set, the older
    rule of at most that many per array instead. `rate_limit` (for `/users/track`) and
    `delete_rate_limit` (for `/users/delete`) are (limit, window seconds) as fixed windows,
    Braze's defaults unless given; None means no limit (and no rate limit headers).
    """

    api_keys: AbstractSet[str] = frozenset()
    no_permission_keys: AbstractSet[str] = frozenset()
    track_only_keys: AbstractSet[str] = frozenset()
    host: str = "127.0.0.1"
    port: int = 0
    max_objects: int | None = 75
    per_array_limit: int | None = None
    max_array_length: int = 500
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    rate_limit: RateLimit | None = BRAZE_TRACK_RATE_LIMIT
    delete_rate_limit: RateLimit | None = BRAZE_DELETE_RATE_LIMIT
    faults: FaultConfig = field(default_factory=FaultConfig)
    request_log_size: int = 1000
    log_requests: bool = False

    def __post_init__(self) -> None:
        # Accept any iterable of keys (a set, a list) but keep an immutable copy.
        self.api_keys = key_set(self.api_keys, "api_keys")
        self.no_permission_keys = key_set(self.no_permission_keys, "no_permission_keys")
        self.track_only_keys = key_set(self.track_only_keys, "track_only_keys")
        for name in ("max_objects", "per_array_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 or None, got {value!r}")
        if self.max_array_length < 1 or self.max_body_bytes < 1 or self.request_log_size < 1:
            raise ValueError("max_array_length, max_body_bytes and request_log_size must be >= 1")

    def key_ring(self) -> KeyRing:
        """The configured keys with their permissions."""
        return KeyRing(
            api_keys=frozenset(self.api_keys),
            track_only_keys=frozenset(self.track_only_keys),
            no_permission_keys=frozenset(self.no_permission_keys),
        )

    def validation_limits(self) -> ValidationLimits:
        """The request limits for `validation.validate_track_request`."""
        return ValidationLimits(
            max_objects=self.max_objects,
            per_array_limit=self.per_array_limit,
            max_array_length=self.max_array_length,
        )


"""Fault injection for the sandbox: decides, per request, what trouble to cause."""

from __future__ import annotations

import dataclasses
import random
import threading
from dataclasses import dataclass
from typing import Any, Literal

from .config import FaultConfig


@dataclass(frozen=True, slots=True)
class InjectedFault:
    """A fault chosen before the request is processed: an error answer, or a hang."""

    kind: Literal["error", "timeout"]
    status: int | None = None  # the error status; None for a hang


class FaultInjector:
    """Holds the current `FaultConfig` and the seeded random source; thread-safe."""

    def __init__(self, config: FaultConfig) -> None:
        self._lock = threading.Lock()
        self._config = dataclasses.replace(config)
        self._random = random.Random(config.seed)

    @property
    def config(self) -> FaultConfig:
        """A copy of the current configuration (with the counters as they stand)."""
        with self._lock:
            return dataclasses.replace(self._config)

    def update(self, **changes: Any) -> FaultConfig:
        """Change some fields (validated as a whole); a new `seed` restarts the random source."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(FaultConfig)}
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        with self._lock:
            self._config = dataclasses.replace(self._config, **changes)
            if "seed" in changes:
                self._random = random.Random(self._config.seed)
            return dataclasses.replace(self._config)

    def before_processing(self) -> InjectedFault | None:
        """Pick the fault for a request about to be processed, if any.

        `fail_next` wins and is deterministic; otherwise one random draw decides between a
        hang (`timeout_rate`), an error (`error_rate`) and no fault.
        """
        with self._lock:
            config = self._config
            if config.fail_next > 0:
                config.fail_next -= 1
                return InjectedFault(kind="error", status=503)
            if config.timeout_rate == 0 and config.error_rate == 0:
                return None
            draw = self._random.random()
            if draw < config.timeout_rate:
                return InjectedFault(kind="timeout")
            if draw < config.timeout_rate + config.error_rate:
                return InjectedFault(kind="error", status=self._random.choice((500, 503)))
            return None

    def fails_for(self, external_ids: set[str]) -> bool:
        """True if the request carries a user whose every request must fail (`fail_external_ids`)."""
        with self._lock:
            return not external_ids.isdisjoint(self._config.fail_external_ids)

    def take_ack_lost(self) -> bool:
        """True (and one less to go) if this written request's answer must be dropped."""
        with self._lock:
            if self._config.ack_lost_next > 0:
                self._config.ack_lost_next -= 1
                return True
            return False

    @property
    def latency_seconds(self) -> float:
        return self._config.latency_ms / 1000

    @property
    def hang_seconds(self) -> float:
        return self._config.hang_seconds

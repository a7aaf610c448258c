"""A small per-process cache whose value is recomputed after a few seconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class TTLCache(Generic[T]):
    """Holds what ``compute`` returned for ``ttl`` seconds; ``clear()`` forgets it at once.

    For configuration read on hot paths, where another process's change may take ``ttl`` to be seen.
    """

    def __init__(self, compute: Callable[[], T], *, ttl: float):
        self.compute = compute
        self.ttl = ttl
        self._entry: tuple[float, T] | None = None

    def get(self) -> T:
        now = time.monotonic()
        entry = self._entry
        if entry is not None and entry[0] > now:
            return entry[1]
        value = self.compute()
        self._entry = (now + self.ttl, value)
        return value

    def clear(self) -> None:
        self._entry = None

"""Database errors that pass: a deadlock, a serialization failure, SQLite's "database is locked".

The database rolled the whole transaction back, so running the same unit of work again is safe and
usually succeeds. ``retry_transient`` does that a few times with a short backoff, but only around a
whole transaction: inside a caller's transaction the work cannot be redone alone (PostgreSQL has
aborted the caller's transaction too), so the error goes up to whoever owns the transaction.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import DatabaseError, transaction

logger = logging.getLogger(__name__)

ATTEMPTS = 4
BACKOFF_SECONDS = 0.05  # doubled after each attempt, with jitter: about 0.05, 0.1, 0.2 s

# SQLSTATEs PostgreSQL uses for "try the transaction again".
_POSTGRES_TRANSIENT = {
    "40P01": "deadlock detected",
    "40001": "serialization failure",
}
_SQLITE_TRANSIENT = ("database is locked", "database table is locked")

P = ParamSpec("P")
R = TypeVar("R")


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is a database error that a new transaction may not meet again."""
    if not isinstance(error, DatabaseError):
        return False
    cause = error.__cause__
    sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    if sqlstate in _POSTGRES_TRANSIENT:
        return True
    return any(text in str(error) for text in _SQLITE_TRANSIENT)


def retry_transient(func: Callable[P, R]) -> Callable[P, R]:
    """Runs ``func`` again (up to ``ATTEMPTS`` times in all) when it fails with a transient database error.

    ``func`` must be one whole atomic unit: all its writes in one transaction that it opens itself.
    When called inside a transaction, ``func`` runs once and its errors are raised as they are.
    """

    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        attempt = 1
        while True:
            try:
                return func(*args, **kwargs)
            except DatabaseError as error:
                if attempt >= ATTEMPTS or not is_transient(error) or transaction.get_connection().in_atomic_block:
                    raise
                delay = BACKOFF_SECONDS * 2 ** (attempt - 1) * random.uniform(1, 2)
                logger.warning(
                    "%s: transient database error (%s), attempt %d of %d; retrying in %.2f s.",
                    getattr(func, "__qualname__", func), str(error).splitlines()[0], attempt, ATTEMPTS, delay,
                )
                time.sleep(delay)
                attempt += 1

    return run

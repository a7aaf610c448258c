"""One rate limiter shared by every worker process: Redis when it is there, else the database.

Braze counts requests per fixed window (3,000 per 3 s by default). Our windows and Braze's are
not aligned, so a plain fixed window could send up to twice the limit across a boundary. The
window is cut into n slices, each allowed ``limit // (n + 1)`` requests: any interval as long as
the window touches at most n + 1 slices, so it never carries more than the limit. n is chosen to
let the most through (about 97 % of 3,000 per 3 s; 19 of 20 per second).

The database-backed counter lets a sender take several requests' worth of one slice at once
(``ahead``) and use them locally: one statement, and one commit, for several requests rather
than one each. What is not used by the end of the slice is lost, never carried into the next.
"""

from __future__ import annotations

import threading
import time
from functools import cache

from django.conf import settings
from django.db import connection as db_connection

from loyaltysync.on_commit import committed_without_waiting_for_disk

from . import interrupts
from .models import Connection, RateLimitWindow

MAX_SLICES = 50

_local = threading.local()  # this thread's unused permits: {connection id: (slice, count)}


@cache
def _best_slices(limit: int) -> int:
    """The number of slices that lets the most requests through a window (fewest on a tie)."""
    if limit < 2:
        return 1
    return max(range(1, MAX_SLICES + 1), key=lambda n: (n * (limit // (n + 1)), -n))


def slice_budget(connection: Connection) -> tuple[float, int]:
    """(slice length in seconds, requests allowed per slice)."""
    slices = _best_slices(connection.rate_limit_requests)
    return connection.rate_limit_seconds / slices, max(1, connection.rate_limit_requests // (slices + 1))


def acquire(connection: Connection, *, max_wait: float = 30.0, ahead: int = 1) -> float:
    """Block until one request may be sent; returns the seconds waited. Raises ``TimeoutError`` past ``max_wait``.

    ``ahead``: how many requests the caller is about to send; with the database counter up to that
    many are taken at once (see the module's docstring)."""
    length, allowed = slice_budget(connection)
    waited = 0.0
    while True:
        now = time.time()
        slice_start = int(now / length)
        if _use_reserved(connection.pk, slice_start):
            return waited
        if _take(connection.pk, slice_start, allowed, ttl=max(2, int(length * 2) + 1), ahead=ahead):
            return waited
        pause = (slice_start + 1) * length - now + 0.001
        if waited + pause > max_wait:
            raise TimeoutError("rate limit budget exhausted")
        with interrupts.wait_interruptibly():
            time.sleep(pause)
        waited += pause


def _use_reserved(connection_id: int, slice_start: int) -> bool:
    reserved = getattr(_local, "reserved", None)
    if reserved is None:
        reserved = _local.reserved = {}
    held = reserved.get(connection_id)
    if held is None or held[0] != slice_start or held[1] <= 0:
        return False
    reserved[connection_id] = (slice_start, held[1] - 1)
    return True


def _reserve(connection_id: int, slice_start: int, count: int) -> None:
    if count > 0:
        if getattr(_local, "reserved", None) is None:
            _local.reserved = {}
        _local.reserved[connection_id] = (slice_start, count)


def _take(connection_id: int, slice_start: int, allowed: int, *, ttl: int, ahead: int = 1) -> bool:
    if settings.REDIS_URL:
        key = f"loyaltysync:braze-rate:{connection_id}:{slice_start}"
        client = _redis()
        pipe = client.pipeline()
        pipe.incr(key)
        pipe.expire(key, ttl)
        count, _ = pipe.execute()
        return count <= allowed
    take = max(1, min(ahead, allowed))
    for count in dict.fromkeys((take, 1)):
        if _count_up(connection_id, slice_start, count, allowed):
            _reserve(connection_id, slice_start, count - 1)
            return True
    return False


def _count_up(connection_id: int, slice_start: int, count: int, allowed: int) -> bool:
    """Add ``count`` to the slice's counter if it stays within ``allowed``: one statement (an upsert).

    On PostgreSQL, outside a caller's transaction, it commits without waiting for the disk (one
    transaction with ``synchronous_commit`` off): the wait was several milliseconds per call, and
    what a crash of the database server can lose is a count of the slice then current, a few
    seconds' budget that Braze's own limit and its 429 still guard."""
    table = db_connection.ops.quote_name(RateLimitWindow._meta.db_table)
    with committed_without_waiting_for_disk(), db_connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (connection_id, window_start, count) VALUES (%s, %s, %s) "
            f"ON CONFLICT (connection_id, window_start) DO UPDATE SET count = {table}.count + EXCLUDED.count "
            f"WHERE {table}.count + EXCLUDED.count <= %s",
            [connection_id, slice_start, count, allowed])
        return cursor.rowcount > 0


def prune(connection_id: int, *, older_than: float = 3600) -> int:
    """Delete database windows older than ``older_than`` seconds (they are never read again)."""
    connection = Connection.objects.filter(pk=connection_id).first()
    if connection is None:
        return 0
    length, _ = slice_budget(connection)
    cutoff = int((time.time() - older_than) / length)
    deleted, _ = RateLimitWindow.objects.filter(connection_id=connection_id, window_start__lt=cutoff).delete()
    return deleted


@cache
def _redis():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL)

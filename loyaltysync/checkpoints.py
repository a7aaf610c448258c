"""Checkpoints of SQLite's write-ahead log on the workers' commits, not on the users' saves.

A checkpoint copies the log into the database file: 2-3 ms for SQLite's default of 1,000 pages, spent
by whichever commit crosses the mark. A worker's writes fill the log too, so under load that was often
a user's save (the p99 of a save with the sync on was 2.3-3.5 ms, its p50 0.2 ms). Web processes and
commands now wait for 4,000 pages, django-q2's workers for 1,000 (from ``post_spawn``), so the worker
does the copying. Without a running worker a web process checkpoints at 4,000 pages (16 MB of log):
still bounded, and within one hash table of SQLite's log index, so reads do not slow down.
"""

from __future__ import annotations

from django.db import connections

WEB_PAGES = 4000
WORKER_PAGES = 1000
_pages = WEB_PAGES  # this process's


def apply(sender=None, connection=None, **kwargs) -> None:
    """``connection_created``: a new SQLite connection checkpoints at this process's mark."""
    if connection is not None and connection.vendor == "sqlite":
        connection.connection.execute(f"PRAGMA wal_autocheckpoint = {_pages}")


def worker_started(**kwargs) -> None:
    """django-q2's ``post_spawn``: this process's commits take on the checkpoints."""
    global _pages
    _pages = WORKER_PAGES
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None:
            apply(connection=connection)

"""Deferring work to the end of the current transaction, once however often it is asked for; and
commits that need not wait for the disk."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import transaction


def on_commit_once(func: Callable[[], object], *, using: str | None = None) -> None:
    """Run ``func`` when the current transaction commits, unless it is already waiting to run then.

    Outside a transaction it runs at once (as ``transaction.on_commit`` does); a rollback drops it.
    """
    conn = transaction.get_connection(using)
    if conn.in_atomic_block and any(waiting is func for _, waiting, _ in conn.run_on_commit):
        return
    transaction.on_commit(func, using=using)


def commit_without_waiting_for_disk() -> None:
    """Let the current transaction commit without waiting for its WAL to reach the disk (PostgreSQL's
    ``synchronous_commit`` off, for this transaction only; SQLite in WAL mode with ``synchronous=NORMAL``
    does so already). For work whose loss in a crash of the database server a moment later is harmless.
    Only in a transaction of the caller's own (the outermost block): inside another's, ``SET LOCAL``
    would reach that one's other work too."""
    conn = transaction.get_connection()
    if conn.vendor == "postgresql" and len(conn.atomic_blocks) == 1:
        with conn.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


@contextmanager
def committed_without_waiting_for_disk() -> Iterator[None]:
    """Run the block's statements in a transaction of their own that ``commit_without_waiting_for_disk``;
    inside a caller's transaction, or where commits do not wait anyway (SQLite), as they would run."""
    conn = transaction.get_connection()
    if conn.vendor != "postgresql" or conn.in_atomic_block:
        yield
        return
    with transaction.atomic():
        commit_without_waiting_for_disk()
        yield

"""Deferring work to the end of the current transaction, once however often it is asked for."""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction


def on_commit_once(func: Callable[[], object], *, using: str | None = None) -> None:
    """Run ``func`` when the current transaction commits, unless it is already waiting to run then.

    Outside a transaction it runs at once (as ``transaction.on_commit`` does); a rollback drops it.
    """
    conn = transaction.get_connection(using)
    if conn.in_atomic_block and any(waiting is func for _, waiting, _ in conn.run_on_commit):
        return
    transaction.on_commit(func, using=using)

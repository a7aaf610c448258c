"""The embedded database's backend (``loyaltysync.db.sqlite3``): a transaction waits for SQLite's
write lock in short steps, and checkpoints of the write-ahead log fall on the workers' commits."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from django.db import OperationalError, connection, transaction

from loyaltysync.db.sqlite3 import base
from loyaltysync.models import Tier

pytestmark = [
    pytest.mark.skipif(connection.vendor != "sqlite", reason="the SQLite backend"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def other_writer():
    """A second process's connection to the same database file, as a worker's would be."""
    connection.ensure_connection()
    other = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None, check_same_thread=False)
    yield other
    if other.in_transaction:
        other.execute("ROLLBACK")
    other.close()


@pytest.fixture
def sleeps(monkeypatch):
    waits: list[float] = []
    real_sleep = base.time.sleep

    def recorded(seconds):
        waits.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(base.time, "sleep", recorded)
    return waits


def busy_timeout() -> int:
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        return cursor.fetchone()[0]


def test_a_transaction_waits_for_another_writer_in_short_steps(other_writer, sleeps):
    other_writer.execute("BEGIN IMMEDIATE")
    threading.Timer(0.03, other_writer.execute, ["COMMIT"]).start()

    with transaction.atomic():
        Tier.objects.create(name="Waited", points_threshold=12345)

    assert Tier.objects.filter(name="Waited").exists()
    # SQLite's own handler would sleep 1 ms, 2 ms, 5 ms, ... inside the C library: nothing recorded here.
    assert sleeps, "the transaction did not wait in Python's short steps"
    assert sleeps[0] == base.FIRST_WAIT
    assert max(sleeps) <= base.LONGEST_WAIT
    assert busy_timeout() == 30_000  # SQLite's own wait is back for statements outside transactions


def test_a_lock_held_past_the_timeout_fails_as_sqlite_does(other_writer, sleeps, monkeypatch):
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "timeout", 0.05)
    other_writer.execute("BEGIN IMMEDIATE")

    with pytest.raises(OperationalError, match="database is locked"), transaction.atomic():
        Tier.objects.create(name="Never", points_threshold=54321)

    other_writer.execute("ROLLBACK")
    assert sum(sleeps) <= 0.05
    assert busy_timeout() == 50  # restored (to this connection's timeout) after the failure too
    assert not Tier.objects.filter(name="Never").exists()
    with transaction.atomic():  # the connection is usable again
        Tier.objects.create(name="After", points_threshold=54322)


def wal_autocheckpoint() -> int:
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_autocheckpoint")
        return cursor.fetchone()[0]


def test_workers_take_the_checkpoints(monkeypatch):
    monkeypatch.setattr(base, "CHECKPOINT_PAGES", base.WEB_CHECKPOINT_PAGES)  # a process started afresh
    connection.close()
    assert wal_autocheckpoint() == 4000  # a web process or a command

    from django_q.signals import post_spawn

    post_spawn.send(sender="django_q", proc_name="Process-1")  # a django-q2 worker starts
    assert wal_autocheckpoint() == 1000  # the connection it has
    connection.close()
    assert wal_autocheckpoint() == 1000  # and every one it opens
    monkeypatch.undo()
    connection.close()

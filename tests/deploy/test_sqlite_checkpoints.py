"""On SQLite, checkpoints of the write-ahead log fall on the django-q2 workers' commits: web
processes and commands wait for 4,000 pages of log, workers for 1,000 (``loyaltysync.checkpoints``)."""

from __future__ import annotations

import pytest
from django.db import connection
from django_q.signals import post_spawn

from loyaltysync import checkpoints

pytestmark = [
    pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's write-ahead log"),
    pytest.mark.django_db(transaction=True),
]


def wal_autocheckpoint() -> int:
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_autocheckpoint")
        return cursor.fetchone()[0]


def test_a_worker_takes_the_checkpoints_and_other_processes_leave_them(monkeypatch):
    # A process started afresh (another test may have run the worker's start in this one).
    monkeypatch.setattr(checkpoints, "_pages", checkpoints.WEB_PAGES)
    connection.close()
    assert wal_autocheckpoint() == 4000  # a web process or a command: SQLite's default is 1,000

    post_spawn.send(sender="django_q", proc_name="Process-1")  # a django-q2 worker starts
    assert wal_autocheckpoint() == 1000  # the connection it has
    connection.close()
    assert wal_autocheckpoint() == 1000  # and every one it opens
    monkeypatch.undo()
    connection.close()

"""Database connections are kept between a worker's polls and tasks, on SQLite as on PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import connection
from django_q.brokers.orm import ORM
from django_q.conf import Conf


@pytest.mark.django_db(transaction=True)  # the broker closes old connections only outside a transaction
def test_the_orm_brokers_idle_polls_reuse_one_database_connection(monkeypatch):
    monkeypatch.setattr(Conf, "POLL", 0.0)
    broker = ORM(list_key="test-idle-polls")
    assert broker.dequeue() is None  # nothing queued: an idle poll
    opened = connection.connection
    assert opened is not None

    for _ in range(3):
        assert broker.dequeue() is None

    # Opening a connection per poll cost about 2 ms of CPU on SQLite, ten times a second per cluster.
    assert connection.connection is opened

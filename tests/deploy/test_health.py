"""/healthz and /readyz: each readiness check passing and failing, with what the answer may reveal.

The checks run in threads with their own database connections, so these tests commit their data
(transactional_db). Worker stats are written as a qcluster's sentinel writes them, under a cluster
prefix of the test's own, so real clusters of other tests are never seen.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
from django.db import OperationalError, connections
from django.urls import reverse
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.signing import SignedPackage
from django_q.status import Stat, Status

from braze_integration.models import Connection, ConnectionStatus
from loyaltysync.health import ThreadedCheck

SECRET_URL = "https://rest.fra-01.braze.eu"
SECRET_MESSAGE = "Braze said: invalid key sk-live-0123456789"


@pytest.fixture(autouse=True)
def own_cluster_prefix(monkeypatch):
    monkeypatch.setattr(Conf, "Q_STAT", f"django_q:health-test-{uuid.uuid4().hex}:cluster")


def worker_stats_save(*, status: str = Conf.IDLE, age_seconds: float = 0) -> None:
    """What a running qcluster's sentinel saves every half second."""
    stat = Status(pid=4242, cluster_id=uuid.uuid4())
    stat.status = status
    stat.timestamp = timezone.now() - timedelta(seconds=age_seconds)
    get_broker().set_stat(Stat.get_key(stat.cluster_id), SignedPackage.dumps(stat, True), 30)


def connection_create(status: str) -> Connection:
    return Connection.objects.create(
        instance_url=SECRET_URL, api_key="sk-live-0123456789abcdef", status=status, last_message=SECRET_MESSAGE
    )


def readiness(client):
    response = client.get(reverse("readyz"))
    return response.status_code, response.json()


def failed_checks(body: dict) -> dict[str, str]:
    return {name: check["error"] for name, check in body["checks"].items() if not check["ok"]}


def test_liveness_answers_without_touching_the_database(client):
    # No db fixture: any database access in this test raises.
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "alive"}
    assert "no-cache" in response["Cache-Control"]


def test_ready_when_every_check_passes_without_logging_in(client, transactional_db):
    worker_stats_save()
    connection_create(ConnectionStatus.CONNECTED)

    status, body = readiness(client)

    assert status == 200
    assert body == {
        "status": "ready",
        "checks": {"database": {"ok": True}, "broker": {"ok": True}, "worker": {"ok": True},
                   "braze_connection": {"ok": True}},
    }


def test_ready_without_an_active_connection_or_before_the_first_connect(client, transactional_db):
    worker_stats_save()
    assert readiness(client)[0] == 200

    connection_create(ConnectionStatus.NEVER_CHECKED)
    assert readiness(client)[0] == 200


def test_a_failing_database_is_named_without_the_drivers_words(client, transactional_db, monkeypatch):
    worker_stats_save()

    def refuse(self):
        raise OperationalError('connection to server at "10.9.8.7", port 5432 failed: password authentication '
                               'failed for user "loyalty"')

    monkeypatch.setattr(type(connections["default"]), "temporary_connection", refuse)

    status, body = readiness(client)

    assert status == 503
    assert body["status"] == "unavailable"
    assert failed_checks(body) == {"database": "the database does not answer"}
    assert "10.9.8.7" not in str(body) and "password" not in str(body)


def test_a_broker_that_does_not_answer_is_named(client, transactional_db, monkeypatch):
    worker_stats_save()

    class DownBroker:
        def ping(self):
            raise ConnectionError("Error 111 connecting to redis://:hunter2@10.9.8.7:6379")

    monkeypatch.setattr("loyaltysync.health.get_broker", lambda: DownBroker())
    monkeypatch.setattr("loyaltysync.health.Stat.get_all", lambda broker: [])

    status, body = readiness(client)

    assert status == 503
    assert set(failed_checks(body)) == {"broker", "worker"}
    assert failed_checks(body)["broker"] == "the task broker does not answer"
    assert "hunter2" not in str(body)


@pytest.mark.parametrize(
    "given",
    ["no stats", "stale stats", "stopped cluster"],
)
def test_no_worker_seen_recently_is_named(given, client, transactional_db, settings):
    settings.HEALTH_WORKER_SEEN_SECONDS = 30
    if given == "stale stats":
        worker_stats_save(age_seconds=31)
    elif given == "stopped cluster":
        worker_stats_save(status=Conf.STOPPED)

    status, body = readiness(client)

    assert status == 503
    assert failed_checks(body) == {"worker": "no task worker (qcluster) seen in the last 30 seconds"}


def test_a_connection_that_needs_attention_is_named_without_its_url_key_or_message(client, transactional_db):
    worker_stats_save()
    connection_create(ConnectionStatus.NEEDS_ATTENTION)

    status, body = readiness(client)

    assert status == 503
    assert failed_checks(body) == {
        "braze_connection": "the Braze connection needs attention (see the connection in the admin)"
    }
    text = str(body)
    assert SECRET_URL not in text and "sk-live" not in text and "invalid key" not in text


class Hangs(ThreadedCheck):
    timeout = timedelta(seconds=0.2)

    def check(self) -> None:
        time.sleep(2)


class Breaks(ThreadedCheck):
    def check(self) -> None:
        raise KeyError("internal detail sk-live-0123456789")


def test_a_check_that_hangs_or_breaks_fails_in_time_without_details(client, transactional_db, settings):
    settings.HEALTH_CHECKS = {"slow": f"{__name__}.Hangs", "broken": f"{__name__}.Breaks"}
    started = time.monotonic()

    status, body = readiness(client)

    assert time.monotonic() - started < 1.5
    assert status == 503
    assert failed_checks(body) == {"slow": "no answer within 0.2 seconds", "broken": "unknown error"}

"""Alerts to ADMINS: one e-mail when an alarm is raised, one when it clears, whoever checks and how often."""

from __future__ import annotations

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import connections
from django.utils import timezone

from braze_integration import alerts, monitoring, services, tasks
from braze_integration.models import (
    AlertState,
    Connection,
    ConnectionStatus,
    MemberChange,
    MemberSyncState,
    SyncStatus,
)
from loyaltysync.models import Member
from tests.braze.members import make_member
from tests.conftest import SANDBOX_KEY


@pytest.fixture(autouse=True)
def admins(settings):
    settings.ADMINS = [("ops", "ops@example.com")]
    settings.BRAZE_FLUSH_LINGER_SECONDS = 0
    settings.BRAZE_ALARM_PENDING_SECONDS = 600
    monitoring.heartbeat_forget()
    yield
    monitoring.heartbeat_forget()


def subjects() -> list[str]:
    return [message.subject.removeprefix("[loyaltysync] ") for message in mail.outbox]


def stall(member: Member) -> None:
    """The member was saved 30 minutes ago and no worker has looked since (its change is not folded)."""
    assert MemberChange.objects.filter(member_id=member.pk).update(changed_at=timezone.now() - timedelta(minutes=30))


def test_given_the_connection_breaks_and_heals_then_admins_hear_once_each_way(braze_connection):
    assert alerts.alerts_check() == [] and mail.outbox == []  # all well: nothing to say, not even "recovered"

    Connection.objects.filter(pk=braze_connection.pk).update(
        status=ConnectionStatus.NEEDS_ATTENTION, last_message="Braze does not accept this API key")
    alerts.alerts_check()
    alerts.alerts_check()

    assert subjects() == ["Braze sync: the connection needs attention"]
    assert mail.outbox[0].to == ["ops@example.com"] and "does not accept this API key" in mail.outbox[0].body

    Connection.objects.filter(pk=braze_connection.pk).update(status=ConnectionStatus.CONNECTED)
    alerts.alerts_check()
    alerts.alerts_check()

    assert subjects() == ["Braze sync: the connection needs attention", "Braze sync: the connection works again"]


def test_given_old_pending_work_and_no_worker_then_one_alert_and_one_when_workers_return(braze_connection):
    stall(make_member("m-1"))

    output = StringIO()
    call_command("braze_alerts", stdout=output)
    call_command("braze_alerts", stdout=StringIO())

    assert subjects() == ["Braze sync: changes are waiting and no worker is running"]
    assert "Sent: Braze sync: changes are waiting" in output.getvalue()
    assert "Start `manage.py qcluster`" in mail.outbox[0].body

    tasks.sync_periodic()  # a worker runs its periodic task: it beats, then checks

    assert subjects()[1:] == ["Braze sync: workers are running again"]
    assert AlertState.objects.get(name=monitoring.STALLED).active is False


def test_given_sending_the_mail_fails_then_the_next_check_sends_it(braze_connection, monkeypatch, caplog):
    stall(make_member("m-1"))
    real = alerts.mail_admins

    def broken(*args, **kwargs):
        raise ConnectionRefusedError("no SMTP server")

    monkeypatch.setattr(alerts, "mail_admins", broken)
    assert alerts.alerts_check() == []
    assert AlertState.objects.get(name=monitoring.STALLED).active is False
    assert "Could not send the alert" in caplog.text

    monkeypatch.setattr(alerts, "mail_admins", real)
    assert alerts.alerts_check() == ["Braze sync: changes are waiting and no worker is running"]
    assert len(mail.outbox) == 1


def test_given_several_processes_check_at_once_then_one_mail_is_sent(transactional_db, braze_connection):
    stall(make_member("m-1"))
    barrier = threading.Barrier(4)
    errors = []

    def check():
        try:
            barrier.wait()
            alerts.alerts_check()
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert subjects() == ["Braze sync: changes are waiting and no worker is running"]


def test_given_braze_refuses_the_key_for_many_members_then_one_mail_and_one_after_connect(
        braze_connection, sandbox, caplog):
    """Over real HTTP, as a worker runs it: 20 members meet a refused key."""
    Member.objects.bulk_create(Member(member_id=f"k-{i}", first_name="Ada") for i in range(20))
    services.member_sync_enqueue(member_ids=Member.objects.values_list("pk", flat=True), schedule=False)
    sandbox.set_keys(["another-key-entirely-000000"])

    tasks.sync_flush()
    tasks.sync_periodic()
    tasks.sync_flush()
    tasks.sync_periodic()

    assert Connection.objects.get(pk=braze_connection.pk).status == ConnectionStatus.NEEDS_ATTENTION
    assert subjects() == ["Braze sync: the connection needs attention"]
    assert "the connection needs attention" in caplog.text

    sandbox.set_keys([SANDBOX_KEY])
    assert services.connection_verify(connection=braze_connection).ok
    tasks.sync_flush()
    tasks.sync_periodic()

    assert subjects() == ["Braze sync: the connection needs attention", "Braze sync: the connection works again"]
    assert MemberSyncState.objects.filter(status=SyncStatus.SYNCED).count() == 20


def test_a_metrics_scrape_checks_the_alarms_when_no_worker_is_left(client, settings, braze_connection):
    settings.METRICS_TOKEN = "scrape-token-0123456789"
    stall(make_member("m-1"))

    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-0123456789").status_code == 200

    assert subjects() == ["Braze sync: changes are waiting and no worker is running"]

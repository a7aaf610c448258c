"""`GET /metrics`: the sync's figures for Prometheus, for authorised scrapers only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.authtoken.models import Token

from braze_integration import monitoring, services
from braze_integration.models import (
    Connection,
    ConnectionStatus,
    MemberSyncState,
    OutboxItem,
    OutboxStatus,
    RequestOutcome,
    SyncHeartbeat,
    SyncRequest,
    SyncStatus,
)
from loyaltysync.models import Member
from tests.braze.members import make_member

URL = "/metrics"
TOKEN = "scrape-token-0123456789"


@pytest.fixture
def metrics_on(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ENABLED = True


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    response = client.get(URL, **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def bearer(token: str = TOKEN) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def staff(*, with_permission: bool):
    user = get_user_model().objects.create_user("scraper", is_staff=True)
    if with_permission:
        user.user_permissions.add(Permission.objects.get(codename="view_metrics"))
    return user


def test_given_metrics_not_configured_then_404(client, settings, db):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ENABLED = False

    assert client.get(URL).status_code == 404
    assert client.get(URL, **bearer("")).status_code == 404


def test_given_no_or_a_wrong_token_then_401_and_the_right_token_reads(client, metrics_on, db):
    anonymous = client.get(URL)
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"].startswith("Bearer")
    assert b"pending" not in anonymous.content
    assert client.get(URL, **bearer("scrape-token-wrong")).status_code == 401
    assert client.get(URL, HTTP_AUTHORIZATION="Token not-a-token").status_code == 401

    assert ("loyaltysync_braze_members", (("status", "pending"),)) in scrape(client, **bearer())


def test_given_a_user_then_only_the_view_metrics_permission_reads(client, metrics_on, db):
    user = staff(with_permission=False)
    client.force_login(user)
    assert client.get(URL).status_code == 403
    api_token = Token.objects.create(user=user)
    assert client.get(URL, HTTP_AUTHORIZATION=f"Token {api_token.key}").status_code == 403

    user.user_permissions.add(Permission.objects.get(codename="view_metrics"))
    client.logout()
    scrape(client, HTTP_AUTHORIZATION=f"Token {api_token.key}")
    client.force_login(get_user_model().objects.get(pk=user.pk))
    scrape(client)


def test_given_metrics_enabled_without_a_token_then_no_bearer_token_opens_them(client, settings, db):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ENABLED = True

    assert client.get(URL, **bearer("")).status_code == 401
    assert client.get(URL, **bearer("anything")).status_code == 401
    client.force_login(staff(with_permission=True))
    scrape(client)


def test_the_figures_are_the_sync_state(client, metrics_on, db):
    connection = Connection.objects.create(name="Braze", instance_url="https://rest.fra-01.braze.eu",
                                           status=ConnectionStatus.NEEDS_ATTENTION)
    members = [Member.objects.create(member_id=f"m-{i}") for i in range(4)]
    now = timezone.now()
    MemberSyncState.objects.bulk_create([
        MemberSyncState(member=members[0], status=SyncStatus.PENDING, dirty_since=now - timedelta(minutes=5)),
        MemberSyncState(member=members[1], status=SyncStatus.PENDING, dirty_since=now - timedelta(minutes=1)),
        MemberSyncState(member=members[2], status=SyncStatus.DEAD),
        MemberSyncState(member=members[3], status=SyncStatus.SYNCED),
    ])
    item = OutboxItem.objects.create(member=members[0], kind="event", payload={}, status=OutboxStatus.PENDING)
    OutboxItem.objects.filter(pk=item.pk).update(created_at=now - timedelta(minutes=3))
    OutboxItem.objects.create(member=members[2], kind="event", payload={}, status=OutboxStatus.DEAD)
    SyncRequest.objects.create(connection=connection, outcome=RequestOutcome.SUCCESS)
    SyncRequest.objects.create(connection=connection, outcome=RequestOutcome.AUTH_ERROR)
    old = SyncRequest.objects.create(connection=connection, outcome=RequestOutcome.SUCCESS)
    SyncRequest.objects.filter(pk=old.pk).update(created_at=now - timedelta(hours=2))
    seen, success = now - timedelta(seconds=30), now - timedelta(minutes=10)
    SyncHeartbeat.objects.create(pk=1, worker_seen_at=seen, last_success_at=success)

    figures = scrape(client, **bearer())

    def figure(name, **labels):
        return figures[(f"loyaltysync_braze_{name}", tuple(sorted(labels.items())))]

    assert figure("members", status="pending") == 2 and figure("members", status="dead") == 1
    assert figure("members", status="synced") == 1
    assert 295 <= figure("oldest_pending_member_seconds") <= 330
    assert figure("outbox_items", status="pending") == 1 and figure("outbox_items", status="dead") == 1
    assert 175 <= figure("oldest_pending_outbox_seconds") <= 210
    assert figure("last_success_timestamp_seconds") == pytest.approx(success.timestamp())
    assert figure("worker_last_seen_timestamp_seconds") == pytest.approx(seen.timestamp())
    assert figure("connection_state", state="needs_attention") == 1
    assert figure("connection_state", state="connected") == 0
    assert figure("requests_last_hour", outcome="success") == 1
    assert figure("requests_last_hour", outcome="auth") == 1
    assert figure("alarm", alarm="connection") == 1 and figure("alarm", alarm="stalled") == 0


@pytest.mark.usefixtures("q_sync")
def test_given_a_sync_over_http_then_the_scrape_shows_it(client, metrics_on, braze_connection, sandbox):
    monitoring.heartbeat_forget()
    for i in range(3):
        make_member(f"m-{i}")
    services.member_sync_now(member_ids=Member.objects.values_list("pk", flat=True))

    figures = scrape(client, **bearer())

    assert figures[("loyaltysync_braze_members", (("status", "synced"),))] == 3
    assert figures[("loyaltysync_braze_members", (("status", "pending"),))] == 0
    assert figures[("loyaltysync_braze_requests_last_hour", (("outcome", "success"),))] >= 1
    assert figures[("loyaltysync_braze_last_success_timestamp_seconds", ())] > timezone.now().timestamp() - 60
    assert figures[("loyaltysync_braze_connection_state", (("state", "connected"),))] == 1

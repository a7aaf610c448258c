"""The sync dashboard: the numbers, each linked to the changelist behind it, and the 24-hour chart."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from braze_integration.admin_views import objects_per_hour
from braze_integration.models import MemberSyncState, OutboxItem, RequestOutcome, SyncRequest, SyncStatus
from loyaltysync.models import Member

pytestmark = pytest.mark.usefixtures("q_sync")

DASHBOARD = "/admin/braze_integration/connection/dashboard/"


def test_the_dashboard_url_and_its_links_from_the_index_and_the_connection(admin_client, braze_connection):
    assert reverse("admin:braze_integration_dashboard") == DASHBOARD
    assert DASHBOARD in admin_client.get(reverse("admin:index")).content.decode()
    assert (
        DASHBOARD in admin_client.get(reverse("admin:app_list", args=["braze_integration"])).content.decode()
    )
    assert (
        DASHBOARD
        in admin_client.get(
            reverse("admin:braze_integration_connection_change", args=[braze_connection.pk])
        ).content.decode()
    )


def test_the_dashboard_counts_members_requests_and_errors_and_links_each_number(
    admin_client, braze_connection, sandbox
):
    members = [Member.objects.create(member_id=f"m-{i}", first_name="Ada") for i in range(4)]
    MemberSyncState.objects.filter(pk=members[0].pk).update(status=SyncStatus.FAILED)
    MemberSyncState.objects.filter(pk=members[1].pk).update(status=SyncStatus.DEAD)
    MemberSyncState.objects.filter(pk=members[2].pk).update(
        status=SyncStatus.PENDING, dirty_since=timezone.now() - timedelta(minutes=30)
    )
    SyncRequest.objects.create(
        connection=braze_connection, outcome=RequestOutcome.RATE_LIMITED, http_status=429
    )
    OutboxItem.objects.create(member=members[3], kind="event", payload={}, status="sent", ambiguous_sends=1)
    OutboxItem.objects.create(member=members[3], kind="event", payload={}, status="sent")

    response = admin_client.get(DASHBOARD)

    assert response.status_code == 200
    figures = {label: (count, url) for label, count, url, _status in response.context["members"]}
    assert {label: count for label, (count, _url) in figures.items()} == {
        "Synced": 1,
        "Pending": 1,
        "Failed": 1,
        "Dead letter": 1,
    }
    page = response.content.decode()
    failed_url = figures["Failed"][1]
    assert failed_url.endswith("?status__exact=failed") and failed_url.replace("&", "&amp;") in page
    listed = admin_client.get(failed_url).context["cl"]
    assert [s.member_id for s in listed.result_list] == [members[0].pk]
    assert response.context["oldest_pending"] == "30 min"
    assert response.context["summary"]["requests_today"] == 5  # 4 syncs + the rate-limited one
    assert response.context["rate_limited"] == 1
    [(label, count, url)] = response.context["errors"]
    assert (label, count) == ("Rate limited (429)", 1)
    assert admin_client.get(url).context["cl"].result_count == 1
    assert admin_client.get(response.context["requests_today_url"]).context["cl"].result_count == 5
    assert 'id="braze-connection-state">Connected<' in page
    assert response.context["summary"]["ambiguous_event_sends"] == 1
    assert admin_client.get(response.context["ambiguous_url"]).context["cl"].result_count == 1


def test_the_chart_counts_objects_per_hour_for_24_hours(braze_connection):
    now = timezone.now()
    SyncRequest.objects.create(connection=braze_connection, attributes_count=10, events_count=2)
    old = SyncRequest.objects.create(connection=braze_connection, attributes_count=7)
    SyncRequest.objects.filter(pk=old.pk).update(created_at=now - timedelta(hours=3))
    ancient = SyncRequest.objects.create(connection=braze_connection, attributes_count=99)
    SyncRequest.objects.filter(pk=ancient.pk).update(created_at=now - timedelta(hours=30))

    hours = objects_per_hour(now=now)

    assert len(hours) == 24
    assert hours[-1][1:] == (12, 1)
    assert hours[-4][1:] == (7, 1)
    assert sum(objects for _, objects, _ in hours) == 19


def test_the_chart_bars_link_to_their_hour_of_requests(admin_client, braze_connection):
    SyncRequest.objects.create(connection=braze_connection, attributes_count=5)

    chart = admin_client.get(DASHBOARD).context["chart"]

    bar = chart["bars"][-1]
    assert bar.objects == 5 and bar.height == chart["height"]
    assert admin_client.get(bar.url).context["cl"].result_count == 1
    assert admin_client.get(chart["bars"][0].url).context["cl"].result_count == 0


def test_the_dashboard_needs_a_staff_user_with_view_permission(client, braze_connection, django_user_model):
    assert client.get(DASHBOARD).status_code == 302  # to the login page
    client.force_login(django_user_model.objects.create_user("nobody", is_staff=True))
    assert client.get(DASHBOARD).status_code == 403


def test_without_a_connection_the_dashboard_says_so(admin_client, db):
    page = admin_client.get(DASHBOARD).content.decode()
    assert "No active connection" in page and reverse("admin:braze_integration_connection_add") in page

"""Outbox items above what one request carries per member: the member is not done until they are all sent,
and the status counts the ones still waiting."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from braze_integration import building, services
from braze_integration.models import MemberSyncState, OutboxItem, OutboxStatus, SyncStatus

from .members import make_member

BACKLOG = building.MAX_OUTBOX_PER_MEMBER * 2 + 20  # three rounds' worth


def enqueue_events(member, count: int) -> None:
    with transaction.atomic():
        for index in range(count):
            services.outbox_enqueue(member_id=member.pk, kind="event",
                                    payload={"name": f"e{index}", "time": "2024-01-01T00:00:00Z"})


@pytest.mark.usefixtures("q_sync")
def test_given_more_events_than_one_request_carries_per_member_then_the_flush_sends_them_all(
        braze_connection, sandbox):
    member = make_member("o-1")

    enqueue_events(member, BACKLOG)

    assert len(sandbox.user("o-1")["events"]) == BACKLOG
    assert OutboxItem.objects.filter(status=OutboxStatus.PENDING).count() == 0
    assert MemberSyncState.objects.get(pk=member.pk).status == SyncStatus.SYNCED


def test_given_one_round_sent_part_of_the_events_then_the_member_stays_pending_until_the_rest_are_sent(
        braze_connection, sandbox):
    member = make_member("o-2")
    enqueue_events(member, BACKLOG)

    services.member_sync_now(member_ids=[member.pk])

    assert len(sandbox.user("o-2")["events"]) == building.MAX_OUTBOX_PER_MEMBER
    assert MemberSyncState.objects.get(pk=member.pk).status == SyncStatus.PENDING
    services.sync_flush()
    assert len(sandbox.user("o-2")["events"]) == BACKLOG
    assert MemberSyncState.objects.get(pk=member.pk).status == SyncStatus.SYNCED


def test_given_a_synced_member_with_events_left_behind_then_housekeeping_queues_it_and_the_flush_sends_them(
        braze_connection, sandbox):
    member = make_member("o-3")
    services.member_sync_now(member_ids=[member.pk])
    # As an earlier version left them: pending items under a member marked synced.
    OutboxItem.objects.bulk_create(
        OutboxItem(member=member, kind="event", payload={"name": f"left{i}", "time": "2024-01-01T00:00:00Z"})
        for i in range(3))

    services.sync_housekeeping()
    services.sync_flush()

    assert sorted(e["name"] for e in sandbox.user("o-3")["events"]) == ["left0", "left1", "left2"]
    assert OutboxItem.objects.filter(status=OutboxStatus.PENDING).count() == 0


def test_the_status_counts_pending_outbox_items_and_the_age_of_the_oldest(braze_connection, admin_client):
    member = make_member("o-4")
    services.member_sync_now(member_ids=[member.pk])
    OutboxItem.objects.bulk_create(
        OutboxItem(member=member, kind="event", payload={"name": f"e{i}", "time": "2024-01-01T00:00:00Z"})
        for i in range(5))
    OutboxItem.objects.filter(payload__name="e0").update(created_at=timezone.now() - timedelta(minutes=30))
    assert MemberSyncState.objects.get(pk=member.pk).status == SyncStatus.SYNCED  # the member looks done

    out = StringIO()
    call_command("braze_status", "--json", stdout=out)
    summary = json.loads(out.getvalue())
    text = StringIO()
    call_command("braze_status", stdout=text)
    dashboard = admin_client.get("/admin/braze_integration/connection/dashboard/")

    assert summary["outbox_pending"] == 5
    assert 30 * 60 <= summary["oldest_outbox_pending_seconds"] < 31 * 60
    assert "Outbox pending:  5 events" in text.getvalue() and re.search(r"oldest 18\d\ds", text.getvalue())
    assert dashboard.context["oldest_outbox_pending"] == "30 min"
    assert 'id="braze-outbox-oldest-pending">30 min<' in dashboard.content.decode()

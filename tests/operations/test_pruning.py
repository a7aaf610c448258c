"""`braze_prune` and its daily schedule: old log rows go in batches; what correctness needs stays."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from braze_integration import pruning, services
from braze_integration.models import (
    BrazeDeletion,
    Connection,
    DeletionStatus,
    MemberSyncState,
    OutboxItem,
    OutboxStatus,
    RequestOutcome,
    ResyncRun,
    ResyncStatus,
    SyncRequest,
    SyncRequestMember,
)
from loyaltysync.models import IdempotencyKey, Member
from tests.braze.members import make_member

OLD = timedelta(days=400)  # older than every default retention


def aged(request: SyncRequest, age: timedelta = OLD) -> SyncRequest:
    SyncRequest.objects.filter(pk=request.pk).update(created_at=timezone.now() - age)
    return request


@pytest.fixture
def connection(db):
    return Connection.objects.create(name="Braze", instance_url="https://rest.fra-01.braze.eu")


def latest_request_of(member, request) -> None:
    MemberSyncState.objects.update_or_create(member=member, defaults={"last_request": request, "status": "synced"})


def request_for(connection, *, outcome=RequestOutcome.SUCCESS, members=(), age=OLD) -> SyncRequest:
    request = SyncRequest.objects.create(connection=connection, outcome=outcome)
    for member in members:
        SyncRequestMember.objects.create(request=request, member=member)
    return aged(request, age)


def run_prune(*args) -> str:
    out = StringIO()
    call_command("braze_prune", *args, stdout=out)
    return out.getvalue()


def test_given_old_requests_when_pruning_then_only_those_nothing_needs_go(connection):
    ada, bob = Member.objects.create(member_id="ada"), Member.objects.create(member_id="bob")
    old_superseded = request_for(connection, members=[ada])
    ada_latest = request_for(connection, members=[ada], age=timedelta(days=100))
    latest_request_of(ada, ada_latest)
    still_sending = request_for(connection, outcome=RequestOutcome.SENDING)
    dead_event_request = request_for(connection, outcome=RequestOutcome.SERVER_ERROR)
    OutboxItem.objects.create(member=bob, kind="event", payload={"name": "x"}, status=OutboxStatus.DEAD,
                              request=dead_event_request)
    sent_event_request = request_for(connection)
    OutboxItem.objects.create(member=bob, kind="event", payload={"name": "y"}, status=OutboxStatus.SENT,
                              request=sent_event_request, sent_at=timezone.now())
    recent = request_for(connection, members=[bob], age=timedelta(days=1))
    refused_deletion = request_for(connection, outcome=RequestOutcome.AUTH_ERROR)
    BrazeDeletion.objects.create(member_hash="h" * 64, external_id="gone", status=DeletionStatus.FAILED,
                                 request=refused_deletion)

    preview = pruning.sync_prune(dry_run=True)
    assert preview.deleted["requests"] == 2
    assert SyncRequest.objects.count() == 7  # a dry run deletes nothing

    report = pruning.sync_prune()

    assert report.deleted["requests"] == 2
    assert set(SyncRequest.objects.values_list("pk", flat=True)) == {
        ada_latest.pk, still_sending.pk, dead_event_request.pk, recent.pk, refused_deletion.pk}
    assert not SyncRequestMember.objects.filter(request_id=old_superseded.pk).exists()
    assert MemberSyncState.objects.get(pk=ada.pk).last_request_id == ada_latest.pk
    assert OutboxItem.objects.get(status=OutboxStatus.DEAD).request_id == dead_event_request.pk
    assert sent_event_request.pk not in set(SyncRequest.objects.values_list("pk", flat=True))


def test_given_old_per_member_rows_when_pruning_then_each_members_latest_request_row_stays(connection, settings):
    settings.BRAZE_RETENTION_DAYS = {**settings.BRAZE_RETENTION_DAYS, "requests": 0}  # keep the requests
    ada, bob = Member.objects.create(member_id="ada"), Member.objects.create(member_id="bob")
    both = request_for(connection, members=[ada, bob])
    ada_latest = request_for(connection, members=[ada])
    latest_request_of(ada, ada_latest)
    latest_request_of(bob, both)

    report = pruning.sync_prune()

    assert report.deleted == {**report.deleted, "request_members": 1, "requests": 0}
    assert set(SyncRequestMember.objects.values_list("request_id", "member_id")) == {
        (both.pk, bob.pk), (ada_latest.pk, ada.pk)}


def test_given_outbox_items_when_pruning_then_only_old_sent_items_go(connection):
    member = Member.objects.create(member_id="ada")
    long_ago = timezone.now() - OLD
    kept = [
        OutboxItem.objects.create(member=member, kind="event", payload={}, status=status, dedupe_key=f"k-{status}")
        for status in (OutboxStatus.PENDING, OutboxStatus.FAILED, OutboxStatus.DEAD)
    ]
    OutboxItem.objects.filter(pk__in=[i.pk for i in kept]).update(created_at=long_ago)
    recent = OutboxItem.objects.create(member=member, kind="event", payload={}, status=OutboxStatus.SENT,
                                       sent_at=timezone.now() - timedelta(days=1))
    OutboxItem.objects.create(member=member, kind="event", payload={}, status=OutboxStatus.SENT, sent_at=long_ago)

    report = pruning.sync_prune()

    assert report.deleted["sent_outbox"] == 1
    assert set(OutboxItem.objects.values_list("pk", flat=True)) == {*(i.pk for i in kept), recent.pk}


def test_given_resync_runs_when_pruning_then_unfinished_runs_stay_for_resume(db):
    long_ago = timezone.now() - OLD
    interrupted = ResyncRun.objects.create(status=ResyncStatus.INTERRUPTED, finished_at=long_ago)
    running = ResyncRun.objects.create(status=ResyncStatus.RUNNING)
    finished_recently = ResyncRun.objects.create(status=ResyncStatus.FINISHED, finished_at=timezone.now())
    ResyncRun.objects.create(status=ResyncStatus.FINISHED, finished_at=long_ago)
    ResyncRun.objects.all().update(created_at=long_ago)

    report = pruning.sync_prune()

    assert report.deleted["resync_runs"] == 1
    assert set(ResyncRun.objects.values_list("pk", flat=True)) == {interrupted.pk, running.pk, finished_recently.pk}


def test_given_idempotency_keys_when_pruning_then_those_older_than_a_day_go(db):
    user = get_user_model().objects.create_user("shop")
    IdempotencyKey.objects.create(user=user, key="old", request_digest="d",
                                  created_at=timezone.now() - timedelta(hours=25))
    IdempotencyKey.objects.create(user=user, key="new", request_digest="d")

    assert pruning.sync_prune(dry_run=True).deleted["idempotency_keys"] == 1
    assert pruning.sync_prune().deleted["idempotency_keys"] == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]


def test_given_more_rows_than_a_batch_when_pruning_then_they_go_in_several_deletes(connection):
    member = Member.objects.create(member_id="ada")
    for _ in range(5):
        OutboxItem.objects.create(member=member, kind="event", payload={}, status=OutboxStatus.SENT,
                                  sent_at=timezone.now() - OLD)

    with CaptureQueriesContext(db_connection) as queries:
        report = pruning.sync_prune(batch_size=2)

    deletes = [q["sql"] for q in queries if q["sql"].startswith("DELETE") and "outboxitem" in q["sql"]]
    assert report.deleted["sent_outbox"] == 5 and len(deletes) == 3
    assert not OutboxItem.objects.exists()


def test_given_retention_zero_then_rows_are_kept_and_a_negative_one_is_refused_by_name(connection, settings):
    member = Member.objects.create(member_id="ada")
    OutboxItem.objects.create(member=member, kind="event", payload={}, status=OutboxStatus.SENT,
                              sent_at=timezone.now() - OLD)
    settings.BRAZE_RETENTION_DAYS = {**settings.BRAZE_RETENTION_DAYS, "sent_outbox": 0}

    assert pruning.sync_prune().deleted["sent_outbox"] == 0
    assert OutboxItem.objects.count() == 1

    settings.BRAZE_RETENTION_DAYS = {**settings.BRAZE_RETENTION_DAYS, "requests": -1}
    with pytest.raises(ImproperlyConfigured, match="BRAZE_RETAIN_REQUESTS_DAYS"):
        pruning.sync_prune()


def test_the_command_prints_totals_and_its_dry_run_deletes_nothing(connection):
    member = Member.objects.create(member_id="ada")
    OutboxItem.objects.create(member=member, kind="event", payload={}, status=OutboxStatus.SENT,
                              sent_at=timezone.now() - OLD)
    request_for(connection)

    dry = run_prune("--dry-run")
    assert "Would delete 1 sent outbox items (older than 90 days)" in dry
    assert "Would delete 1 sync requests (older than 30 days)" in dry
    assert "Would delete 2 rows in all." in dry
    assert OutboxItem.objects.count() == 1 and SyncRequest.objects.count() == 1

    done = run_prune()
    assert "Deleted 1 sent outbox items" in done and "Deleted 2 rows in all." in done
    assert not OutboxItem.objects.exists() and not SyncRequest.objects.exists()


def test_schedules_ensure_creates_one_daily_prune(db):
    services.schedules_ensure()
    services.schedules_ensure()

    schedule = Schedule.objects.get(name=pruning.SCHEDULE_NAME)
    assert schedule.func == "braze_integration.tasks.sync_prune" and schedule.schedule_type == Schedule.DAILY


@pytest.mark.usefixtures("q_sync")
def test_given_synced_members_when_old_requests_are_pruned_then_the_member_page_still_shows_the_latest(
        braze_connection, sandbox, admin_client):
    """Over real HTTP: three members are sent, then Ada twice more; then every request ages."""
    members = [make_member(f"m-{i}") for i in range(3)]
    services.member_sync_now(member_ids=[m.pk for m in members])
    ada = members[0]
    for points in (7, 8):
        Member.objects.filter(pk=ada.pk).update(points_spendable=points)
        services.member_sync_now(member_ids=[ada.pk])
    latest = dict(MemberSyncState.objects.values_list("pk", "last_request_id"))
    every = set(SyncRequest.objects.values_list("pk", flat=True))
    SyncRequest.objects.update(created_at=timezone.now() - OLD)

    report = pruning.sync_prune()

    assert report.deleted["requests"] == len(every - set(latest.values())) >= 1  # at least Ada's 7 points
    assert set(SyncRequest.objects.values_list("pk", flat=True)) == set(latest.values())
    assert set(SyncRequestMember.objects.values_list("member_id", "request_id")) == set(latest.items())
    page = admin_client.get(reverse("admin:loyaltysync_member_change", args=[ada.pk])).content.decode()
    assert f">#{latest[ada.pk]}<" in page
    assert sandbox.user("m-0")["attributes"]["loyalty_points"] == 8

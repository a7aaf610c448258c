"""The admin's busiest pages run a constant number of queries: the same for N rows as for 2N."""

from __future__ import annotations

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from braze_integration import services
from braze_integration.models import (
    Connection,
    ConnectionStatus,
    FieldMapping,
    MemberSyncState,
    RequestOutcome,
    SyncRequest,
    SyncStatus,
)
from loyaltysync.models import CustomField, FieldType, Member, Tier
from workflows.models import Trigger, Workflow, WorkflowRun

pytestmark = pytest.mark.django_db

N = 9


def queries_of(client, url: str) -> int:
    with CaptureQueriesContext(db_connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries)


def counts(client, url: str, grow) -> tuple[int, int]:
    """Queries of ``url`` with N rows, then with 2N (``grow(start, count)`` adds rows)."""
    grow(0, N)
    queries_of(client, url)  # warms per-process caches (content types, the sync configuration)
    with_n = queries_of(client, url)
    grow(N, N)
    return with_n, queries_of(client, url)


@pytest.fixture
def tiers(db):
    return {"Bronze": Tier.objects.create(name="Bronze", points_threshold=0)}


@pytest.fixture
def connection(db, settings):
    settings.BRAZE_ALLOW_LOCAL_ENDPOINTS = True
    connection = Connection(name="Sandbox", instance_url="http://127.0.0.1:9", status=ConnectionStatus.CONNECTED)
    connection.set_api_key("k" * 32)
    connection.save()
    services.sync_config_invalidate()
    return connection


def test_the_connection_page_does_not_query_per_mapping(admin_client, connection):
    """Given a connection with custom-field mappings, when its page is shown with N and with 2N of them,
    then the query count is the same (it was 64 with 18 mappings, 58 of them the same CustomField read)."""

    def grow(start: int, count: int) -> None:
        for index in range(start, start + count):
            CustomField.objects.create(key=f"field_{index}", label=f"Field {index}", type=FieldType.STRING)
            FieldMapping.objects.create(
                connection=connection, loyalty_field=f"custom.field_{index}", remote_field=f"f_{index}", position=index
            )

    url = reverse("admin:braze_integration_connection_change", args=[connection.pk])
    with_n, with_2n = counts(admin_client, url, grow)
    assert with_n == with_2n, (with_n, with_2n)


def test_the_member_list_with_its_braze_column_does_not_query_per_member(admin_client, tiers, connection):
    """Given members with and without a sync state, when the list (with the Braze sync column) is shown
    for N and 2N members, then the query count is the same."""

    def grow(start: int, count: int) -> None:
        for index in range(start, start + count):
            member = Member.objects.create(member_id=f"M-{index:03d}", tier=tiers["Bronze"])
            if index % 2:
                MemberSyncState.objects.update_or_create(member=member, defaults={"status": SyncStatus.SYNCED})
            else:
                MemberSyncState.objects.filter(member=member).delete()

    with_n, with_2n = counts(admin_client, reverse("admin:loyaltysync_member_changelist"), grow)
    assert with_n == with_2n, (with_n, with_2n)


def test_the_workflow_list_counts_runs_in_one_query(admin_client, tiers):
    """Given workflows with a trigger and runs, when the list is shown for N and 2N workflows, then the run
    counts come from one annotated query (it was one COUNT per workflow), and each count is right."""
    member = Member.objects.create(member_id="M-1")

    def grow(start: int, count: int) -> None:
        for index in range(start, start + count):
            workflow = Workflow.objects.create(name=f"Workflow {index}")
            Trigger.objects.create(workflow=workflow, action="checkout")
            WorkflowRun.objects.bulk_create(
                WorkflowRun(workflow=workflow, workflow_name=workflow.name, workflow_version=1, snapshot={},
                            member=member, trigger_description="checkout", outcome="queued")
                for _ in range(index % 3)
            )

    url = reverse("admin:workflows_workflow_changelist")
    with_n, with_2n = counts(admin_client, url, grow)
    assert with_n == with_2n, (with_n, with_2n)
    page = admin_client.get(url).content.decode()
    assert ">2 runs</a>" in page and ">0 runs</a>" in page


def test_the_dashboard_does_not_query_per_member_or_request(admin_client, connection, tiers):
    """Given members and requests, when the dashboard is shown for N and 2N of each, then the query count
    is the same."""

    def grow(start: int, count: int) -> None:
        for index in range(start, start + count):
            member = Member.objects.create(member_id=f"D-{index:03d}")
            MemberSyncState.objects.update_or_create(
                member=member, defaults={"status": [SyncStatus.PENDING, SyncStatus.FAILED][index % 2]}
            )
            SyncRequest.objects.create(
                connection=connection, outcome=[RequestOutcome.SUCCESS, RequestOutcome.REJECTED][index % 2]
            )

    with_n, with_2n = counts(admin_client, reverse("admin:braze_integration_dashboard"), grow)
    assert with_n == with_2n, (with_n, with_2n)

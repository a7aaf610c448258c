"""The sync logs: read-only like django-q2's task admin, with a retry action."""

from __future__ import annotations

import pytest
from django.urls import reverse

from braze_integration import services
from braze_integration.models import MemberSyncState, OutboxItem, OutboxStatus, SyncRequest, SyncStatus
from loyaltysync.models import Member

pytestmark = pytest.mark.usefixtures("q_sync")


@pytest.fixture
def q_async(monkeypatch):
    """Queued flush tasks stay queued (nobody runs them): the admin's Sync now does the sending."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", False)


LOGS = ["syncrequest", "membersyncstate", "outboxitem", "resyncrun"]


@pytest.fixture
def synced(braze_connection):
    return [Member.objects.create(member_id=f"m-{i}", first_name="Ada") for i in range(2)]


@pytest.mark.parametrize("model", LOGS)
def test_logs_cannot_be_added_changed_or_deleted(admin_client, synced, model):
    assert admin_client.get(reverse(f"admin:braze_integration_{model}_add")).status_code == 403
    changelist = admin_client.get(reverse(f"admin:braze_integration_{model}_changelist"))
    assert changelist.status_code == 200
    assert "delete_selected" not in changelist.content.decode()


def test_a_request_page_shows_every_field_read_only_and_the_members_it_carried(admin_client, synced):
    request = SyncRequest.objects.filter(members__member=synced[0]).get()
    url = reverse("admin:braze_integration_syncrequest_change", args=[request.pk])

    response = admin_client.get(url)

    page = response.content.decode()
    assert response.status_code == 200
    assert 'name="message"' not in page and 'name="outcome"' not in page and 'name="_save"' not in page
    assert reverse("admin:loyaltysync_member_change", args=[synced[0].pk]) in page and ">m-0<" in page
    assert "Success" in page and "success" in page  # the outcome and Braze's message
    assert admin_client.post(url, {"message": "edited"}).status_code == 403
    assert (
        admin_client.post(
            reverse("admin:braze_integration_syncrequest_delete", args=[request.pk])
        ).status_code
        == 403
    )


def test_requests_filter_by_outcome_trigger_and_date(admin_client, synced):
    base = reverse("admin:braze_integration_syncrequest_changelist")
    for query in (
        "outcome__exact=success",
        "trigger__exact=sync",
        "created_at__gte=2000-01-01T00:00:00%2B00:00",
        "q=m-0",
    ):
        response = admin_client.get(f"{base}?{query}")
        assert response.status_code == 200 and response.context["cl"].result_count >= 1, query
    assert admin_client.get(f"{base}?outcome__exact=auth").context["cl"].result_count == 0


def test_retry_action_puts_dead_members_of_the_requests_back_and_sends_them(admin_client, synced, sandbox):
    MemberSyncState.objects.filter(pk=synced[0].pk).update(
        status=SyncStatus.DEAD, attempts=8, last_error="gone"
    )
    Member.objects.filter(pk=synced[0].pk).update(first_name="Grace")  # what Braze has not got yet
    request = SyncRequest.objects.filter(members__member=synced[0]).get()

    response = admin_client.post(
        reverse("admin:braze_integration_syncrequest_changelist"),
        {"action": "retry_members", "_selected_action": [request.pk]},
        follow=True,
    )

    assert "1 failed or dead-lettered member(s) put back in the queue" in str(
        list(response.context["messages"])
    )
    state = MemberSyncState.objects.get(pk=synced[0].pk)
    assert state.status == SyncStatus.SYNCED  # q_sync: the flush ran after the retry committed
    assert sandbox.user("m-0")["attributes"]["loyalty_first_name"] == "Grace"


def test_viewers_cannot_run_the_retry_action(viewer_client, synced):
    MemberSyncState.objects.filter(pk=synced[0].pk).update(status=SyncStatus.DEAD)
    response = viewer_client.post(
        reverse("admin:braze_integration_membersyncstate_changelist"),
        {"action": "retry", "_selected_action": [synced[0].pk]},
    )

    assert response.status_code in (200, 302)
    assert MemberSyncState.objects.get(pk=synced[0].pk).status == SyncStatus.DEAD


def test_member_sync_states_filter_by_status_and_search_by_member_id(admin_client, synced):
    MemberSyncState.objects.filter(pk=synced[1].pk).update(status=SyncStatus.FAILED, last_error="refused")
    base = reverse("admin:braze_integration_membersyncstate_changelist")

    failed = admin_client.get(f"{base}?status__exact=failed").context["cl"]
    found = admin_client.get(f"{base}?q=m-0").context["cl"]

    assert [s.member.member_id for s in failed.result_list] == ["m-1"]
    assert [s.member.member_id for s in found.result_list] == ["m-0"]
    assert "refused" in admin_client.get(f"{base}?status__exact=failed").content.decode()


def test_sync_state_action_retry(admin_client, synced, sandbox):
    MemberSyncState.objects.filter(pk=synced[1].pk).update(status=SyncStatus.FAILED)
    base = reverse("admin:braze_integration_membersyncstate_changelist")

    admin_client.post(base, {"action": "retry", "_selected_action": [synced[1].pk]})
    assert MemberSyncState.objects.get(pk=synced[1].pk).status == SyncStatus.SYNCED


def test_sync_state_action_sync_now(admin_client, synced, sandbox, q_async):
    base = reverse("admin:braze_integration_membersyncstate_changelist")
    Member.objects.filter(pk=synced[0].pk).update(first_name="Grace")  # not announced: only Sync now sends it

    response = admin_client.post(
        base, {"action": "sync_now", "_selected_action": [synced[0].pk]}, follow=True
    )
    assert "1 member(s) sent to Braze" in str(list(response.context["messages"]))
    assert sandbox.user("m-0")["attributes"]["loyalty_first_name"] == "Grace"


def test_outbox_retry_puts_failed_items_back(admin_client, synced, sandbox):
    item = services.outbox_enqueue(
        member_id=synced[0].pk, kind="event", payload={"name": "tested", "time": "2026-01-01T00:00:00Z"}
    )
    OutboxItem.objects.filter(pk=item.pk).update(status=OutboxStatus.DEAD, last_error="Braze did not answer")
    base = reverse("admin:braze_integration_outboxitem_changelist")
    assert "Braze did not answer" in admin_client.get(f"{base}?status__exact=dead").content.decode()

    response = admin_client.post(base, {"action": "retry", "_selected_action": [item.pk]}, follow=True)

    assert "1 item(s) of 1 member(s) put back in the queue" in str(list(response.context["messages"]))
    assert OutboxItem.objects.get(pk=item.pk).status == OutboxStatus.SENT
    assert (
        admin_client.get(reverse("admin:braze_integration_outboxitem_change", args=[item.pk])).status_code
        == 200
    )

"""The member page's Braze sync panel, Sync now, and the member changelist's actions."""

from __future__ import annotations

import json

import pytest
from django.contrib import admin
from django.db import transaction
from django.urls import reverse

from braze_integration import queue
from braze_integration.admin_member import BRAZE_PANEL, braze_state
from braze_integration.models import MemberChange, MemberSyncState, SyncRequest, SyncStatus
from loyaltysync.admin import MemberAdmin
from loyaltysync.member_panels import member_panels
from loyaltysync.models import Member

# Without q_sync the flush tasks a save queues never run here, so Sync now does the sending itself.


def member_url(member: Member) -> str:
    return reverse("admin:loyaltysync_member_change", args=[member.pk])


def test_the_member_admin_is_the_loyalty_admin_with_a_braze_panel(rf, admin_user):
    registered = admin.site._registry[Member]
    request = rf.get("/")
    request.user = admin_user

    assert type(registered) is MemberAdmin
    assert BRAZE_PANEL in member_panels()
    actions = registered.get_actions(request)
    assert "braze_sync_now" in actions and "recalculate_points" in actions


def test_given_staff_without_braze_permissions_then_the_member_page_shows_nothing_of_braze(
    client, braze_connection
):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    staff = get_user_model().objects.create_user(username="clerk", password=None, is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_member", "change_member"]))
    client.force_login(staff)
    member = Member.objects.create(member_id="m-1", first_name="Ada")

    page = client.get(member_url(member)).content.decode()
    changelist = client.get(reverse("admin:loyaltysync_member_changelist")).content.decode()

    assert "m-1" in page and "Ada" in page  # the member page itself is there
    assert "Braze" not in page and "braze" not in page
    assert "Sync to Braze now" not in changelist and "Preview Braze payload" not in changelist
    assert client.post(reverse("admin:loyaltysync_member_braze_sync", args=[member.pk])).status_code == 403


@pytest.mark.usefixtures("q_sync")
def test_given_a_synced_member_then_the_panel_shows_state_requests_and_the_payload(
    admin_client, braze_connection
):
    member = Member.objects.create(member_id="m-1", first_name="Ada", points_spendable=120)
    request = SyncRequest.objects.get()

    response = admin_client.get(member_url(member))

    page = response.content.decode()
    assert "Braze sync" in page and "braze-badge--ok" in page and ">Synced<" in page
    assert reverse("admin:braze_integration_syncrequest_change", args=[request.pk]) in page
    assert "success" in page  # Braze's message for the request
    preview = response.context["adminform"].form.instance  # the page renders the preview from the service
    assert preview.pk == member.pk
    assert "&quot;external_id&quot;: &quot;m-1&quot;" in page and "&quot;loyalty_points&quot;: 120" in page
    assert "braze-sync-now" in page


def test_given_braze_refused_a_member_then_its_words_are_on_the_page(admin_client, braze_connection):
    member = Member.objects.create(member_id="m-err", first_name="Ada")
    queue.changes_fold()  # a worker looked: the member has its state row
    MemberSyncState.objects.filter(pk=member.pk).update(
        status=SyncStatus.FAILED, last_error="Braze refused it: 'loyalty_points' must be a number", attempts=1
    )

    page = admin_client.get(member_url(member)).content.decode()

    assert "Braze refused it: &#x27;loyalty_points&#x27; must be a number" in page
    assert ">Failed<" in page and "braze-badge--bad" in page


def test_sync_now_sends_the_member_to_the_sandbox_and_says_so(admin_client, braze_connection, sandbox):
    member = Member.objects.create(member_id="m-now", first_name="Ada")
    assert sandbox.user("m-now") is None

    response = admin_client.post(
        reverse("admin:loyaltysync_member_braze_sync", args=[member.pk]), follow=True
    )

    assert response.redirect_chain[-1][0] == member_url(member)
    assert [str(m) for m in response.context["messages"]] == ["1 member sent to Braze."]
    assert sandbox.user("m-now")["attributes"]["loyalty_first_name"] == "Ada"
    assert SyncRequest.objects.first().trigger == "manual"


def test_sync_now_with_a_broken_key_shows_braze_s_words(admin_client, braze_connection, sandbox):
    member = Member.objects.create(member_id="m-bad", first_name="Ada")
    sandbox.set_keys(["another-key-entirely-000000"])

    response = admin_client.post(
        reverse("admin:loyaltysync_member_braze_sync", args=[member.pk]), follow=True
    )

    [message] = [str(m) for m in response.context["messages"]]
    assert "connection needs attention" in message
    page = response.content.decode()
    assert (
        "Invalid API Key"
        in admin_client.get(
            reverse("admin:braze_integration_connection_change", args=[braze_connection.pk])
        ).content.decode()
    )
    assert response.status_code == 200 and "Braze sync" in page


def test_sync_now_is_post_only(admin_client, braze_connection):
    member = Member.objects.create(member_id="m-1")
    assert (
        admin_client.get(reverse("admin:loyaltysync_member_braze_sync", args=[member.pk])).status_code == 405
    )


def test_changelist_action_syncs_the_selected_members(admin_client, braze_connection, sandbox):
    members = [Member.objects.create(member_id=f"m-{i}", first_name="Ada") for i in range(3)]
    first = admin_client.post(
        reverse("admin:loyaltysync_member_changelist"),
        {"action": "braze_sync_now", "_selected_action": [m.pk for m in members]},
        follow=True,
    )
    assert [str(m) for m in first.context["messages"]] == ["3 member(s) sent to Braze."]
    Member.objects.filter(pk=members[0].pk).update(first_name="Grace")  # a change no signal announced

    response = admin_client.post(
        reverse("admin:loyaltysync_member_changelist"),
        {"action": "braze_sync_now", "_selected_action": [m.pk for m in members]},
        follow=True,
    )

    messages = [str(m) for m in response.context["messages"]]
    assert messages == ["1 member(s) sent to Braze; 2 unchanged (Braze already has these values)."]
    assert sandbox.user("m-0")["attributes"]["loyalty_first_name"] == "Grace"


def test_preview_action_shows_each_payload_without_sending(admin_client, braze_connection, sandbox):
    members = [Member.objects.create(member_id=f"m-{i}", points_spendable=i) for i in range(2)]
    requests_before = sandbox.stats()["requests"]

    response = admin_client.post(
        reverse("admin:loyaltysync_member_changelist"),
        {"action": "braze_payload_preview", "_selected_action": [m.pk for m in members]},
    )

    assert response.status_code == 200
    previews = {member.member_id: json.loads(text) for member, text in response.context["previews"]}
    assert previews["m-1"]["attributes"][0]["external_id"] == "m-1"
    assert previews["m-1"]["attributes"][0]["loyalty_points"] == 1
    assert sandbox.stats()["requests"] == requests_before


@pytest.mark.usefixtures("q_sync")
def test_given_workers_run_inline_then_sync_now_still_sends_the_member_itself_with_force(
    admin_client, braze_connection, sandbox
):
    member = Member.objects.create(member_id="m-1", first_name="Ada")
    requests_before = sandbox.stats()["requests"]

    response = admin_client.post(
        reverse("admin:loyaltysync_member_braze_sync", args=[member.pk]), follow=True
    )

    [message] = [str(m) for m in response.context["messages"]]
    assert message == "1 member sent to Braze."
    # Sent again although Braze had the values: "Sync now" forces, and no flush task raced it.
    assert sandbox.stats()["requests"] == requests_before + 1


def test_given_a_member_saved_and_no_worker_then_the_admin_shows_it_pending(admin_client, braze_connection):
    member = Member.objects.create(member_id="m-fresh", first_name="Ada")  # no worker runs: its change is not folded

    page = admin_client.get(member_url(member)).content.decode()
    pending = admin_client.get(reverse("admin:braze_integration_membersyncstate_changelist"),
                               {"status__exact": "pending"}).content.decode()
    members = admin_client.get(reverse("admin:loyaltysync_member_changelist"), {"braze_sync": "pending"}).content.decode()

    assert "1 change(s) not in Braze yet" in page and "Pending" in page
    assert "m-fresh" in pending and "m-fresh" in members


def test_inside_a_transaction_the_members_state_reads_its_changes_without_folding_them(braze_connection):
    """The change form re-rendered after a POST runs in a transaction: a fold there would hold the members'
    state rows until the page is rendered, and a worker recording them would wait. It reads the change rows."""
    member = Member.objects.create(member_id="m-fresh", first_name="Ada")

    with transaction.atomic():
        words = braze_state(member, with_button=False)
        left = MemberChange.objects.filter(member_id=member.pk).exists()

    assert "Pending" in words and "changes not in Braze yet" in words
    assert left and not MemberSyncState.objects.filter(pk=member.pk).exists()  # for a worker to fold

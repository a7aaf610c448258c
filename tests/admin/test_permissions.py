"""Braze viewer vs Braze manager: only managers edit the connection and mappings or send."""

from __future__ import annotations

import pytest
from django.urls import reverse

from braze_integration.models import Connection, FieldMapping
from loyaltysync.models import LoyaltyEvent, Member

from .conftest import connection_form, groups_migration

pytestmark = pytest.mark.usefixtures("q_sync")


def change_url(connection):
    return reverse("admin:braze_integration_connection_change", args=[connection.pk])


def test_the_groups_hold_the_roles_permissions(braze_groups):
    viewer = {p.codename for p in braze_groups[groups_migration.VIEWER].permissions.all()}
    manager = {p.codename for p in braze_groups[groups_migration.MANAGER].permissions.all()}

    assert {
        "view_member",
        "view_connection",
        "view_fieldmapping",
        "view_syncrequest",
        "view_membersyncstate",
        "view_outboxitem",
        "view_resyncrun",
    } <= viewer
    assert not {p for p in viewer if not p.startswith("view_")}
    assert not {"view_loyaltyevent", "view_pointstransaction"} & manager  # sync support, not the program's data
    assert viewer < manager
    assert {
        "add_connection",
        "change_connection",
        "delete_connection",
        "add_fieldmapping",
        "change_fieldmapping",
        "delete_fieldmapping",
        "verify_connection",
    } <= manager
    assert "change_member" not in manager


def test_given_a_viewer_when_opening_the_connection_then_everything_is_read_only(
    viewer_client, braze_connection
):
    response = viewer_client.get(change_url(braze_connection))

    assert response.status_code == 200
    page = response.content.decode()
    assert 'name="name"' not in page and 'name="new_api_key"' not in page and 'name="_save"' not in page
    assert "mappings-0-remote_field" not in page  # mapping rows are shown, not editable
    assert "loyalty_points" in page and braze_connection.instance_url in page
    assert "braze-connect-button" not in page  # no Connect without verify_connection
    assert "Resync all members" not in page


def test_given_a_viewer_when_posting_a_change_then_403_and_nothing_changes(viewer_client, braze_connection):
    response = viewer_client.post(
        change_url(braze_connection), connection_form(braze_connection, name="Hacked")
    )

    assert response.status_code == 403
    assert Connection.objects.get().name == "Sandbox"
    assert (
        viewer_client.post(
            reverse("admin:braze_integration_connection_add"),
            connection_form(name="x", instance_url="https://rest.fra-01.braze.eu"),
        ).status_code
        == 403
    )
    assert viewer_client.post(reverse("admin:braze_integration_resync")).status_code == 403


def test_given_a_viewer_then_the_logs_and_dashboard_are_visible_without_actions(
    viewer_client, braze_connection
):
    Member.objects.create(member_id="m-1", first_name="Ada")

    for url in (
        reverse("admin:braze_integration_dashboard"),
        reverse("admin:braze_integration_syncrequest_changelist"),
        reverse("admin:braze_integration_membersyncstate_changelist"),
        reverse("admin:braze_integration_outboxitem_changelist"),
        reverse("admin:braze_integration_resyncrun_changelist"),
    ):
        response = viewer_client.get(url)
        assert response.status_code == 200, url
        assert (
            "Retry" not in response.content.decode() and "Sync to Braze now" not in response.content.decode()
        ), url
    member_page = viewer_client.get(
        reverse("admin:loyaltysync_member_change", args=[Member.objects.get().pk])
    ).content.decode()
    assert "Braze sync" in member_page and "braze-sync-now" not in member_page
    assert (
        viewer_client.post(
            reverse("admin:loyaltysync_member_braze_sync", args=[Member.objects.get().pk])
        ).status_code
        == 403
    )


def test_given_a_manager_when_changing_the_connection_and_mappings_then_they_are_saved(
    manager_client, braze_connection
):
    response = manager_client.post(
        change_url(braze_connection),
        connection_form(
            braze_connection, name="Managed", mappings=[("points_pending", "loyalty_points_pending")]
        ),
    )

    assert response.status_code == 302
    assert Connection.objects.get().name == "Managed"
    assert FieldMapping.objects.filter(remote_field="loyalty_points_pending").exists()
    page = manager_client.get(change_url(braze_connection)).content.decode()
    assert "braze-connect-button" in page and 'name="new_api_key"' in page


def test_given_a_viewer_then_the_ledger_and_the_events_are_closed_and_the_sync_pages_open(
    viewer_client, braze_connection
):
    member = Member.objects.create(member_id="m-1", first_name="Ada")
    event = LoyaltyEvent.objects.create(member=member, action="opt_in", data={})

    for name in ("loyaltysync_loyaltyevent_changelist", "loyaltysync_pointstransaction_changelist"):
        assert viewer_client.get(reverse(f"admin:{name}")).status_code == 403, name
    assert viewer_client.get(reverse("admin:loyaltysync_loyaltyevent_change", args=[event.pk])).status_code == 403
    for model in ("membersyncstate", "syncrequest", "outboxitem", "resyncrun"):
        assert viewer_client.get(reverse(f"admin:braze_integration_{model}_changelist")).status_code == 200, model
    dead_letters = reverse("admin:braze_integration_membersyncstate_changelist") + "?status__exact=dead"
    assert viewer_client.get(dead_letters).status_code == 200

    page = viewer_client.get(reverse("admin:loyaltysync_member_change", args=[member.pk])).content.decode()

    assert "braze-member-panel" in page  # the member's Braze panel is what sync support needs
    assert "Latest events" not in page and "Points ledger" not in page
    assert reverse("admin:loyaltysync_loyaltyevent_changelist") not in page


def test_given_a_superuser_then_the_member_page_still_shows_events_and_ledger(admin_client, braze_connection):
    member = Member.objects.create(member_id="m-1", first_name="Ada")

    page = admin_client.get(reverse("admin:loyaltysync_member_change", args=[member.pk])).content.decode()

    assert "Latest events" in page and "Points ledger" in page

"""Removing a mapping leaves its attribute in Braze: ``braze_resync --clear`` and the admin's resync offer
send null for it to every member Braze had it for, through the same engine, over HTTP to the sandbox."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from braze_integration import services
from braze_integration.models import (
    FieldMapping,
    MemberSyncState,
    ResyncRun,
    ResyncStatus,
    SyncRequest,
    SyncStatus,
)
from loyaltysync.models import Member
from tests.admin.conftest import connection_form

pytestmark = pytest.mark.usefixtures("q_sync")


def resync(*args: str) -> str:
    out = StringIO()
    call_command("braze_resync", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def unmapped_points(braze_connection, sandbox):
    """Five members synced with loyalty_points, then the mapping removed; one member joined after that."""
    for index in range(5):
        Member.objects.create(member_id=f"m-{index}", first_name="Ada", points_spendable=10 * index)
    FieldMapping.objects.filter(remote_field="loyalty_points").delete()
    services.sync_config_invalidate()
    Member.objects.create(member_id="m-late", first_name="Grace", points_spendable=99)
    assert all("loyalty_points" in sandbox.user(f"m-{i}")["attributes"] for i in range(5))
    return braze_connection


def test_dry_run_shows_the_members_braze_has_the_attribute_for_and_sends_nothing(unmapped_points, sandbox):
    requests_before = sandbox.stats()["requests"]

    out = resync("--clear", "loyalty_points", "--dry-run", "--batch-size", "2")

    assert "5 members selected; 5 would be sent" in out
    assert "3 requests, 0 data points" in out  # removing an attribute is not billed
    assert "Members: m-0, m-1, m-2, m-3, m-4\n" in out
    assert '"loyalty_points": null' in out
    assert sandbox.stats()["requests"] == requests_before


def test_clear_removes_the_attribute_from_every_profile_that_had_it_in_batches(unmapped_points, sandbox):
    out = resync("--clear", "loyalty_points", "--batch-size", "2")

    assert "done: 5 members" in out and "sent 5" in out and "3 requests, 0 data points" in out
    for index in range(5):
        attributes = sandbox.user(f"m-{index}")["attributes"]
        assert "loyalty_points" not in attributes
        assert attributes["loyalty_first_name"] == "Ada"  # the mapped attributes stay
    assert [r.attributes_count for r in SyncRequest.objects.filter(trigger="resync").order_by("pk")] == [2, 2, 1]
    states = MemberSyncState.objects.filter(member__member_id__startswith="m-")
    assert all("loyalty_points" not in state.last_sent_values for state in states)
    assert all(state.status == SyncStatus.SYNCED for state in states)
    # Nothing left to clear: a second run selects nobody.
    assert "0 members selected" in resync("--clear", "loyalty_points", "--dry-run")


def test_an_attribute_still_mapped_or_not_removable_is_refused(unmapped_points):
    with pytest.raises(CommandError) as mapped:
        resync("--clear", "loyalty_points,loyalty_tier")
    with pytest.raises(CommandError) as groups:
        resync("--clear", "subscription_groups")
    with pytest.raises(CommandError) as empty:
        resync("--clear", " , ")

    assert str(mapped.value) == ("--clear: loyalty_tier (mapped from tier) is still mapped; remove the mapping "
                                 "first, or the next change would send it again.")
    assert "subscription_groups cannot be removed" in str(groups.value)
    assert "--clear: name the attributes to remove" in str(empty.value)
    assert not ResyncRun.objects.exists()


def test_given_a_mapping_removed_in_the_admin_then_the_offer_clears_it_with_its_figures(
        admin_client, braze_connection, sandbox):
    for index in range(3):
        Member.objects.create(member_id=f"m-{index}", first_name="Ada", points_spendable=10 * index)
    data = connection_form(braze_connection)
    index = list(braze_connection.mappings.values_list("remote_field", flat=True)).index("loyalty_points")
    data[f"mappings-{index}-DELETE"] = "on"

    response = admin_client.post(reverse("admin:braze_integration_connection_change", args=[braze_connection.pk]),
                                 data)

    assert response.status_code == 302
    assert response.url == reverse("admin:braze_integration_resync") + "?clear=loyalty_points"
    offer = admin_client.get(response.url)
    page = offer.content.decode()
    assert "Remove <strong>loyalty_points</strong> (no longer mapped) from Braze" in page
    assert 'id="dry-run-would-send">3<' in page and 'id="dry-run-data-points">0<' in page
    assert "Members: m-0, m-1, m-2" in page
    assert all("loyalty_points" in sandbox.user(f"m-{i}")["attributes"] for i in range(3))

    started = admin_client.post(reverse("admin:braze_integration_resync"), {"clear": "loyalty_points"}, follow=True)

    run = ResyncRun.objects.get()
    assert started.redirect_chain[-1][0] == reverse("admin:braze_integration_resyncrun_change", args=[run.pk])
    assert (run.status, run.total, run.members_sent) == (ResyncStatus.FINISHED, 3, 3)
    assert all("loyalty_points" not in sandbox.user(f"m-{i}")["attributes"] for i in range(3))


def test_clearing_an_attribute_no_profile_was_sent_says_so(unmapped_points, sandbox):
    """A misspelt name selected nobody, and the run said only "done: 0 members"."""
    requests_before, err = sandbox.stats()["requests"], StringIO()
    call_command("braze_resync", "--clear", "loyalty_pionts", stdout=StringIO(), stderr=err)

    assert "--clear: no member's profile was sent loyalty_pionts, so there is nothing to remove" in err.getvalue()
    assert sandbox.stats()["requests"] == requests_before

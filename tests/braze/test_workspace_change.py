"""A new instance URL (or API key) may be another Braze workspace: what was sent is forgotten, the admin
and ``braze_config import`` say so with the full resync's cost, and ``braze_resync --all`` sends everyone."""

from __future__ import annotations

import json
from io import StringIO

import pytest
import requests
from django.core.management import call_command
from django.urls import reverse

from braze_integration.config import WORKSPACE_CHANGED
from braze_integration.models import Connection, MemberSyncState
from braze_integration.sandbox import SandboxConfig, SandboxServer
from loyaltysync.models import Member
from tests.admin.conftest import connection_form
from tests.conftest import SANDBOX_KEY
from workflows import config

pytestmark = pytest.mark.usefixtures("q_sync")
MEMBERS = 6


@pytest.fixture
def synced_members(q_sync, braze_connection, sandbox):
    for index in range(MEMBERS):
        Member.objects.create(member_id=f"m-{index}", first_name="Ada", points_spendable=10 * index)
    call_command("braze_resync", "--all", stdout=StringIO(), stderr=StringIO())
    assert all(sandbox.user(f"m-{index}") for index in range(MEMBERS))
    assert MemberSyncState.objects.filter(last_sent_values__isnull=False).count() == MEMBERS


@pytest.fixture
def other_workspace(settings):
    """A second sandbox: another Braze workspace, empty."""
    server = SandboxServer(SandboxConfig(api_keys={SANDBOX_KEY}))
    server.start()
    settings.BRAZE_LOCAL_ENDPOINTS = [*settings.BRAZE_LOCAL_ENDPOINTS, server.url]
    yield server
    server.stop()


def profiles(server: SandboxServer) -> list[str]:
    found = []
    for index in range(MEMBERS):
        if requests.get(f"{server.url}/sandbox/users/m-{index}", timeout=5).status_code == 200:
            found.append(f"m-{index}")
    return found


@pytest.mark.usefixtures("synced_members")
def test_a_new_instance_url_in_the_admin_forgets_what_was_sent_and_offers_the_full_resync(
    admin_client, braze_connection, other_workspace
):
    response = admin_client.post(
        reverse("admin:braze_integration_connection_change", args=[braze_connection.pk]),
        connection_form(braze_connection, instance_url=other_workspace.url), follow=True)

    assert response.redirect_chain[-1][0] == reverse("admin:braze_integration_resync")
    assert any(WORKSPACE_CHANGED in str(message) for message in response.context["messages"])
    report = response.context["report"]
    assert (report.members, report.would_send, report.unchanged) == (MEMBERS, MEMBERS, 0)
    assert report.data_points > 0 and f'id="dry-run-data-points">{report.data_points}<' in response.content.decode()
    assert not MemberSyncState.objects.filter(last_sent_values__isnull=False).exists()

    # End to end: the full resync sends every member to the new workspace.
    call_command("braze_resync", "--all", stdout=StringIO(), stderr=StringIO())

    assert profiles(other_workspace) == [f"m-{index}" for index in range(MEMBERS)]
    assert requests.get(f"{other_workspace.url}/sandbox/users/m-5", timeout=5).json()["attributes"][
        "loyalty_points"] == 50


@pytest.mark.usefixtures("synced_members")
def test_a_new_api_key_forgets_too_but_other_settings_do_not(braze_connection):
    braze_connection.batch_size = 50
    braze_connection.save()
    assert not braze_connection.workspace_changed
    assert MemberSyncState.objects.filter(last_sent_values__isnull=False).count() == MEMBERS

    braze_connection.set_api_key("another-workspace-key-0123456789")
    braze_connection.save()

    assert braze_connection.workspace_changed
    assert not MemberSyncState.objects.filter(last_sent_values__isnull=False).exists()


@pytest.mark.usefixtures("synced_members")
def test_braze_config_import_says_the_workspace_changed_with_the_full_resync_cost(
    braze_connection, other_workspace, tmp_path
):
    data = json.loads(config.config_export())
    data["connection"]["instance_url"] = other_workspace.url
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))

    dry = StringIO()
    call_command("braze_config", "import", str(path), "--dry-run", stdout=dry)
    assert WORKSPACE_CHANGED in dry.getvalue()
    assert f"After importing, send every member: `python manage.py braze_resync --all` ({MEMBERS} members in 1 " \
           "requests, " in dry.getvalue()
    assert MemberSyncState.objects.filter(last_sent_values__isnull=False).count() == MEMBERS  # dry run

    out = StringIO()
    call_command("braze_config", "import", str(path), stdout=out)
    assert WORKSPACE_CHANGED in out.getvalue()
    assert f"Send every member: `python manage.py braze_resync --all` ({MEMBERS} members in 1 requests, " \
           in out.getvalue()
    assert Connection.objects.get().instance_url == other_workspace.url
    assert not MemberSyncState.objects.filter(last_sent_values__isnull=False).exists()

    call_command("braze_resync", "--all", stdout=StringIO(), stderr=StringIO())
    assert profiles(other_workspace) == [f"m-{index}" for index in range(MEMBERS)]

"""The member list's Braze sync column and filter (contributed through the loyalty app's column registry),
and the small fixes of the Braze screens: labels, the Connect message once, no resync while the
connection needs attention, braze_status --json with every count."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from braze_integration.fields import field_choices, loyalty_fields
from braze_integration.models import (
    Connection,
    ConnectionStatus,
    MemberSyncState,
    OutboxStatus,
    RequestOutcome,
    SyncStatus,
)
from loyaltysync.models import Member

pytestmark = pytest.mark.django_db

MEMBERS = "/admin/loyaltysync/member/"


@pytest.fixture
def members_in_every_state(db):
    states = {"M-never": None, "M-synced": SyncStatus.SYNCED, "M-failed": SyncStatus.FAILED,
              "M-pending": SyncStatus.PENDING}
    for member_id, status in states.items():
        member = Member.objects.create(member_id=member_id)
        MemberSyncState.objects.filter(member=member).delete()
        if status:
            MemberSyncState.objects.create(member=member, status=status)
    return states


def listed(client, **params) -> list[str]:
    response = client.get(MEMBERS, params)
    assert response.status_code == 200
    return sorted(member.member_id for member in response.context["cl"].result_list)


def test_the_member_list_shows_each_member_s_braze_sync_state(admin_client, members_in_every_state):
    """Given members in each sync state, when the list is shown, then a Braze sync column has each state."""
    page = admin_client.get(MEMBERS).content.decode()
    assert "Braze sync" in page
    for words in ("Not synced", "Synced", "Failed", "Pending"):
        assert f">{words}<" in page, words


@pytest.mark.parametrize(
    ("value", "expected"),
    [("never", ["M-never"]), ("failed", ["M-failed"]), ("synced", ["M-synced"]), ("pending", ["M-pending"])],
)
def test_the_member_list_filters_by_braze_sync_state(admin_client, members_in_every_state, value, expected):
    """Given members in each state, when the list is filtered by a state, then only those members show."""
    assert listed(admin_client, braze_sync=value) == expected


def test_staff_without_braze_permissions_see_no_braze_column(client, members_in_every_state):
    """Given staff who may view members but nothing of Braze, when they open the list, then there is no
    Braze column or filter."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user(username="clerk", password=None, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_member"))
    client.force_login(user)
    page = client.get(MEMBERS).content.decode()
    assert "Braze sync" not in page and "Not synced" not in page


def test_the_loyalty_app_does_not_import_the_braze_app():
    """Given the loyalty app's modules, when their source is read, then none imports braze_integration."""
    from pathlib import Path

    import loyaltysync

    root = Path(loyaltysync.__file__).parent
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        for line in path.read_text().splitlines()
        if line.lstrip().startswith(("import braze_integration", "from braze_integration"))
    ]
    assert offenders == []


def test_the_loyalty_summary_names_its_type_once():
    """Given the mappable fields, when the dropdown is built, then the loyalty summary's type shows once."""
    labels = [label for _group, choices in field_choices() for _key, label in choices]
    assert "Loyalty summary (object)" in labels
    assert not any("(object) (object)" in label for label in labels)
    assert loyalty_fields()["loyalty_summary"].label == "Loyalty summary"


# --- the connection page ----------------------------------------------------------------------------------


def test_connect_s_answer_is_shown_once_then_stays_on_the_page(admin_client, braze_connection):
    """Given a wrong key, when Connect is pressed, then Braze's words appear once (the message), not also in
    the state panel; on the next visit the panel shows them."""
    braze_connection.set_api_key("not-the-right-key-1234567890")
    braze_connection.save()
    url = reverse("admin:braze_integration_connection_connect", args=[braze_connection.pk])
    page = admin_client.post(url, follow=True).content.decode()
    assert page.count("Invalid API Key (HTTP 401)") == 1
    again = admin_client.get(reverse("admin:braze_integration_connection_change", args=[braze_connection.pk]))
    assert again.content.decode().count("Invalid API Key (HTTP 401)") == 1


def test_resync_all_is_not_offered_while_the_connection_needs_attention(admin_client, braze_connection):
    """Given a connection that needs attention, when its page is shown, then Resync all is disabled with
    the reason; once connected, it is a link again."""
    change = reverse("admin:braze_integration_connection_change", args=[braze_connection.pk])
    resync = reverse("admin:braze_integration_resync")
    Connection.objects.filter(pk=braze_connection.pk).update(status=ConnectionStatus.NEEDS_ATTENTION)
    page = admin_client.get(change).content.decode()
    assert f'href="{resync}"' not in page and 'id="braze-resync-disabled"' in page
    Connection.objects.filter(pk=braze_connection.pk).update(status=ConnectionStatus.CONNECTED)
    page = admin_client.get(change).content.decode()
    assert f'href="{resync}"' in page and "braze-resync-disabled" not in page


# --- braze_status --------------------------------------------------------------------------------------------


def test_braze_status_json_has_every_count_even_zero(db):
    """Given nothing sent today and an empty outbox, when braze_status --json runs, then every member
    state, outbox status and error kind is there with 0 (a monitor reads keys, it cannot read absence)."""
    out = StringIO()
    call_command("braze_status", "--json", stdout=out)
    summary = json.loads(out.getvalue())
    assert summary["members"] == {status: 0 for status in SyncStatus.values}
    assert summary["outbox"] == {status: 0 for status in OutboxStatus.values}
    failed = set(RequestOutcome.values) - {RequestOutcome.SUCCESS, RequestOutcome.SENDING}
    assert summary["errors_today"] == {outcome: 0 for outcome in failed}
    assert summary["requests_today"] == 0 and summary["ambiguous_event_sends"] == 0


def test_braze_status_text_lists_only_errors_that_happened(db):
    """Given no errors today, when braze_status prints text, then it says none (not a list of zeros)."""
    out = StringIO()
    call_command("braze_status", stdout=out)
    assert "Errors today:    none" in out.getvalue()

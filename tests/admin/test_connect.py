"""The Connect screen: the button checks the key with Braze and shows Braze's words; the key stays secret;
hostile instance URLs are refused with a form error."""

from __future__ import annotations

import pytest
from django.urls import reverse

from braze_integration.models import Connection, ConnectionStatus, SyncRequest
from loyaltysync.models import Member
from tests.conftest import SANDBOX_KEY

from .conftest import connection_form

pytestmark = pytest.mark.usefixtures("q_sync")

PLAIN_KEY = "braze-rest-key-0f1e2d3c4b5a69788796a5b4"


def change_url(connection: Connection) -> str:
    return reverse("admin:braze_integration_connection_change", args=[connection.pk])


def connect_url(connection: Connection) -> str:
    return reverse("admin:braze_integration_connection_connect", args=[connection.pk])


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_given_the_right_key_when_connect_is_pressed_then_the_page_says_connected_in_green(
    admin_client, braze_connection
):
    Connection.objects.filter(pk=braze_connection.pk).update(status=ConnectionStatus.NEVER_CHECKED)
    page = admin_client.get(change_url(braze_connection)).content.decode()
    assert "braze-badge--never" in page and "Never checked" in page

    response = admin_client.post(connect_url(braze_connection), follow=True)

    assert response.status_code == 200
    assert any(m.startswith("Connected: Braze accepted the API key") for m in messages_of(response))
    page = response.content.decode()
    assert 'id="braze-connection-state">Connected<' in page and "braze-badge--ok" in page
    assert "Last checked" in page
    assert Connection.objects.get().status == ConnectionStatus.CONNECTED


def test_given_a_wrong_key_when_connect_is_pressed_then_braze_s_words_are_shown_in_red(
    admin_client, braze_connection
):
    braze_connection.set_api_key("not-the-right-key-1234567890")
    braze_connection.save()

    response = admin_client.post(connect_url(braze_connection), follow=True)

    [message] = messages_of(response)
    assert "Braze does not accept this API key" in message
    assert "Braze said: Invalid API Key (HTTP 401)" in message
    page = response.content.decode()
    assert 'id="braze-connection-state">Needs attention<' in page and "braze-badge--bad" in page
    assert "Invalid API Key" in page  # the last check's message stays on the page
    assert Connection.objects.get().status == ConnectionStatus.NEEDS_ATTENTION


def test_connect_is_post_only_and_needs_the_verify_permission(admin_client, viewer_client, braze_connection):
    assert admin_client.get(connect_url(braze_connection)).status_code == 405
    assert viewer_client.post(connect_url(braze_connection)).status_code == 403
    assert Connection.objects.get().last_checked_at is None


def test_connect_is_csrf_protected(braze_connection, admin_user):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)

    assert client.post(connect_url(braze_connection)).status_code == 403
    page = client.get(change_url(braze_connection)).content.decode()
    assert f'action="{connect_url(braze_connection)}"' in page and "csrfmiddlewaretoken" in page


def test_given_a_new_connection_when_saved_with_a_listed_instance_then_the_key_is_stored_and_connect_is_next(
    admin_client, db
):
    response = admin_client.post(
        reverse("admin:braze_integration_connection_add"),
        connection_form(
            name="Braze EU",
            instance="https://rest.fra-01.braze.eu",
            instance_url="",
            new_api_key=PLAIN_KEY,
            send_mode="all_mapped_fields",
            batch_size=75,
            rate_limit_requests=3000,
            rate_limit_seconds=3,
            max_attempts=8,
        ),
    )

    connection = Connection.objects.get()
    assert response.status_code == 302 and response.url == change_url(connection)
    assert connection.instance_url == "https://rest.fra-01.braze.eu"
    assert connection.api_key == PLAIN_KEY and connection.api_key_display == "…a5b4"


@pytest.mark.parametrize("key, message", [
    ("k" * 100_000, "The REST API key is 100,000 characters long; a REST API key has at most 200; paste it again."),
    *((PLAIN_KEY[:18] + inside + PLAIN_KEY[18:],
       "The REST API key holds a space, a line break or a character outside printable ASCII; a REST API key has "
       "none; paste it again.") for inside in ("\n", " ", "\x1b", "\u200b")),
])
def test_a_key_too_long_or_with_a_line_break_inside_is_refused_naming_the_field(admin_client, db, key, message):
    """A whole clipboard pasted by mistake was stored; a line break would go into the HTTP header."""
    response = admin_client.post(reverse("admin:braze_integration_connection_add"), connection_form(
        name="Braze EU", instance="https://rest.fra-01.braze.eu", instance_url="", new_api_key=key,
        send_mode="all_mapped_fields", batch_size=75, rate_limit_requests=3000, rate_limit_seconds=3, max_attempts=8))

    assert response.status_code == 200 and not Connection.objects.exists()
    assert response.context["adminform"].form.errors["new_api_key"] == [message]
    assert key[:40] not in response.content.decode()  # the key is not shown back


def test_given_a_saved_key_when_the_key_box_is_left_empty_then_the_key_is_kept(
    admin_client, braze_connection
):
    response = admin_client.post(
        change_url(braze_connection), connection_form(braze_connection, name="Renamed")
    )

    assert response.status_code == 302
    connection = Connection.objects.get()
    assert connection.name == "Renamed" and connection.api_key == SANDBOX_KEY


def test_given_a_saved_key_then_no_admin_page_shows_it(admin_client, braze_connection, sandbox):
    connection = Connection.objects.get()
    admin_client.post(change_url(connection), connection_form(connection, new_api_key=PLAIN_KEY))
    assert Connection.objects.get().api_key == PLAIN_KEY
    admin_client.post(
        change_url(connection),
        connection_form(connection, instance_url="https://evil.com", new_api_key=PLAIN_KEY),
    )  # a form with errors
    member = Member.objects.create(member_id="m-key", first_name="Ada")
    pages = [
        change_url(connection),
        reverse("admin:braze_integration_connection_changelist"),
        reverse("admin:braze_integration_connection_history", args=[connection.pk]),
        reverse("admin:braze_integration_dashboard"),
        reverse("admin:braze_integration_syncrequest_changelist"),
        reverse("admin:braze_integration_syncrequest_change", args=[SyncRequest.objects.first().pk]),
        reverse("admin:braze_integration_membersyncstate_changelist"),
        reverse("admin:loyaltysync_member_change", args=[member.pk]),
        reverse("admin:loyaltysync_member_changelist"),
        reverse("admin:index"),
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert PLAIN_KEY not in response.content.decode(), url
        assert PLAIN_KEY[-12:] not in response.content.decode(), url
    # the form with errors does not echo the key either
    response = admin_client.post(
        change_url(connection),
        connection_form(connection, instance_url="https://evil.com", new_api_key=PLAIN_KEY),
    )
    assert response.status_code == 200 and PLAIN_KEY not in response.content.decode()
    assert "…" + PLAIN_KEY[-4:] in admin_client.get(change_url(connection)).content.decode()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://169.254.169.254", "IP addresses are not allowed"),
        ("https://evil.com", "evil.com is not a Braze host"),
        ("https://user@rest.fra-01.braze.eu", "must not contain a user name or password"),
        ("file:///etc/passwd", "Only https URLs are allowed"),
        ("https://rest.fra-01.braze.eu/users/track", "no path or query"),
    ],
)
def test_given_a_hostile_custom_url_when_saving_then_the_form_says_why_next_to_the_field(
    admin_client, braze_connection, url, words
):
    response = admin_client.post(
        change_url(braze_connection), connection_form(braze_connection, instance_url=url)
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(words in message for message in errors["instance_url"]), errors
    assert words in response.content.decode()
    assert Connection.objects.get().instance_url == braze_connection.instance_url


def test_given_custom_chosen_without_a_url_then_the_form_asks_for_one(admin_client, braze_connection):
    response = admin_client.post(
        change_url(braze_connection), connection_form(braze_connection, instance_url="")
    )

    assert "Enter the custom URL" in str(response.context["adminform"].form.errors["instance_url"])

"""The admin: only Braze managers change the connection and its mappings, every change is in the admin's
history (who, when, what), and logins are protected against guessing (django-axes)."""

from __future__ import annotations

import json
import socket

import pytest
from django.apps import apps
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from braze_integration.models import Connection, FieldMapping
from tests.admin.conftest import connection_form, groups_migration

pytestmark = pytest.mark.usefixtures("q_sync")

NEW_KEY = "bz-new-key-0b7e4f1c-2a9d-4e35-8c61-d0f2a7b39e58"


@pytest.fixture(autouse=True)
def public_dns(monkeypatch):
    """Braze's names resolve to a public address without asking the network (clean() resolves them)."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and host.endswith((".braze.com", ".braze.eu")):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("18.157.12.34", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def login(braze_connection):
    groups_migration.groups_ensure(apps)  # again: transactional tests flush what migrations created

    def as_(kind: str) -> Client:
        users = get_user_model().objects
        if kind == "superuser":
            user = users.create_superuser("root", "root@example.com", None)
        else:
            user = users.create_user(kind, is_staff=kind != "manager without staff status")
            group = {
                "manager": groups_migration.MANAGER,
                "viewer": groups_migration.VIEWER,
                "manager without staff status": groups_migration.MANAGER,
            }.get(kind)
            if group:
                user.groups.add(Group.objects.get(name=group))
        client = Client()
        client.force_login(user)
        return client

    return as_


def add_form(name: str) -> dict:
    return connection_form(
        name=name,
        instance_url="https://rest.fra-01.braze.eu",
        new_api_key=NEW_KEY,
        active=None,
        send_mode="all_mapped_fields",
        batch_size=75,
        rate_limit_requests=3000,
        rate_limit_seconds=3,
        max_attempts=8,
    )


def change_url(connection) -> str:
    return reverse("admin:braze_integration_connection_change", args=[connection.pk])


@pytest.mark.parametrize(
    ("who", "may_edit"),
    [
        ("superuser", True),
        ("manager", True),
        ("viewer", False),
        ("staff without a group", False),
        ("manager without staff status", False),
    ],
)
def test_only_braze_managers_change_the_connection_and_its_mappings(login, braze_connection, who, may_edit):
    client = login(who)
    mappings_before = set(FieldMapping.objects.values_list("pk", "remote_field"))
    first = braze_connection.mappings.first()

    changed = client.post(
        change_url(braze_connection),
        connection_form(
            braze_connection, name="Edited", mappings=[("points_pending", "loyalty_points_pending")]
        ),
    )
    deleted_row = client.post(
        change_url(braze_connection), connection_form(braze_connection, **{"mappings-0-DELETE": "on"})
    )
    added = client.post(
        reverse("admin:braze_integration_connection_add"),
        add_form("Second"),
    )
    deleted = client.post(
        reverse("admin:braze_integration_connection_delete", args=[braze_connection.pk]), {"post": "yes"}
    )

    if may_edit:
        assert changed.status_code == 302 and deleted_row.status_code == 302 and added.status_code == 302
        assert Connection.objects.filter(name="Second").exists()
        assert not Connection.objects.filter(pk=braze_connection.pk).exists()  # deleted last
        return
    # refused: 403 for staff, the login page for a user who is not staff
    for response in (changed, deleted_row, added, deleted):
        assert response.status_code in (302, 403), response.status_code
        if response.status_code == 302:
            assert response.url.startswith(reverse("admin:login"))
    connection = Connection.objects.get(pk=braze_connection.pk)
    assert connection.name == "Sandbox" and Connection.objects.count() == 1
    assert set(FieldMapping.objects.values_list("pk", "remote_field")) == mappings_before
    assert FieldMapping.objects.filter(pk=first.pk).exists()


def test_staff_outside_the_braze_groups_cannot_even_see_the_connection(login, braze_connection):
    client = login("staff without a group")

    assert client.get(change_url(braze_connection)).status_code == 403
    assert client.get(reverse("admin:braze_integration_connection_changelist")).status_code == 403
    assert client.get(reverse("admin:braze_integration_dashboard")).status_code == 403


# --- the history: who, when, what -------------------------------------------------------------------------


def entries_for(connection) -> list[LogEntry]:
    content_type = ContentType.objects.get_for_model(Connection)
    return list(
        LogEntry.objects.filter(content_type=content_type, object_id=str(connection.pk)).order_by("pk")
    )


def test_editing_the_connection_records_who_when_and_which_fields(login, braze_connection):
    client = login("manager")
    before = timezone.now()

    response = client.post(
        change_url(braze_connection),
        connection_form(braze_connection, name="Renamed", batch_size=50, new_api_key=NEW_KEY),
    )

    assert response.status_code == 302
    [entry] = entries_for(braze_connection)
    assert entry.action_flag == CHANGE and entry.user.username == "manager"
    assert before <= entry.action_time <= timezone.now()
    changed = json.loads(entry.change_message)[0]["changed"]["fields"]
    assert set(changed) >= {"Name", "Batch size", "REST API key"}
    assert NEW_KEY not in entry.change_message and NEW_KEY not in entry.object_repr


def test_adding_changing_and_removing_mappings_is_recorded_on_the_connection(login, braze_connection):
    client = login("manager")
    row = braze_connection.mappings.get(remote_field="loyalty_tier")
    gone = braze_connection.mappings.get(remote_field="loyalty_first_name")
    form = connection_form(braze_connection, mappings=[("points_pending", "loyalty_points_pending")])
    index = {form[f"mappings-{i}-remote_field"]: i for i in range(form["mappings-TOTAL_FORMS"])}
    form[f"mappings-{index['loyalty_tier']}-remote_field"] = "loyalty_level"
    form[f"mappings-{index['loyalty_first_name']}-DELETE"] = "on"

    assert client.post(change_url(braze_connection), form).status_code == 302

    [entry] = entries_for(braze_connection)
    message = json.loads(entry.change_message)
    assert {
        "added": {"name": "field mapping", "object": "points_pending → loyalty_points_pending"}
    } in message
    assert {
        "changed": {
            "name": "field mapping",
            "object": f"{row.loyalty_field} → loyalty_level",
            "fields": ["Remote field (Braze attribute)"],
        }
    } in message
    assert {"deleted": {"name": "field mapping", "object": str(gone)}} in message


def test_a_new_connection_is_recorded_as_added_by_its_author(login, braze_connection):
    client = login("manager")

    client.post(
        reverse("admin:braze_integration_connection_add"),
        add_form("Second"),
    )

    connection = Connection.objects.get(name="Second")
    [entry] = entries_for(connection)
    assert entry.action_flag == ADDITION and entry.user.username == "manager"


def test_the_history_page_shows_each_change_with_its_author(login, braze_connection):
    manager = login("manager")
    manager.post(
        change_url(braze_connection), connection_form(braze_connection, name="Renamed", batch_size=50)
    )

    page = (
        login("viewer")
        .get(reverse("admin:braze_integration_connection_history", args=[braze_connection.pk]))
        .content.decode()
    )

    assert "manager" in page and "Changed Name and Batch size." in page


# --- brute force ----------------------------------------------------------------------------------------


@pytest.fixture
def admin_login(db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; not what is tested
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = 3
    get_user_model().objects.create_superuser("boss", "boss@example.com", "right-password-123")
    get_user_model().objects.create_superuser("other", "other@example.com", "other-password-123")

    def attempt(username: str, password: str, ip: str = "203.0.113.7"):
        client = Client(REMOTE_ADDR=ip)
        response = client.post(
            reverse("admin:login"),
            {"username": username, "password": password, "next": reverse("admin:index")},
        )
        return response, "_auth_user_id" in client.session

    return attempt


def test_the_right_password_logs_in_before_any_lockout(admin_login):
    response, logged_in = admin_login("boss", "right-password-123")

    assert logged_in and response.status_code == 302


def test_after_the_failure_limit_even_the_right_password_is_refused(admin_login, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        response, logged_in = admin_login("boss", "guess")
        assert not logged_in

    response, logged_in = admin_login("boss", "right-password-123")

    assert not logged_in
    assert response.status_code == 429
    # the lock is on the user name and on the address: another address, or another user here, is locked too
    assert not admin_login("boss", "right-password-123", ip="198.51.100.9")[1]
    assert not admin_login("other", "other-password-123")[1]
    assert admin_login("other", "other-password-123", ip="198.51.100.9")[1]

"""Admin test helpers: users in the two groups, and the connection page's form data."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from braze_integration.models import Connection

groups_migration = importlib.import_module("braze_integration.migrations.0004_admin_groups")
trim_migration = importlib.import_module("braze_integration.migrations.0008_viewer_sync_support")

CONNECTION_FIELDS = [
    "name",
    "instance_url",
    "app_id",
    "send_mode",
    "batch_size",
    "rate_limit_requests",
    "rate_limit_seconds",
    "max_attempts",
]


@pytest.fixture
def braze_groups(db):
    # Transactional tests flush the tables the migration filled: create the groups again.
    groups_migration.groups_ensure(apps)
    trim_migration.groups_trim(apps)
    return {
        group.name: group
        for group in Group.objects.filter(name__in=[groups_migration.VIEWER, groups_migration.MANAGER])
    }


def _user_in(group_name: str, username: str):
    user = get_user_model().objects.create_user(username=username, password=None, is_staff=True)
    user.groups.add(Group.objects.get(name=group_name))
    return user


@pytest.fixture
def viewer_client(client, braze_groups):
    client.force_login(_user_in(groups_migration.VIEWER, "viewer"))
    return client


@pytest.fixture
def manager_client(client, braze_groups):
    client.force_login(_user_in(groups_migration.MANAGER, "manager"))
    return client


def connection_form(
    connection: Connection | None = None,
    *,
    mappings: list[tuple[str, str]] | None = None,
    keep_mappings: bool = True,
    **values,
) -> dict:
    """The POST body of the connection page: the Connect fields plus the Sync fields inline.

    Existing mappings are sent back unchanged (``keep_mappings``); ``mappings`` are added as new rows.
    """
    data: dict = {"instance": "custom", "new_api_key": "", "active": "on", "_save": "Save"}
    if connection is not None:
        for name in CONNECTION_FIELDS:
            data[name] = getattr(connection, name)
        if connection.per_array_limit:
            data["per_array_limit"] = "on"
    existing = list(connection.mappings.all()) if connection is not None and keep_mappings else []
    rows = [(m.pk, m.loyalty_field, m.remote_field) for m in existing] + [
        (None, lf, rf) for lf, rf in mappings or []
    ]
    data.update(
        {
            "mappings-TOTAL_FORMS": len(rows),
            "mappings-INITIAL_FORMS": len(existing),
            "mappings-MIN_NUM_FORMS": 0,
            "mappings-MAX_NUM_FORMS": 1000,
        }
    )
    for index, (pk, loyalty_field, remote_field) in enumerate(rows):
        data[f"mappings-{index}-id"] = pk or ""
        data[f"mappings-{index}-connection"] = connection.pk if connection is not None and pk else ""
        data[f"mappings-{index}-loyalty_field"] = loyalty_field
        data[f"mappings-{index}-remote_field"] = remote_field
    data.update(values)
    return {key: value for key, value in data.items() if value is not None}

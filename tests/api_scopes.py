"""The API scopes tests give their API users: an integration that sends events, reads and writes members.

Transactional tests flush what migrations created, so the groups and permissions are ensured first.
"""

from __future__ import annotations

import importlib

from django.apps import apps
from django.contrib.auth.models import Group, Permission

scopes_migration = importlib.import_module("loyaltysync.migrations.0003_api_scopes")


def grant_every_api_scope(user):
    """Puts ``user`` in the groups "API: events sender" and "API: members reader" and gives it
    ``loyaltysync.write_members``; returns the user."""
    scopes_migration.scopes_ensure(apps)
    user.groups.add(*Group.objects.filter(name__in=list(scopes_migration.GROUPS)))
    user.user_permissions.add(Permission.objects.get(content_type__app_label="loyaltysync", codename="write_members"))
    return user

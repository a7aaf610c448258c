"""Fixtures of the member lifecycle tests: the loyalty domain's fixtures, users with and without erasure rights."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.loyalty.conftest import (  # noqa: F401 (fixtures)
    api,
    api_user,
    custom_fields,
    enrol,
    loyalty_settings,
    record,
    tiers,
)


def token_client(username: str, *permissions: str) -> APIClient:
    user = get_user_model().objects.create_user(username=username)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(content_type__app_label="loyaltysync", codename=codename))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def eraser_api(db) -> APIClient:
    """A token whose user may erase members (and do nothing else)."""
    return token_client("privacy-bot", "erase_members")


@pytest.fixture
def staff_client(client, db):
    """A staff user with every loyalty permission but erasing."""
    user = get_user_model().objects.create_user(username="staff", password=None, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="loyaltysync").exclude(
        codename="erase_members"))
    client.force_login(user)
    return client


@pytest.fixture
def privacy_officer_client(client, db):
    user = get_user_model().objects.create_user(username="dpo", password=None, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="loyaltysync"))
    client.force_login(user)
    return client

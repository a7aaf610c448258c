"""Fixtures of the workflow tests: the program's tiers, the shipped example workflows, an API client."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from loyaltysync.models import Tier
from tests.api_scopes import grant_every_api_scope
from workflows import services

FIXTURE = Path(django_settings.BASE_DIR) / "workflows" / "fixtures" / "workflows.json"
TIERS = [("Bronze", 0, "1.00"), ("Silver", 500, "1.25"), ("Gold", 2000, "1.50")]


@pytest.fixture(autouse=True)
def fresh_interest():
    """Each test starts without the cached "who listens" answer of the previous one."""
    services.workflow_interest_invalidate()
    yield
    services.workflow_interest_invalidate()


@pytest.fixture
def loyalty_settings(settings):
    settings.LOYALTY = {"POINTS_PER_CURRENCY_UNIT": 1.0, "PENDING_DAYS": 0, "POINTS_EXPIRY_DAYS": 365,
                        "BULK_EVENTS_MAX": 100}
    return settings.LOYALTY


@pytest.fixture
def tiers(transactional_db):
    return {
        name: Tier.objects.create(name=name, points_threshold=threshold, multiplier=Decimal(multiplier), order=index,
                                  benefits=f"{name} benefits: free shipping" if name != "Bronze" else "Welcome gift")
        for index, (name, threshold, multiplier) in enumerate(TIERS)
    }


@pytest.fixture
def shipped_workflows(transactional_db):
    """The three use cases of Braze's Antavo page, as shipped in workflows/fixtures/workflows.json."""
    call_command("loaddata", str(FIXTURE), verbosity=0)
    services.workflow_config_changed()


@pytest.fixture
def api(transactional_db) -> APIClient:
    user = grant_every_api_scope(get_user_model().objects.create_user(username="shop"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def post_event(api, loyalty_settings):
    """post_event(customer, action, **data): POST /api/v1/events; returns the JSON answer (asserts 201)."""

    def call(customer: str, action: str, **data):
        response = api.post("/api/v1/events", {"customer": customer, "action": action, "data": data}, format="json")
        assert response.status_code == 201, response.content
        return response.json()

    return call

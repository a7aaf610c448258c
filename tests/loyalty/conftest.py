"""Fixtures of the loyalty domain's tests: tiers, custom fields of every type, members, an API client."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from loyaltysync import services
from loyaltysync.models import CustomField, FieldType, Member, Tier
from tests.api_scopes import grant_every_api_scope

TIERS = [("Bronze", 0, "1.00"), ("Silver", 500, "1.25"), ("Gold", 2000, "1.50"), ("Platinum", 5000, "2.00")]

# key -> (type, a good value, what it is stored as, a bad value)
CUSTOM_FIELD_CASES = {
    "favourite_store": (FieldType.STRING, "Berlin Mitte", "Berlin Mitte", 12),
    "shoe_size": (FieldType.INTEGER, "42", 42, "forty-two"),
    "avg_basket": (FieldType.FLOAT, 19.5, 19.5, "a lot"),
    "newsletter": (FieldType.BOOLEAN, "true", True, "yes please"),
    "anniversary_date": (FieldType.DATE, "2021-06-30", "2021-06-30", "30.06.2021"),
    "last_visit_at": (FieldType.DATETIME, "2026-01-02T10:00:00+01:00", "2026-01-02T09:00:00Z", "yesterday"),
    "interests": (FieldType.ARRAY, ["running", "yoga"], ["running", "yoga"], "running"),
    "preferences": (FieldType.OBJECT, {"channel": "email"}, {"channel": "email"}, ["email"]),
    "children": (FieldType.ARRAY_OF_OBJECTS, [{"name": "Ada"}], [{"name": "Ada"}], [{"name": "Ada"}, "Bob"]),
}


def checkout(record, member_id="M-1", transaction_id="T-1", total=100, **extra):
    return record(member_id, "checkout", transaction_id=transaction_id, total=total, currency="EUR", **extra)


def ledger_consistent(member: Member) -> bool:
    """Balances add up: what was earned is spent, expired, pending or spendable."""
    member.refresh_from_db()
    return member.points_earned == (
        member.points_spent + member.points_expired + member.points_pending + member.points_spendable
    )


@pytest.fixture
def loyalty_settings(settings):
    """The program's settings as the tests assume them: 1 point per unit, nothing pending, 365-day expiry."""
    settings.LOYALTY = {
        "POINTS_PER_CURRENCY_UNIT": 1.0,
        "PENDING_DAYS": 0,
        "POINTS_EXPIRY_DAYS": 365,
        "BULK_EVENTS_MAX": 100,
    }
    return settings.LOYALTY


@pytest.fixture
def tiers(db):
    return {
        name: Tier.objects.create(
            name=name,
            points_threshold=threshold,
            multiplier=Decimal(multiplier),
            order=index,
            benefits=f"{name} benefits",
        )
        for index, (name, threshold, multiplier) in enumerate(TIERS)
    }


@pytest.fixture
def custom_fields(db):
    return {
        key: CustomField.objects.create(key=key, label=key.replace("_", " ").title(), type=field_type)
        for key, (field_type, *_rest) in CUSTOM_FIELD_CASES.items()
    }


@pytest.fixture
def enrol(db, loyalty_settings, tiers):
    """enrol("M-1", first_name=...) -> a member created by an opt_in event."""

    def make(member_id: str = "M-1", **data):
        member, _ = services.event_record(member_id=member_id, action="opt_in", data=data, source="api")
        return member

    return make


@pytest.fixture
def record(db, loyalty_settings):
    """record(member_id, action, **data) -> (member, event), as the API would."""

    def call(member_id: str, action: str, **data):
        return services.event_record(member_id=member_id, action=action, data=data, source="api")

    return call


@pytest.fixture
def api_user(db):
    # No password: hashing one is slow.
    return grant_every_api_scope(get_user_model().objects.create_user(username="shop"))


@pytest.fixture
def api(api_user) -> APIClient:
    client = APIClient()
    token = Token.objects.create(user=api_user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def anonymous_api() -> APIClient:
    return APIClient()

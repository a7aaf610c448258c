"""The demo fixture loads and is consistent; seed_members creates members and tells listeners."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from loyaltysync import services
from loyaltysync.models import CustomField, FieldType, LedgerKind, LoyaltyEvent, Member, MemberStatus, Tier
from loyaltysync.signals import members_changed

pytestmark = pytest.mark.django_db

DEMO = Path(settings.BASE_DIR) / "loyaltysync" / "fixtures" / "demo.json"
BALANCES = (
    "points_earned",
    "points_spent",
    "points_pending",
    "points_expired",
    "points_spendable",
    "tier_id",
)


def test_demo_fixture_loads_with_tiers_every_field_type_and_varied_members():
    """Given an empty database, when the demo fixture is loaded, then it has the four tiers, every field
    type and varied members and events.
    """
    call_command("loaddata", str(DEMO), verbosity=0)
    assert list(Tier.objects.values_list("name", "points_threshold")) == [
        ("Bronze", 0),
        ("Silver", 500),
        ("Gold", 2000),
        ("Platinum", 5000),
    ]
    assert set(CustomField.objects.values_list("type", flat=True)) == set(FieldType.values)
    assert 35 <= Member.objects.count() <= 50
    assert set(Member.objects.values_list("status", flat=True)) == set(MemberStatus.values)
    assert set(Member.objects.values_list("tier__name", flat=True)) == {
        "Bronze",
        "Silver",
        "Gold",
        "Platinum",
    }
    assert LoyaltyEvent.objects.filter(action="checkout").count() > 50
    for action in (
        "opt_in",
        "opt_out",
        "refund",
        "point_add",
        "point_spend",
        "tier_reached",
        "points_expired",
    ):
        assert LoyaltyEvent.objects.filter(action=action).exists(), action


def test_demo_fixture_balances_match_the_ledger():
    # Given the demo data, when every member's balances are recomputed from the ledger, nothing changes
    call_command("loaddata", str(DEMO), verbosity=0)
    stored = {m.pk: tuple(getattr(m, name) for name in BALANCES) for m in Member.objects.all()}
    for member in Member.objects.all():
        services.member_points_refresh(member=member)
    recomputed = {m.pk: tuple(getattr(m, name) for name in BALANCES) for m in Member.objects.all()}
    assert recomputed == stored
    # And every custom value is valid for its definition
    for member in Member.objects.all():
        assert services.custom_fields_validate(values=member.custom_fields) == member.custom_fields
    assert Member.objects.filter(points_pending__gt=0).exists()
    assert Member.objects.filter(ledger__kind=LedgerKind.EXPIRE).exists()


def test_seed_members_bulk_creates_and_announces(tiers, custom_fields):
    """Given tiers and custom fields, when seed_members runs, then it creates the members in batches and
    sends members_changed per batch.
    """
    heard = []

    def listener(sender, member_ids, fields, **kwargs):
        heard.append(list(member_ids))

    members_changed.connect(listener)
    try:
        call_command("seed_members", count=25, batch=10, prefix="bench-", seed=7, verbosity=0)
    finally:
        members_changed.disconnect(listener)
    created = Member.objects.filter(member_id__startswith="bench-")
    assert created.count() == 25
    assert [len(ids) for ids in heard] == [10, 10, 5]
    assert sorted(pk for ids in heard for pk in ids) == sorted(created.values_list("pk", flat=True))
    member = created.first()
    assert member.tier == tiers["Bronze"] and member.points_earned == 0
    assert services.custom_fields_validate(values=member.custom_fields) == member.custom_fields
    assert set(member.custom_fields) == set(custom_fields)

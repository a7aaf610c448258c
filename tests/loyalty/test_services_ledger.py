"""services.ledger: points earned, spent and taken back, balances and the tiers they qualify for."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from loyaltysync import services
from loyaltysync.errors import (
    InsufficientPoints,
    InvalidEventData,
)
from loyaltysync.models import LedgerKind, Member, PointsTransaction

from .conftest import ledger_consistent

pytestmark = pytest.mark.django_db


# --- point_add / point_spend ------------------------------------------------------------------------


def test_point_add_is_spendable_at_once_and_counts_for_tiers(enrol, record, tiers):
    """Given a member, when 2500 points are added, then they are spendable, count for tiers and are an
    adjust row.
    """
    enrol("M-1")
    member, event = record("M-1", "point_add", points=2500, reason="Welcome bonus")
    assert (member.points_spendable, member.points_earned, member.tier) == (2500, 2500, tiers["Gold"])
    row = PointsTransaction.objects.get(event=event)
    assert (row.kind, row.note, row.remaining) == (LedgerKind.ADJUST, "Welcome bonus", 2500)


@pytest.mark.parametrize("points", [0, -5, 1.5, "10", None, True, 10**12])
def test_point_add_needs_a_positive_integer(enrol, record, points):
    """Given a member, when point_add has no positive integer, then the error names data.points."""
    enrol("M-1")
    with pytest.raises(InvalidEventData) as caught:
        record("M-1", "point_add", points=points)
    assert "data.points" in caught.value.errors


@pytest.mark.parametrize("action", ["point_spend", "point_sub"])
def test_point_spend_consumes_the_oldest_earnings_first(enrol, record, action):
    """Given an old and a new earning, when 150 points are spent, then the old one is used up first."""
    enrol("M-1")
    _, old = record("M-1", "point_add", points=100, effective_timestamp="2026-01-01T00:00:00Z")
    _, new = record("M-1", "point_add", points=100)
    member, _ = record("M-1", action, points=150)
    assert PointsTransaction.objects.get(event=old).remaining == 0
    assert PointsTransaction.objects.get(event=new).remaining == 50
    assert (member.points_spent, member.points_spendable) == (150, 50)
    assert ledger_consistent(member)


def test_overspending_is_refused_with_both_numbers(enrol, record):
    """Given 40 spendable points, when 41 are spent, then the error gives both numbers and nothing is
    written.
    """
    enrol("M-1")
    record("M-1", "point_add", points=40)
    with pytest.raises(InsufficientPoints) as caught:
        record("M-1", "point_spend", points=41)
    assert "41" in caught.value.message and "40" in caught.value.message
    assert caught.value.field == "data.points"
    assert Member.objects.get().points_spendable == 40
    assert not PointsTransaction.objects.filter(kind=LedgerKind.SPEND).exists()


def test_spending_does_not_lower_the_tier(enrol, record, tiers):
    """Given a Silver member, when all points are spent, then the tier (by lifetime points) stays."""
    enrol("M-1")
    record("M-1", "point_add", points=600)
    member, _ = record("M-1", "point_spend", points=600)
    assert member.tier == tiers["Silver"]


def test_occurred_at_argument_is_used_for_ledger_times(enrol, tiers, loyalty_settings):
    """Given an import 400 days late, when it passes occurred_at, then the event and ledger row carry that
    time.
    """
    enrol("M-1")
    when = timezone.now() - dt.timedelta(days=400)
    _, event = services.event_record(
        member_id="M-1", action="point_add", data={"points": 5}, source="import", occurred_at=when
    )
    row = PointsTransaction.objects.get(event=event)
    assert (event.occurred_at, row.created_at, row.expires_at) == (when, when, when + dt.timedelta(days=365))

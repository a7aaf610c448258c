"""The periodic jobs: pending points become spendable, old points expire; their schedules."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from django_q.models import Schedule

from loyaltysync import services, tasks
from loyaltysync.models import LedgerKind, LoyaltyEvent, Member, PointsTransaction

pytestmark = pytest.mark.django_db


def test_pending_points_become_spendable_once_their_day_has_come(enrol, record, loyalty_settings):
    # Given a checkout whose 14 pending days have not passed
    loyalty_settings["PENDING_DAYS"] = 14
    enrol("M-1")
    enrol("M-2")
    record("M-1", "checkout", transaction_id="T-1", total=120, currency="EUR")

    # When the job runs before then, nothing is released
    assert services.points_release_pending(now=timezone.now() + dt.timedelta(days=13)) == 0
    assert Member.objects.get(member_id="M-1").points_pending == 120

    # When it runs after then, the points are spendable and the member hears of it once
    assert services.points_release_pending(now=timezone.now() + dt.timedelta(days=15)) == 1
    member = Member.objects.get(member_id="M-1")
    assert (member.points_pending, member.points_spendable, member.points_earned) == (0, 120, 120)
    event = member.events.get(action="points_spendable")
    assert (event.source, event.data) == ("engine", {"points": 120, "points_spendable": 120})
    assert services.points_release_pending(now=timezone.now() + dt.timedelta(days=16)) == 0
    assert member.events.filter(action="points_spendable").count() == 1


def test_released_points_can_be_spent(enrol, record, loyalty_settings):
    """Given pending points released by the job, when they are spent, then the spend succeeds."""
    loyalty_settings["PENDING_DAYS"] = 1
    enrol("M-1")
    record("M-1", "checkout", transaction_id="T-1", total=50, currency="EUR")
    services.points_release_pending(now=timezone.now() + dt.timedelta(days=2))
    member, _ = record("M-1", "point_spend", points=50)
    assert member.points_spendable == 0 and member.points_spent == 50


def test_expired_points_leave_the_balance_but_not_the_lifetime_total(enrol, record, tiers):
    # Given 600 points earned 400 days ago, 100 of them spent, and 50 earned today
    enrol("M-1")
    record(
        "M-1",
        "point_add",
        points=600,
        effective_timestamp=(timezone.now() - dt.timedelta(days=400)).isoformat(),
    )
    record("M-1", "point_spend", points=100)
    record("M-1", "point_add", points=50)

    # When the expiry job runs
    assert services.points_expire_due() == 1

    # Then the 500 left of the old earning expire, today's 50 stay, and the tier (by lifetime points) stays
    member = Member.objects.get()
    assert (member.points_expired, member.points_spendable, member.points_earned) == (500, 50, 650)
    assert member.tier == tiers["Silver"]
    expire = PointsTransaction.objects.get(kind=LedgerKind.EXPIRE)
    assert expire.points == -500
    assert member.events.get(action="points_expired").data == {"points": 500}
    assert member.points_earned == member.points_spent + member.points_expired + member.points_spendable
    # And running it again changes nothing
    assert services.points_expire_due() == 0
    assert PointsTransaction.objects.filter(kind=LedgerKind.EXPIRE).count() == 1


def test_no_expiry_when_expiry_days_is_zero(enrol, record, loyalty_settings):
    """Given POINTS_EXPIRY_DAYS 0, when the expiry job runs far in the future, then nothing expires."""
    loyalty_settings["POINTS_EXPIRY_DAYS"] = 0
    enrol("M-1")
    record("M-1", "point_add", points=10, effective_timestamp="1999-01-01T00:00:00Z")
    assert services.points_expire_due(now=timezone.now() + dt.timedelta(days=10_000)) == 0
    assert Member.objects.get().points_spendable == 10


def test_tasks_call_the_services(enrol, record, loyalty_settings):
    """Given points older than a year, when the tasks run, then the expiry service has expired them."""
    loyalty_settings["PENDING_DAYS"] = 0
    enrol("M-1")
    record(
        "M-1",
        "point_add",
        points=10,
        effective_timestamp=(timezone.now() - dt.timedelta(days=366)).isoformat(),
    )
    assert tasks.points_release_pending() == 0
    assert tasks.points_expire_due() == 1
    assert LoyaltyEvent.objects.filter(action="points_expired").exists()


def test_schedules_ensure_is_idempotent_and_repairs_changes(db):
    """Given no schedules, when schedules_ensure runs twice and after a hand edit, then there are three
    hourly schedules.
    """
    services.schedules_ensure()
    services.schedules_ensure()
    ours = Schedule.objects.filter(func__startswith="loyaltysync.")
    schedules = ours.order_by("func")
    assert [(s.func, s.schedule_type, s.repeats) for s in schedules] == [
        ("loyaltysync.tasks.points_expire_due", Schedule.HOURLY, -1),
        ("loyaltysync.tasks.points_release_pending", Schedule.HOURLY, -1),
        ("loyaltysync.tasks.tier_floors_expire", Schedule.HOURLY, -1),
    ]
    Schedule.objects.filter(func="loyaltysync.tasks.points_expire_due").update(schedule_type=Schedule.DAILY)
    services.schedules_ensure()
    assert set(ours.values_list("schedule_type", flat=True)) == {Schedule.HOURLY}
    assert ours.count() == 3

"""Scheduled jobs of the loyalty domain: releasing pending points, expiring points, and their schedules."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from ..models import EventSource, LedgerKind, Member, PointsTransaction
from ..schedules import schedule_ensure
from .ledger import _CREDIT_KINDS, _standing_refresh
from .recording import _announce, _Context, _event_create, _member_save


def points_release_pending(*, now: dt.datetime | None = None) -> int:
    """Make pending earnings spendable once their ``available_at`` has passed.

    Records one engine event ``points_spendable`` (data ``{"points", "points_spendable"}``) per
    member. Returns how many members had points released.
    """
    now = now or timezone.now()
    due = PointsTransaction.objects.filter(pending=True, available_at__lte=now)
    released = 0
    for member_pk in due.values_list("member_id", flat=True).distinct().order_by():
        with transaction.atomic():
            member = Member.objects.select_for_update(no_key=True).get(pk=member_pk)
            rows = member.ledger.filter(pending=True, available_at__lte=now)
            points = rows.aggregate(total=Sum("remaining"))["total"] or 0
            rows.update(pending=False)
            context = _Context(member=member, occurred_at=now, source=EventSource.ENGINE)
            _standing_refresh(context)
            if points:
                _event_create(
                    context,
                    "points_spendable",
                    {"points": points, "points_spendable": member.points_spendable},
                )
                released += 1
            _member_save(member)
            _announce(context.events)
    return released


def points_expire_due(*, now: dt.datetime | None = None) -> int:
    """Expire what remains of earnings past their ``expires_at``: ``expire`` ledger rows and balances.

    Records one engine event ``points_expired`` (data ``{"points"}``) per member; returns how many
    members lost points.
    """
    now = now or timezone.now()
    due = PointsTransaction.objects.filter(
        kind__in=_CREDIT_KINDS, remaining__gt=0, expires_at__isnull=False, expires_at__lte=now
    )
    expired = 0
    for member_pk in due.values_list("member_id", flat=True).distinct().order_by():
        with transaction.atomic():
            member = Member.objects.select_for_update(no_key=True).get(pk=member_pk)
            credits = list(due.filter(member=member).select_for_update().order_by("created_at", "id"))
            points = sum(credit.remaining for credit in credits)
            if not points:
                continue
            context = _Context(member=member, occurred_at=now, source=EventSource.ENGINE)
            event = _event_create(context, "points_expired", {"points": points})
            PointsTransaction.objects.bulk_create(
                PointsTransaction(
                    member=member,
                    kind=LedgerKind.EXPIRE,
                    points=-credit.remaining,
                    event=event,
                    note=f"Expired from #{credit.pk}",
                    created_at=now,
                    available_at=now,
                )
                for credit in credits
            )
            for credit in credits:
                credit.remaining = 0
            PointsTransaction.objects.bulk_update(credits, ["remaining"])
            _standing_refresh(context)
            _member_save(member)
            _announce(context.events)
            expired += 1
    return expired


SCHEDULES = (
    ("loyaltysync: release pending points", "loyaltysync.tasks.points_release_pending"),
    ("loyaltysync: expire points", "loyaltysync.tasks.points_expire_due"),
    ("loyaltysync: end tiers given by hand", "loyaltysync.tasks.tier_floors_expire"),
)


def schedules_ensure() -> None:
    """Create or update the hourly django-q2 schedules of the points jobs (safe to call repeatedly)."""
    from django_q.models import Schedule

    with transaction.atomic():
        for name, func in SCHEDULES:
            schedule_ensure(name=name, func=func, schedule_type=Schedule.HOURLY)

"""The points ledger and tiers: earning, spending, taking back, balances and the tier they qualify for.

Balances on ``Member`` are always recomputed from ``PointsTransaction`` rows (``_standing_refresh``);
a tier change records ``tier_reached`` or ``tier_lost``.
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from ..errors import InsufficientPoints
from ..models import EventSource, LedgerKind, LoyaltyEvent, Member, PointsTransaction, Tier
from .program import program_rules
from .recording import _announce, _Context, _event_create, _member_save
from .validation import _source_check

_CREDIT_KINDS = (LedgerKind.EARN, LedgerKind.ADJUST)


def _open_credits(member: Member) -> QuerySet[PointsTransaction]:
    return member.ledger.filter(kind__in=_CREDIT_KINDS, points__gt=0, remaining__gt=0).order_by(
        "created_at", "id"
    )


def _points_credit(
    context: _Context, points: int, event: LoyaltyEvent | None, *, kind: str, pending_days: int, note: str
) -> PointsTransaction:
    """An earning: spendable after ``pending_days``, expiring after the program's expiry days (0: never)."""
    start = context.occurred_at
    available_at = start + dt.timedelta(days=pending_days)
    expiry_days = program_rules().expiry_days
    return PointsTransaction.objects.create(
        member=context.member,
        kind=kind,
        points=points,
        remaining=points,
        event=event,
        note=note[:255],
        created_at=start,
        available_at=available_at,
        pending=available_at > timezone.now(),
        expires_at=start + dt.timedelta(days=expiry_days) if expiry_days else None,
    )


def _points_spend(context: _Context, points: int, event: LoyaltyEvent, *, note: str) -> None:
    """Consume spendable earnings, oldest first, and write one spend row."""
    left = points
    for credit in _open_credits(context.member).filter(pending=False).select_for_update():
        take = min(credit.remaining, left)
        credit.remaining -= take
        credit.save(update_fields=["remaining"])
        left -= take
        if not left:
            break
    if left:
        raise _insufficient(points, points - left, "data.points")
    PointsTransaction.objects.create(
        member=context.member,
        kind=LedgerKind.SPEND,
        points=-points,
        event=event,
        note=note[:255],
        created_at=context.occurred_at,
        available_at=context.occurred_at,
    )


def _points_recoverable(member: Member, due: int) -> int:
    if due <= 0:
        return 0
    open_points = _open_credits(member).aggregate(total=Sum("remaining"))["total"] or 0
    return min(due, open_points)


def _points_take_back(
    context: _Context, points: int, event: LoyaltyEvent, *, first: PointsTransaction | None, note: str
) -> None:
    """Take back earned points (refunds): from ``first`` (the checkout's earning), then oldest first."""
    credits = list(_open_credits(context.member).select_for_update())
    if first is not None:
        credits.sort(key=lambda credit: credit.pk != first.pk)  # stable: the rest stay oldest first
    left = points
    for credit in credits:
        take = min(credit.remaining, left)
        credit.remaining -= take
        credit.save(update_fields=["remaining"])
        left -= take
        if not left:
            break
    PointsTransaction.objects.create(
        member=context.member,
        kind=LedgerKind.REFUND,
        points=-(points - left),
        event=event,
        note=note[:255],
        created_at=context.occurred_at,
        available_at=context.occurred_at,
    )


def _balances_refresh(member: Member) -> None:
    credit = Q(kind__in=_CREDIT_KINDS, points__gt=0)
    totals = member.ledger.aggregate(
        sum_earned=Sum("points", filter=credit | Q(kind=LedgerKind.REFUND)),
        sum_spent=Sum("points", filter=Q(kind=LedgerKind.SPEND)),
        sum_expired=Sum("points", filter=Q(kind=LedgerKind.EXPIRE)),
        sum_pending=Sum("remaining", filter=credit & Q(pending=True)),
        sum_spendable=Sum("remaining", filter=credit & Q(pending=False)),
    )
    member.points_earned = totals["sum_earned"] or 0
    member.points_spent = -(totals["sum_spent"] or 0)
    member.points_expired = -(totals["sum_expired"] or 0)
    member.points_pending = totals["sum_pending"] or 0
    member.points_spendable = totals["sum_spendable"] or 0


def _standing_refresh(context: _Context, *, joining: bool = False) -> None:
    """Recompute balances from the ledger and the tier from lifetime points; record tier changes.

    ``joining``: the member is new. Being placed in the entry tier on joining is not reaching a tier,
    so no ``tier_reached`` is recorded for it (workflows on ``tier_reached`` hear of real upgrades only).
    """
    member = context.member
    _balances_refresh(member)
    new_tier = (
        Tier.objects.filter(points_threshold__lte=member.points_earned).order_by("-points_threshold").first()
    )
    floor = member.tier_floor_at(timezone.now())
    if floor is not None and (new_tier is None or new_tier.points_threshold < floor.points_threshold):
        new_tier = floor
    if (new_tier.pk if new_tier else None) == member.tier_id:
        return
    old_tier = member.tier if member.tier_id else None
    member.tier = new_tier
    member.tier_since = context.occurred_at
    if joining and old_tier is None:
        return
    upgrade = new_tier is not None and (
        old_tier is None or new_tier.points_threshold > old_tier.points_threshold
    )
    _event_create(
        context,
        "tier_reached" if upgrade else "tier_lost",
        {
            "tier": new_tier.name if new_tier else None,
            "previous_tier": old_tier.name if old_tier else None,
            "benefits": new_tier.benefits if new_tier else "",
        },
        source=EventSource.ENGINE,
    )


def member_points_refresh(*, member: Member, source: str = EventSource.ENGINE) -> Member:
    """Recompute a member's balances and tier from the ledger (repairs hand-edited data)."""
    _source_check(source)
    with transaction.atomic():
        member = Member.objects.select_for_update(no_key=True).get(pk=member.pk)
        context = _Context(member=member, occurred_at=timezone.now(), source=source)
        _standing_refresh(context)
        _member_save(member)
        _announce(context.events)
    return member


def _insufficient(wanted: int, spendable: int, path: str) -> InsufficientPoints:
    return InsufficientPoints(
        f"Cannot spend {wanted} points: the member has {spendable} spendable points.", field=path
    )

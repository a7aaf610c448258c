"""Selectors of the loyalty domain: the reads the API, the admin and other apps share."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from .attributes import ATTRIBUTES
from .errors import MemberNotFound
from .models import LedgerKind, LoyaltyEvent, Member, PointsTransaction

SEARCHED = [a.name for a in ATTRIBUTES if a.searchable]


def member_get(*, member_id: str) -> Member:
    """The member with this id, or ``MemberNotFound``."""
    # Ids that cannot exist are not looked up: some databases refuse NUL characters in queries.
    if not isinstance(member_id, str) or not member_id or len(member_id) > 255 or "\x00" in member_id:
        raise MemberNotFound("No member with this id.", field="member_id")
    member = Member.objects.select_related("tier").filter(member_id=member_id).first()
    if member is None:
        raise MemberNotFound(f"No member with id {member_id!r}.", field="member_id")
    return member


def member_list(*, filters: dict[str, Any] | None = None) -> QuerySet[Member]:
    """Members ordered by id. Filters: ``status``, ``tier`` (tier name, any case), ``search``
    (in the registry's searchable attributes: member id, e-mail, first and last name)."""
    filters = filters or {}
    members = Member.objects.select_related("tier").order_by("member_id")
    if filters.get("status"):
        members = members.filter(status=filters["status"])
    if filters.get("tier"):
        members = members.filter(tier__name__iexact=filters["tier"])
    if filters.get("search"):
        members = member_search(members=members, term=filters["search"])
    return members


def member_search(*, members: QuerySet[Member], term: str) -> QuerySet[Member]:
    """``members`` with ``term`` in one of the registry's searchable attributes."""
    match = Q()
    for name in SEARCHED:
        match |= Q(**{f"{name}__icontains": term})
    return members.filter(match)


def member_events(*, member: Member) -> QuerySet[LoyaltyEvent]:
    """The member's events, newest first."""
    return member.events.select_related("member").order_by("-occurred_at", "-id")


def member_ledger(*, member: Member) -> QuerySet[PointsTransaction]:
    """The member's points ledger rows, newest first."""
    return member.ledger.order_by("-created_at", "-id")


EXPIRING_SOON_DAYS = 30


@dataclass(frozen=True)
class ExpiringPoints:
    """Points of a member that expire within ``days`` (before ``until``) unless spent first."""

    days: int
    until: dt.datetime
    points: int
    lots: list[dict[str, Any]] = field(default_factory=list)  # {"expires_at", "points"}, soonest first


def member_points_expiring(
    *, member: Member, days: int = EXPIRING_SOON_DAYS, now: dt.datetime | None = None
) -> ExpiringPoints:
    """What remains of the member's earnings that expires in the next ``days`` days (pending points too:
    they expire on the same clock), by expiry moment. Due points the expiry job has not taken yet count."""
    until = (now or timezone.now()) + dt.timedelta(days=days)
    lots = [
        {"expires_at": expires_at, "points": points}
        for expires_at, points in member.ledger.filter(
            kind__in=(LedgerKind.EARN, LedgerKind.ADJUST),
            points__gt=0,
            remaining__gt=0,
            expires_at__isnull=False,
            expires_at__lte=until,
        )
        .order_by("expires_at", "id")
        .values_list("expires_at", "remaining")
    ]
    return ExpiringPoints(days=days, until=until, points=sum(lot["points"] for lot in lots), lots=lots)

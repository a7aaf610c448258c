"""Selectors of the loyalty domain: the reads the API, the admin and other apps share."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from .attributes import ATTRIBUTES
from .errors import MemberNotFound
from .models import LoyaltyEvent, Member, PointsTransaction

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
        term = filters["search"]
        match = Q()
        for name in SEARCHED:
            match |= Q(**{f"{name}__icontains": term})
        members = members.filter(match)
    return members


def member_events(*, member: Member) -> QuerySet[LoyaltyEvent]:
    """The member's events, newest first."""
    return member.events.select_related("member").order_by("-occurred_at", "-id")


def member_ledger(*, member: Member) -> QuerySet[PointsTransaction]:
    """The member's points ledger rows, newest first."""
    return member.ledger.order_by("-created_at", "-id")

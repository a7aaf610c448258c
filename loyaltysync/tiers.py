"""Tiers given by hand: a tier a member holds at least, for a while or until further notice.

The rules (lifetime points, ``services._standing_refresh``) still apply: they may raise the
member above the given tier at any time, and take over again when it ends.
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from .errors import InvalidData
from .models import Member, Tier
from .services.ledger import _standing_refresh
from .services.recording import _announce, _Context, _member_save
from .services.validation import _source_check


def member_tier_set(*, member: Member, tier_name: str, days: int | None, source: str) -> Member:
    """Give ``member`` the tier ``tier_name`` (for ``days`` days; ``None``: until further notice).

    Records ``tier_reached`` / ``tier_lost`` as any tier change does; a member the rules already
    put higher keeps the higher tier. Raises ``InvalidData`` naming ``tier`` or ``days``.
    """
    _source_check(source)
    tier = Tier.objects.filter(name=tier_name).first()
    if tier is None:
        raise InvalidData({"tier": f"{tier_name!r} is not a tier."})
    if days is not None and days < 1:
        raise InvalidData({"days": "must be at least 1."})
    now = timezone.now()
    with transaction.atomic():
        member = Member.objects.select_for_update().get(pk=member.pk)
        member.tier_floor = tier
        member.tier_floor_until = now + dt.timedelta(days=days) if days else None
        context = _Context(member=member, occurred_at=now, source=source)
        _standing_refresh(context)
        _member_save(member)
        _announce(context.events)
    return member


def tier_floors_expire(*, now: dt.datetime | None = None) -> int:
    """Members whose given tier has ended: the rules decide their tier again. Returns how many."""
    now = now or timezone.now()
    ended = Member.objects.filter(tier_floor__isnull=False, tier_floor_until__lte=now)
    count = 0
    for member_pk in ended.values_list("pk", flat=True):
        with transaction.atomic():
            member = Member.objects.select_for_update().get(pk=member_pk)
            member.tier_floor = None
            member.tier_floor_until = None
            context = _Context(member=member, occurred_at=now, source="engine")
            _standing_refresh(context)
            member.save()
            _announce(context.events)
            count += 1
    return count

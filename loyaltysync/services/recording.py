"""One recording of a change to a member: the locked member, the events recorded, and announcing them.

The building blocks every other service module shares: ``_Context`` carries a recording,
``_event_create`` writes an event into it, ``_announce`` sends ``loyalty_event_recorded`` for
each (inside the transaction, after the member's state is updated), ``_member_save`` saves only
real changes so listeners hear of nothing else.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction

from ..errors import DuplicateTransaction, MemberAlreadyExists
from ..member_checks import member_checks_run
from ..models import LoyaltyEvent, Member
from ..signals import loyalty_event_recorded


@dataclass
class _Context:
    """One recording: the locked member, when it happened, who asked, and the events recorded."""

    member: Member
    occurred_at: dt.datetime
    source: str
    action: str = ""
    events: list[LoyaltyEvent] = field(default_factory=list)


def _event_create(
    context: _Context,
    action: str,
    data: dict[str, Any],
    *,
    transaction_id: str | None = None,
    source: str | None = None,
) -> LoyaltyEvent:
    event = LoyaltyEvent(
        member=context.member,
        action=action,
        data=data,
        occurred_at=context.occurred_at,
        source=source or context.source,
        transaction_id=transaction_id,
    )
    if transaction_id is not None and action == "checkout":
        try:
            with transaction.atomic():
                event.save()
        except IntegrityError:
            raise _duplicate(transaction_id) from None
    else:
        event.save()
    context.events.append(event)
    return event


def _announce(events: Iterable[LoyaltyEvent]) -> None:
    for event in events:
        loyalty_event_recorded.send(sender=LoyaltyEvent, event=event)


def _duplicate(transaction_id: str) -> DuplicateTransaction:
    return DuplicateTransaction(
        f"A checkout with transaction_id {transaction_id!r} was recorded before.", field="data.transaction_id"
    )


def _member_insert(member: Member) -> None:
    member_checks_run(member, None)
    try:
        with transaction.atomic():  # a savepoint: a concurrent insert must not break the caller's transaction
            member.save()
    except IntegrityError:
        raise MemberAlreadyExists(
            f"A member with id {member.member_id!r} exists already.", field="member_id"
        ) from None


def _member_save(member: Member) -> None:
    """Save only when something changed (``None``: a new object), so listeners hear of real changes."""
    changed = member.changed_fields()
    if changed is None or changed:
        member_checks_run(member, changed)
        member.save()

"""A member with a value for every mapped field, and claiming and delivering members, for the sync tests."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from braze_integration import delivery, queue, services
from braze_integration.models import Connection, MemberSyncState, SyncStatus
from loyaltysync.models import Member


def make_member(member_id: str = "m-1", **fields) -> Member:
    defaults = dict(first_name="Ada", birth_date=dt.date(1990, 5, 17), points_spendable=120,
                    purchase_total=Decimal("99.90"),
                    last_purchase={"transaction_id": "t1", "total": 99.9, "currency": "EUR",
                                   "items": [{"product_id": "sku-1", "price": 49.95, "quantity": 2}]})
    defaults.update(fields)
    return Member.objects.create(member_id=member_id, **defaults)


def claim_everyone(members) -> object:
    """Mark the members pending and claim them all; returns the claim's token."""
    MemberSyncState.objects.filter(pk__in=[m.pk for m in members]).update(status=SyncStatus.PENDING)
    token, _ = queue.claim(limit=max(1, len(members)), member_ids=[m.pk for m in members])
    return token


def deliverer_for(connection: Connection) -> delivery.Deliverer:
    return delivery.Deliverer(connection, services.client_for(connection))

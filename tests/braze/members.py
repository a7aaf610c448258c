"""A member with a value for every mapped field, for the sync tests."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from loyaltysync.models import Member


def make_member(member_id: str = "m-1", **fields) -> Member:
    defaults = dict(first_name="Ada", birth_date=dt.date(1990, 5, 17), points_spendable=120,
                    purchase_total=Decimal("99.90"),
                    last_purchase={"transaction_id": "t1", "total": 99.9, "currency": "EUR",
                                   "items": [{"product_id": "sku-1", "price": 49.95, "quantity": 2}]})
    defaults.update(fields)
    return Member.objects.create(member_id=member_id, **defaults)

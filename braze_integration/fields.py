"""The loyalty fields that can be mapped to Braze, each with its Braze type.

A field knows which ``Member.values()`` lookups it reads (``columns``), which member attributes a
change of it shows up in (``depends_on``, compared with ``Member.changed_fields()``), and how to
take its value out of a row. Custom fields defined by the program join the static ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from loyaltysync.models import CustomField, FieldType, Tier

from .payloads import BrazeType

Row = Mapping[str, Any]


@dataclass(frozen=True)
class LoyaltyField:
    key: str
    label: str
    braze_type: BrazeType
    group: str
    columns: tuple[str, ...]
    depends_on: tuple[str, ...]
    extract: Callable[[Row, FieldContext], Any]

    @property
    def choice_label(self) -> str:
        return f"{self.label} ({self.braze_type.value.replace('_', ' ')})"


@dataclass
class FieldContext:
    """What some computed fields need besides the row (loaded once per batch)."""

    tier_thresholds: list[tuple[int, str]] = field(default_factory=list)

    @classmethod
    def load(cls) -> FieldContext:
        return cls(tier_thresholds=list(Tier.objects.order_by("points_threshold").values_list("points_threshold", "name")))


def _column(name: str, label: str, braze_type: BrazeType, group: str) -> LoyaltyField:
    return LoyaltyField(name, label, braze_type, group, (name,), (name,), lambda row, ctx: row[name])


def _tier_above(row: Row, ctx: FieldContext) -> tuple[int, str] | None:
    """(threshold, name) of the lowest tier the member has not reached yet."""
    return next(((t, n) for t, n in ctx.tier_thresholds if t > row["points_earned"]), None)


def _points_to_next_tier(row: Row, ctx: FieldContext) -> int | None:
    above = _tier_above(row, ctx)
    return above[0] - row["points_earned"] if above else None


def _next_tier(row: Row, ctx: FieldContext) -> str | None:
    above = _tier_above(row, ctx)
    return above[1] if above else None


def _last_purchase(key: str) -> Callable[[Row, FieldContext], Any]:
    return lambda row, ctx: (row["last_purchase"] or {}).get(key)


_PROFILE, _POINTS, _TIER, _PURCHASES, _COMPUTED = "Profile", "Points", "Tier", "Purchases", "Computed"
T = BrazeType

STATIC_FIELDS: tuple[LoyaltyField, ...] = (
    _column("member_id", "Member id", T.STRING, _PROFILE),
    _column("first_name", "First name", T.STRING, _PROFILE),
    _column("last_name", "Last name", T.STRING, _PROFILE),
    _column("email", "E-mail", T.STRING, _PROFILE),
    _column("phone", "Phone", T.STRING, _PROFILE),
    _column("birth_date", "Birth date", T.DATE, _PROFILE),
    _column("gender", "Gender", T.STRING, _PROFILE),
    _column("language", "Language", T.STRING, _PROFILE),
    _column("country", "Country", T.STRING, _PROFILE),
    _column("status", "Status", T.STRING, _PROFILE),
    LoyaltyField("opted_in", "Opted in", T.BOOLEAN, _PROFILE, ("status",), ("status",),
                 lambda row, ctx: row["status"] == "active"),
    _column("opted_in_at", "Opt-in time", T.DATE, _PROFILE),
    _column("opted_out_at", "Opt-out time", T.DATE, _PROFILE),
    _column("points_earned", "Points earned (lifetime)", T.INTEGER, _POINTS),
    _column("points_spent", "Points spent", T.INTEGER, _POINTS),
    _column("points_pending", "Points pending", T.INTEGER, _POINTS),
    _column("points_expired", "Points expired", T.INTEGER, _POINTS),
    _column("points_spendable", "Points spendable", T.INTEGER, _POINTS),
    LoyaltyField("tier", "Tier", T.STRING, _TIER, ("tier__name",), ("tier_id",), lambda row, ctx: row["tier__name"]),
    _column("tier_since", "Tier since", T.DATE, _TIER),
    LoyaltyField("tier_multiplier", "Tier earning multiplier", T.FLOAT, _TIER, ("tier__multiplier",), ("tier_id",),
                 lambda row, ctx: row["tier__multiplier"]),
    LoyaltyField("next_tier", "Next tier", T.STRING, _TIER, ("points_earned",), ("points_earned",), _next_tier),
    LoyaltyField("points_to_next_tier", "Points to next tier", T.INTEGER, _TIER, ("points_earned",),
                 ("points_earned",), _points_to_next_tier),
    _column("purchase_count", "Purchase count", T.INTEGER, _PURCHASES),
    _column("purchase_total", "Purchase total", T.FLOAT, _PURCHASES),
    _column("last_purchase_at", "Last purchase date", T.DATE, _PURCHASES),
    LoyaltyField("last_purchase_amount", "Last purchase amount", T.FLOAT, _COMPUTED, ("last_purchase",),
                 ("last_purchase",), _last_purchase("total")),
    LoyaltyField("last_purchase_currency", "Last purchase currency", T.STRING, _COMPUTED, ("last_purchase",),
                 ("last_purchase",), _last_purchase("currency")),
    LoyaltyField("last_purchase_items", "Last purchase items", T.ARRAY_OF_OBJECTS, _COMPUTED, ("last_purchase",),
                 ("last_purchase",), lambda row, ctx: (row["last_purchase"] or {}).get("items")),
    LoyaltyField("last_purchase_products", "Last purchase product ids", T.ARRAY, _COMPUTED, ("last_purchase",),
                 ("last_purchase",),
                 lambda row, ctx: [str(i.get("product_id")) for i in ((row["last_purchase"] or {}).get("items") or [])
                                   if isinstance(i, dict) and i.get("product_id") is not None] or None),
    LoyaltyField("loyalty_summary", "Loyalty summary (object)", T.OBJECT, _COMPUTED,
                 ("tier__name", "points_spendable", "points_pending", "purchase_count"),
                 ("tier_id", "points_spendable", "points_pending", "purchase_count"),
                 lambda row, ctx: {"tier": row["tier__name"], "points": row["points_spendable"],
                                   "pending": row["points_pending"], "purchases": row["purchase_count"]}),
)

_CUSTOM_TYPES = {
    FieldType.STRING: T.STRING,
    FieldType.INTEGER: T.INTEGER,
    FieldType.FLOAT: T.FLOAT,
    FieldType.BOOLEAN: T.BOOLEAN,
    FieldType.DATE: T.DATE,
    FieldType.DATETIME: T.DATE,
    FieldType.ARRAY: T.ARRAY,
    FieldType.OBJECT: T.OBJECT,
    FieldType.ARRAY_OF_OBJECTS: T.ARRAY_OF_OBJECTS,
}
CUSTOM_PREFIX = "custom."


def _custom_field(key: str, label: str, field_type: str) -> LoyaltyField:
    return LoyaltyField(
        f"{CUSTOM_PREFIX}{key}", label, _CUSTOM_TYPES[FieldType(field_type)], "Custom fields",
        ("custom_fields",), (f"custom_fields.{key}",), lambda row, ctx: (row["custom_fields"] or {}).get(key),
    )


def loyalty_fields() -> dict[str, LoyaltyField]:
    """Every mappable field by key: the static ones, then the program's custom fields."""
    fields = {f.key: f for f in STATIC_FIELDS}
    for key, label, field_type in CustomField.objects.order_by("key").values_list("key", "label", "type"):
        fields[f"{CUSTOM_PREFIX}{key}"] = _custom_field(key, label, field_type)
    return fields


def field_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    """Grouped choices for the admin's dropdown."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for f in loyalty_fields().values():
        groups.setdefault(f.group, []).append((f.key, f.choice_label))
    return list(groups.items())

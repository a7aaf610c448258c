"""The member's attributes: the one list of them, each with its type, group and where its value comes from.

Every reader of member attributes derives from this registry: the services (what may be written,
what is computed), the REST API's serializers, the admin's field lists, Braze's field registry
(``braze_integration.fields``), the workflows' context and attribute schema, and the imports.
Adding a member attribute is one entry here (plus its migration when it is a column).

An attribute's value is read from a ``Member.values(*lookups)`` row (``read(row, context)``), so a
batch of members costs one query; ``row_of`` builds such a row from a loaded member. ``changes``
are the names ``Member.changed_fields()`` reports when the attribute's value may have changed.
Custom fields (``CustomField`` rows) join as ``custom_fields.<key>`` attributes.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_date

from . import locales
from .fieldtypes import FieldType, TypeProblem, json_type, string_problem
from .models import Consent, CustomField, Gender, Member, MemberStatus, Tier

Row = Mapping[str, Any]

CUSTOM_FIELDS = "custom_fields"  # the JSON column holding custom field values, and their names' prefix
CUSTOM_PREFIX = f"{CUSTOM_FIELDS}."
MAX_PROFILE_TEXT = 255


class Kind(StrEnum):
    IDENTITY = "identity"  # member_id: given once, at creation
    PROFILE = "profile"  # written through the services (API, admin, imports, events)
    ENGINE = "engine"  # a column kept by the loyalty engine or the database; never written from outside
    DERIVED = "derived"  # computed from other columns when read; no column of its own
    CUSTOM = "custom"  # a program-defined custom field


@dataclass
class AttributeContext:
    """What some derived attributes need besides the row: the tiers (loaded once per batch, or on first use)."""

    tier_thresholds: list[tuple[int, str]] | None = None

    @classmethod
    def load(cls) -> AttributeContext:
        context = cls()
        context.thresholds()
        return context

    def thresholds(self) -> list[tuple[int, str]]:
        if self.tier_thresholds is None:
            self.tier_thresholds = list(
                Tier.objects.order_by("points_threshold").values_list("points_threshold", "name")
            )
        return self.tier_thresholds


@dataclass(frozen=True)
class MemberAttribute:
    """One member attribute. ``clean`` (profile attributes) turns input into the value to store or
    raises ``TypeProblem`` with the reason."""

    name: str
    label: str
    type: FieldType
    group: str
    kind: Kind
    lookups: tuple[str, ...]
    changes: tuple[str, ...]
    read: Callable[[Row, AttributeContext], Any]
    watchable: bool = False
    anniversary: bool = False
    listed: bool = False
    searchable: bool = False
    clean: Callable[[Any], Any] | None = field(default=None, compare=False)
    custom_key: str | None = None
    consent: bool = False  # a marketing consent (values of ``Consent``): feeds Braze's subscriptions

    @property
    def writable(self) -> bool:
        return self.kind == Kind.PROFILE

    @property
    def computed(self) -> bool:
        return self.kind in (Kind.ENGINE, Kind.DERIVED)

    @property
    def stored(self) -> bool:
        """A column of ``Member`` by this name (what the API and the admin show as it is)."""
        return self.kind in (Kind.IDENTITY, Kind.PROFILE, Kind.ENGINE)


# --- How profile input is checked ----------------------------------------------------------------


# C0 controls (line breaks and tabs among them), DEL, C1 and Unicode's line and paragraph separators: a
# profile value is one line of text.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_NAMES = {"\n": "a line break", "\r": "a line break", "\u2028": "a line break", "\u2029": "a line break",
                  "\t": "a tab"}


def _control_name(character: str) -> str:
    return _CONTROL_NAMES.get(character, f"U+{ord(character):04X}")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeProblem(f"must be a string, not {json_type(value)}.")
    problem = string_problem(value)
    if problem:
        raise TypeProblem(problem)
    if len(value) > MAX_PROFILE_TEXT:
        raise TypeProblem(f"must be at most {MAX_PROFILE_TEXT} characters (got {len(value)}).")
    text = value.strip()  # a line break or tab at either end is dropped, as spaces are
    if control := _CONTROL.search(text):
        raise TypeProblem(f"must be one line without control characters (found {_control_name(control.group())}).")
    return text


def _one_of(values: Iterable[str], message: str) -> Callable[[Any], str]:
    allowed = list(values)

    def clean(value: Any) -> str:
        if value is None:
            raise TypeProblem(message)
        text = _text(value)
        if value != "" and text not in allowed:  # empty: the model's own check says it is required
            raise TypeProblem(message)
        return text

    return clean


def _gender(value: Any) -> str:
    text = _text(value)
    if value is not None and text not in Gender.values:
        raise TypeProblem("must be one of: female, male, other, or empty.")
    return text


_CONSENT_MESSAGE = "must be one of: " + ", ".join(v for v in Consent.values if v) + ", or empty (not given)."


def _consent(value: Any) -> str:
    if value is None:
        return Consent.UNSET
    if not isinstance(value, str) or value.strip() not in Consent.values:
        raise TypeProblem(_CONSENT_MESSAGE)
    return value.strip()


def _language(value: Any) -> str:
    text = _text(value)
    if text and (not _LANGUAGE_TAG.fullmatch(text) or locales.language_of(text) is None):
        raise TypeProblem(f"{locales.LANGUAGE_RULE} ({text} is not one).")
    return text


_LANGUAGE_TAG = re.compile(r"[a-z]{2}(-[A-Za-z0-9]{1,8})*")


def _country(value: Any) -> str:
    text = _text(value).upper()
    if text and text not in locales.iso_countries():
        raise TypeProblem(f"{locales.COUNTRY_RULE} ({text} is not one).")
    return text


def _birth_date(value: Any) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        raise TypeProblem("must be a date (YYYY-MM-DD), not a date and time.")
    if isinstance(value, dt.date):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = parse_date(value.strip())
        except ValueError:
            parsed = None
        if parsed is None:
            raise TypeProblem("must be a date as YYYY-MM-DD.")
    else:
        raise TypeProblem(f"must be a date as YYYY-MM-DD, not {json_type(value)}.")
    if parsed > timezone.localdate() or parsed.year < 1900:
        raise TypeProblem("must be a date between 1900-01-01 and today.")
    return parsed


_STATUS_MESSAGE = "must be one of: " + ", ".join(MemberStatus.values) + "."


# --- How derived values are read -------------------------------------------------------------------


def _tier_above(row: Row, context: AttributeContext) -> tuple[int, str] | None:
    """(threshold, name) of the lowest tier the member has not reached yet."""
    return next(((t, n) for t, n in context.thresholds() if t > row["points_earned"]), None)


def _points_to_next_tier(row: Row, context: AttributeContext) -> int | None:
    above = _tier_above(row, context)
    return above[0] - row["points_earned"] if above else None


def _next_tier(row: Row, context: AttributeContext) -> str | None:
    above = _tier_above(row, context)
    return above[1] if above else None


def _last_purchase(key: str) -> Callable[[Row, AttributeContext], Any]:
    return lambda row, context: (row["last_purchase"] or {}).get(key)


def _last_purchase_products(row: Row, context: AttributeContext) -> list[str] | None:
    items = (row["last_purchase"] or {}).get("items") or []
    return [
        str(item.get("product_id"))
        for item in items
        if isinstance(item, dict) and item.get("product_id") is not None
    ] or None


def _loyalty_summary(row: Row, context: AttributeContext) -> dict[str, Any]:
    return {
        "tier": row["tier__name"],
        "points": row["points_spendable"],
        "pending": row["points_pending"],
        "purchases": row["purchase_count"],
    }


def _column(
    name: str, label: str, field_type: FieldType, group: str, kind: Kind, **options: Any
) -> MemberAttribute:
    """An attribute that is a column of its own: read as is, changed when the column changes."""
    return MemberAttribute(
        name, label, field_type, group, kind, (name,), (name,), lambda row, context: row[name], **options
    )


def _derived(
    name: str,
    label: str,
    field_type: FieldType,
    group: str,
    lookups: tuple[str, ...],
    changes: tuple[str, ...],
    read: Callable[[Row, AttributeContext], Any],
    **options: Any,
) -> MemberAttribute:
    return MemberAttribute(name, label, field_type, group, Kind.DERIVED, lookups, changes, read, **options)


PROFILE, POINTS, TIER, PURCHASES, COMPUTED, RECORD = "Profile", "Points", "Tier", "Purchases", "Computed", "Record"
CONSENT = "Marketing consent"
CUSTOM_GROUP = "Custom fields"
T = FieldType
P, E = Kind.PROFILE, Kind.ENGINE

# Every member attribute, in the order the admin, the API and the Braze dropdown show them.
ATTRIBUTES: tuple[MemberAttribute, ...] = (
    _column("member_id", "Member id", T.STRING, PROFILE, Kind.IDENTITY, listed=True, searchable=True),
    _column("first_name", "First name", T.STRING, PROFILE, P, watchable=True, searchable=True, clean=_text),
    _column("last_name", "Last name", T.STRING, PROFILE, P, watchable=True, searchable=True, clean=_text),
    _derived("full_name", "Full name", T.STRING, PROFILE, ("first_name", "last_name"), ("first_name", "last_name"),
             lambda row, context: f"{row['first_name']} {row['last_name']}".strip(), listed=True),
    _column("email", "E-mail", T.STRING, PROFILE, P, watchable=True, listed=True, searchable=True, clean=_text),
    _column("phone", "Phone", T.STRING, PROFILE, P, watchable=True, clean=_text),
    _column("birth_date", "Birth date", T.DATE, PROFILE, P, watchable=True, anniversary=True, clean=_birth_date),
    _column("gender", "Gender", T.STRING, PROFILE, P, watchable=True, clean=_gender),
    _column("language", "Language", T.STRING, PROFILE, P, watchable=True,
            clean=_language),
    _column("country", "Country", T.STRING, PROFILE, P, watchable=True,
            clean=_country),
    _column("status", "Status", T.STRING, PROFILE, P, watchable=True, listed=True,
            clean=_one_of(MemberStatus.values, _STATUS_MESSAGE)),
    _derived("opted_in", "Opted in", T.BOOLEAN, PROFILE, ("status",), ("status",),
             lambda row, context: row["status"] == MemberStatus.ACTIVE),
    _column("consent_email", "E-mail consent", T.STRING, CONSENT, P, watchable=True, consent=True, clean=_consent),
    _column("consent_sms", "SMS consent", T.STRING, CONSENT, P, watchable=True, consent=True, clean=_consent),
    _column("opted_in_at", "Opt-in time", T.DATETIME, PROFILE, E, watchable=True, anniversary=True),
    _column("opted_out_at", "Opt-out time", T.DATETIME, PROFILE, E, watchable=True),
    _column("points_earned", "Points earned (lifetime)", T.INTEGER, POINTS, E, watchable=True, listed=True),
    _column("points_spent", "Points spent", T.INTEGER, POINTS, E, watchable=True),
    _column("points_pending", "Points pending", T.INTEGER, POINTS, E, watchable=True),
    _column("points_expired", "Points expired", T.INTEGER, POINTS, E, watchable=True),
    _column("points_spendable", "Points spendable", T.INTEGER, POINTS, E, watchable=True, listed=True),
    MemberAttribute("tier", "Tier", T.STRING, TIER, E, ("tier__name",), ("tier_id",),
                    lambda row, context: row["tier__name"], watchable=True, listed=True),
    _derived("tier_benefits", "Tier benefits", T.STRING, TIER, ("tier__benefits",), ("tier_id",),
             lambda row, context: row["tier__benefits"]),
    _column("tier_since", "Tier since", T.DATETIME, TIER, E, watchable=True),
    _derived("tier_multiplier", "Tier earning multiplier", T.FLOAT, TIER, ("tier__multiplier",), ("tier_id",),
             lambda row, context: row["tier__multiplier"]),
    _derived("next_tier", "Next tier", T.STRING, TIER, ("points_earned",), ("points_earned",), _next_tier),
    _derived("points_to_next_tier", "Points to next tier", T.INTEGER, TIER, ("points_earned",), ("points_earned",),
             _points_to_next_tier),
    _column("purchase_count", "Purchase count", T.INTEGER, PURCHASES, E, watchable=True),
    _column("purchase_total", "Purchase total", T.FLOAT, PURCHASES, E, watchable=True, listed=True),
    _column("last_purchase_at", "Last purchase date", T.DATETIME, PURCHASES, E, watchable=True),
    _column("last_purchase", "Last purchase", T.OBJECT, PURCHASES, E, watchable=True),
    _derived("last_purchase_amount", "Last purchase amount", T.FLOAT, COMPUTED, ("last_purchase",),
             ("last_purchase",), _last_purchase("total")),
    _derived("last_purchase_currency", "Last purchase currency", T.STRING, COMPUTED, ("last_purchase",),
             ("last_purchase",), _last_purchase("currency")),
    _derived("last_purchase_items", "Last purchase items", T.ARRAY_OF_OBJECTS, COMPUTED, ("last_purchase",),
             ("last_purchase",), _last_purchase("items")),
    _derived("last_purchase_products", "Last purchase product ids", T.ARRAY, COMPUTED, ("last_purchase",),
             ("last_purchase",), _last_purchase_products),
    _derived("loyalty_summary", "Loyalty summary", T.OBJECT, COMPUTED,
             ("tier__name", "points_spendable", "points_pending", "purchase_count"),
             ("tier_id", "points_spendable", "points_pending", "purchase_count"), _loyalty_summary),
    _column("created_at", "Created", T.DATETIME, RECORD, E),
    _column("updated_at", "Last changed", T.DATETIME, RECORD, E, listed=True),
)
BY_NAME: dict[str, MemberAttribute] = {attribute.name: attribute for attribute in ATTRIBUTES}

PROFILE_FIELDS: tuple[str, ...] = tuple(a.name for a in ATTRIBUTES if a.writable)
CONSENT_FIELDS: tuple[str, ...] = tuple(a.name for a in ATTRIBUTES if a.consent)
# Kept by the engine (ledger, checkouts, tiers) or by the database; never written from outside.
COMPUTED_FIELDS: tuple[str, ...] = tuple(a.name for a in ATTRIBUTES if a.kind == Kind.ENGINE)


def by_group(attributes: Iterable[MemberAttribute]) -> dict[str, list[MemberAttribute]]:
    """Attributes by their group, groups in the registry's order."""
    groups: dict[str, list[MemberAttribute]] = {}
    for attribute in attributes:
        groups.setdefault(attribute.group, []).append(attribute)
    return groups


# --- Custom fields -----------------------------------------------------------------------------------


def custom_value(field_type: str, value: Any) -> Any:
    """A custom field's value as read from the JSON column. PostgreSQL's ``jsonb`` writes a number
    as its digits: a float field's 1e+19 comes back as the integer 10000000000000000000, which is a
    float again here."""
    return float(value) if type(value) is int and field_type == T.FLOAT else value


def custom_attribute(key: str, label: str, field_type: str) -> MemberAttribute:
    """The attribute of one custom field: ``custom_fields.<key>``, read from the JSON column."""
    return MemberAttribute(
        f"{CUSTOM_PREFIX}{key}",
        label,
        FieldType(field_type),
        CUSTOM_GROUP,
        Kind.CUSTOM,
        (CUSTOM_FIELDS,),
        (f"{CUSTOM_PREFIX}{key}",),
        lambda row, context: custom_value(field_type, (row[CUSTOM_FIELDS] or {}).get(key)),
        watchable=True,
        anniversary=FieldType(field_type) == FieldType.DATE,
        custom_key=key,
    )


def custom_attributes(definitions: Mapping[str, str] | None = None) -> list[MemberAttribute]:
    """The custom fields' attributes, by key; ``definitions`` (key -> type) saves the query when known."""
    if definitions is None:
        rows = CustomField.objects.order_by("key").values_list("key", "label", "type")
    else:
        rows = [(key, key, field_type) for key, field_type in sorted(definitions.items())]
    return [custom_attribute(key, label, field_type) for key, label, field_type in rows if field_type in T.values]


def member_attributes(definitions: Mapping[str, str] | None = None) -> dict[str, MemberAttribute]:
    """Every member attribute by name: the registry's, then the program's custom fields."""
    attributes = dict(BY_NAME)
    attributes.update((a.name, a) for a in custom_attributes(definitions))
    return attributes


# --- Reading values ----------------------------------------------------------------------------------


def row_of(member: Member, lookups: Iterable[str]) -> dict[str, Any]:
    """What ``Member.objects.values(*lookups)`` would give for ``member``, from the loaded object
    (``tier__name`` follows the tier; load it with ``select_related``)."""
    row: dict[str, Any] = {}
    for lookup in lookups:
        value: Any = member
        for part in lookup.split("__"):
            value = getattr(value, part, None) if value is not None else None
        row[lookup] = value
    return row


def lookups_of(attributes: Iterable[MemberAttribute]) -> list[str]:
    """The ``Member.values()`` lookups that reading ``attributes`` needs."""
    return sorted({lookup for attribute in attributes for lookup in attribute.lookups})

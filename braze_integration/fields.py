"""The loyalty fields that can be mapped to Braze: the member attribute registry with Braze types.

Every member attribute of ``loyaltysync.attributes`` (and every custom field, as ``custom.<key>``)
can be mapped; this module only adds each loyalty type's Braze type. A field keeps what the
registry knows: the ``Member.values()`` lookups it reads (``columns``), the member attributes a
change of it shows up in (``depends_on``, compared with ``Member.changed_fields()``), and how to
take its value out of a row (``extract``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from loyaltysync import attributes
from loyaltysync.attributes import AttributeContext, MemberAttribute
from loyaltysync.fieldtypes import FieldType

from .payloads import BrazeType

Row = Mapping[str, Any]
FieldContext = AttributeContext  # what derived fields need besides the row (the tiers)

# Braze has one time type for dates and dates with times.
BRAZE_TYPES: dict[FieldType, BrazeType] = {
    FieldType.STRING: BrazeType.STRING,
    FieldType.INTEGER: BrazeType.INTEGER,
    FieldType.FLOAT: BrazeType.FLOAT,
    FieldType.BOOLEAN: BrazeType.BOOLEAN,
    FieldType.DATE: BrazeType.DATE,
    FieldType.DATETIME: BrazeType.DATE,
    FieldType.ARRAY: BrazeType.ARRAY,
    FieldType.OBJECT: BrazeType.OBJECT,
    FieldType.ARRAY_OF_OBJECTS: BrazeType.ARRAY_OF_OBJECTS,
}
CUSTOM_PREFIX = "custom."


@dataclass(frozen=True)
class LoyaltyField:
    key: str
    label: str
    braze_type: BrazeType
    group: str
    columns: tuple[str, ...]
    depends_on: tuple[str, ...]
    extract: Callable[[Row, FieldContext], Any]
    field_type: FieldType = FieldType.STRING  # the loyalty type (Braze's date covers dates and datetimes)
    consent: bool = False  # a marketing consent: may feed Braze's subscription states and groups

    @property
    def choice_label(self) -> str:
        return f"{self.label} ({self.braze_type.value.replace('_', ' ')})"


def loyalty_field(attribute: MemberAttribute) -> LoyaltyField:
    """The mappable field of a member attribute; custom fields are keyed ``custom.<key>``."""
    key = attribute.name if attribute.custom_key is None else f"{CUSTOM_PREFIX}{attribute.custom_key}"
    return LoyaltyField(key, attribute.label, BRAZE_TYPES[attribute.type], attribute.group, attribute.lookups,
                        attribute.changes, attribute.read, field_type=attribute.type, consent=attribute.consent)


STATIC_FIELDS: tuple[LoyaltyField, ...] = tuple(loyalty_field(a) for a in attributes.ATTRIBUTES)


def loyalty_fields() -> dict[str, LoyaltyField]:
    """Every mappable field by key: the registry's attributes, then the program's custom fields."""
    fields = {f.key: f for f in STATIC_FIELDS}
    for attribute in attributes.custom_attributes():
        field = loyalty_field(attribute)
        fields[field.key] = field
    return fields


def field_choices(fields: dict[str, LoyaltyField] | None = None) -> list[tuple[str, list[tuple[str, str]]]]:
    """Grouped choices for the admin's dropdown (of ``fields`` when the caller has read them already)."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for f in (fields if fields is not None else loyalty_fields()).values():
        groups.setdefault(f.group, []).append((f.key, f.choice_label))
    return list(groups.items())

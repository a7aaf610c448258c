"""What a workflow run can read: the attribute catalogue and the context dicts built for a run.

A run's context is plain JSON-friendly data (dates as ISO strings, decimals as numbers):

    {"member": {...}, "event": {...}, "previous": {...}, "changes": {...}, "trigger": {...}, "time": "..."}

``event`` is there for event triggers (its data keys at the top, plus ``id``, ``action``,
``occurred_at``, ``source`` and the raw ``data``); ``previous`` and ``changes`` for field changes
(``previous`` is the member as it was before the change). The same names are what conditions
(``member.tier``), value specs and templates (``{{ member.tier }}``) use.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from braze_integration.payloads import format_time
from loyaltysync import attributes
from loyaltysync.attributes import AttributeContext
from loyaltysync.fieldtypes import FieldType
from loyaltysync.models import LoyaltyEvent, Member

from .conditions import AttributeSchema, AttrType

S, N = AttrType.STRING, AttrType.NUMBER

# How a run sees each loyalty type.
ATTR_TYPES: dict[str, AttrType] = {
    FieldType.STRING: S, FieldType.INTEGER: N, FieldType.FLOAT: N, FieldType.BOOLEAN: AttrType.BOOLEAN,
    FieldType.DATE: AttrType.DATE, FieldType.DATETIME: AttrType.DATETIME, FieldType.ARRAY: AttrType.LIST,
    FieldType.OBJECT: AttrType.OBJECT, FieldType.ARRAY_OF_OBJECTS: AttrType.LIST,
}
CUSTOM_PREFIX = attributes.CUSTOM_PREFIX  # custom field values are ``member.custom_fields.<key>``

# Member attribute -> type: every attribute of the registry, and the custom field values' object.
MEMBER_ATTRIBUTES: dict[str, AttrType] = {
    **{a.name: ATTR_TYPES[a.type] for a in attributes.ATTRIBUTES},
    attributes.CUSTOM_FIELDS: AttrType.OBJECT,
}
# Member attributes a field-change trigger can watch -> the name ``Member.changed_fields()`` reports.
WATCHABLE_FIELDS: dict[str, str] = {a.name: a.changes[0] for a in attributes.ATTRIBUTES if a.watchable}
# Member date attributes an anniversary trigger can use (plus date custom fields).
ANNIVERSARY_FIELDS = tuple(a.name for a in attributes.ATTRIBUTES if a.anniversary)
_MEMBER_LOOKUPS = (*attributes.lookups_of(attributes.ATTRIBUTES), attributes.CUSTOM_FIELDS)

EVENT_ATTRIBUTES: dict[str, AttrType] = {
    "event.id": N, "event.action": S, "event.occurred_at": AttrType.DATETIME, "event.source": S,
    "event.data": AttrType.OBJECT,
}


def member_attribute_types(custom_fields: Mapping[str, str]) -> dict[str, AttrType]:
    """Member attribute -> type, with ``custom_fields.<key>`` for each custom field (key -> FieldType)."""
    types = dict(MEMBER_ATTRIBUTES)
    for key, field_type in custom_fields.items():
        types[f"{CUSTOM_PREFIX}{key}"] = ATTR_TYPES.get(field_type, AttrType.ANY)
    return types


def attribute_schema(trigger_kind: str, custom_fields: Mapping[str, str]) -> AttributeSchema:
    """The attributes conditions may name in a workflow with this trigger kind.

    ``event.*`` only for event triggers, ``previous.*`` only for field changes, ``trigger.years``
    only for anniversaries. ``custom_fields`` maps each custom field key to its ``FieldType``.
    """
    members = member_attribute_types(custom_fields)
    known: dict[str, AttrType] = {f"member.{name}": attr_type for name, attr_type in members.items()}
    known["trigger.kind"] = S
    open_prefixes: dict[str, AttrType] = {}
    if trigger_kind == "event":
        known.update(EVENT_ATTRIBUTES)
        open_prefixes = {"event.data.": AttrType.ANY, "event.": AttrType.ANY}
    elif trigger_kind == "field_change":
        known.update({f"previous.{name}": attr_type for name, attr_type in members.items()})
    elif trigger_kind in ("date", "anniversary"):
        known["trigger.period"] = S
        if trigger_kind == "anniversary":
            known["trigger.years"] = N
    return AttributeSchema(known, open_prefixes)


def jsonable(value: Any) -> Any:
    """A model value as JSON-friendly data: datetimes in UTC with ``Z``, dates ISO, decimals numbers."""
    if isinstance(value, dt.datetime):
        return format_time(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


def member_context(member: Member, context: AttributeContext | None = None) -> dict[str, Any]:
    """The member as a run sees it: every registry attribute (``tier`` is the tier's name; load it with
    ``select_related``) and ``custom_fields``. ``context`` shares the tiers across many members."""
    row = attributes.row_of(member, _MEMBER_LOOKUPS)
    context = context or AttributeContext()
    out = {a.name: jsonable(a.read(row, context)) for a in attributes.ATTRIBUTES}
    out[attributes.CUSTOM_FIELDS] = jsonable(member.custom_fields or {})
    return out


def event_context(event: LoyaltyEvent) -> dict[str, Any]:
    """The loyalty event: its data keys at the top level, then its own fields (which win), and ``data``."""
    data = jsonable(event.data or {})
    return {**data, "id": event.pk, "action": event.action, "occurred_at": format_time(event.occurred_at),
            "source": event.source, "data": data}


def apply_changes(member: Mapping[str, Any], changes: Mapping[str, list]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(member as it is after the change, member as it was before) from a change record.

    ``changes`` maps member attribute names (``tier``, ``custom_fields.vip``) to ``[old, new]``;
    the recorded new values win over the member's current ones, so a run judges the change it
    was triggered by even if the member changed again since.
    """
    after, before = dict(member), dict(member)
    after_custom, before_custom = dict(member.get("custom_fields") or {}), dict(member.get("custom_fields") or {})
    for name, (old, new) in changes.items():
        if name.startswith(CUSTOM_PREFIX):
            key = name[len(CUSTOM_PREFIX):]
            _set_or_drop(after_custom, key, new)
            _set_or_drop(before_custom, key, old)
        else:
            after[name], before[name] = new, old
    after["custom_fields"], before["custom_fields"] = after_custom, before_custom
    return after, before


def _set_or_drop(values: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        values.pop(key, None)
    else:
        values[key] = value

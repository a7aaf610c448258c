"""Member profiles: creating and updating members, their profile and custom fields, and importing them.

What may be written is the attribute registry's (``loyaltysync.attributes``): profile attributes
are checked by their entry's ``clean``; computed ones are refused by name.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from ..attributes import BY_NAME, CUSTOM_FIELDS, CUSTOM_PREFIX, PROFILE_FIELDS
from ..errors import InvalidData, LoyaltyError, MemberAlreadyExists
from ..fieldtypes import TypeProblem, coerce, json_same, json_type
from ..member_checks import member_checks_run
from ..models import CustomField, EventSource, FieldType, Member, MemberStatus
from ..transient import retry_transient
from .erasure import erased_id_check
from .ledger import _standing_refresh
from .recording import _announce, _Context, _event_create, _member_insert, _member_save
from .validation import (
    _INT64,
    _check_json,
    _Errors,
    _json_type,
    _member_id_check,
    _source_check,
    _string_problem,
    member_field_problem,
    path_key,
)


def custom_fields_validate(*, values: Any) -> dict[str, Any]:
    """Check ``values`` against the ``CustomField`` definitions; return them converted for storage.

    ``None`` as a value means "clear this field". Raises ``InvalidData`` naming ``custom_fields.<key>``.
    """
    errors = _Errors()
    if not isinstance(values, dict):
        errors.add("custom_fields", f"must be an object, not {_json_type(values)}.")
        errors.raise_if_any()
    # Only keys that can be definitions are looked up (PostgreSQL refuses NUL characters in a query).
    lookup = [key for key in values if isinstance(key, str) and len(key) <= 63 and not _string_problem(key)]
    definitions = {definition.key: definition for definition in CustomField.objects.filter(key__in=lookup)}
    cleaned: dict[str, Any] = {}
    for key, value in values.items():
        path = f"custom_fields.{key}"
        definition = definitions.get(key)
        if definition is None:
            errors.add(f"custom_fields.{path_key(key)}", "is not a defined custom field.", "unknown_field")
            continue
        before = len(errors.items)
        _check_json(value, path, errors)
        if len(errors.items) != before:
            continue
        try:
            converted = coerce(definition.type, value)
        except ValidationError as error:
            for problem in error.error_list:
                errors.add(path, " ".join(problem.messages), problem.code or "invalid")
            continue
        except (ValueError, TypeError, OverflowError):
            errors.add(path, f"is not a valid {definition.get_type_display().lower()} value.")
            continue
        if definition.type == FieldType.INTEGER and converted is not None and not -_INT64 <= converted < _INT64:
            errors.add(path, "is out of range (integers must fit in 64 bits).")
            continue
        cleaned[key] = converted
    errors.raise_if_any()
    return cleaned


def _profile_value(name: str, value: Any, errors: _Errors) -> Any:
    """Check one profile value with its attribute's rule; returns the value to set (``errors`` names problems)."""
    try:
        return BY_NAME[name].clean(value)
    except TypeProblem as problem:
        errors.add(name, problem.message)
        return None


def _profile_apply(
    member: Member, *, profile: dict[str, Any], custom_fields: Any, at: dt.datetime, creating: bool = False
) -> dict[str, Any]:
    """Validate and set profile and custom field values on ``member`` (not saved).

    Returns the values that changed (JSON-friendly). Raises ``InvalidData`` naming each bad field.
    """
    errors = _Errors()
    values: dict[str, Any] = {}
    for name, value in profile.items():
        if name == CUSTOM_FIELDS:
            errors.add(name, "is given twice.")
        elif problem := member_field_problem(name):
            errors.add(*problem)
        else:
            before = len(errors.items)
            converted = _profile_value(name, value, errors)
            if len(errors.items) == before:
                values[name] = converted
    custom: dict[str, Any] = {}
    if custom_fields:
        try:
            custom = custom_fields_validate(values=custom_fields)
        except InvalidData as error:
            for path, problems in error.errors.items():
                for problem, code in zip(problems, error.error_codes[path], strict=True):
                    errors.add(path, problem, code)
    elif custom_fields is not None and not isinstance(custom_fields, dict):
        errors.add("custom_fields", f"must be an object, not {_json_type(custom_fields)}.")
    errors.raise_if_any()

    changes: dict[str, Any] = {}
    old_status = member.status
    for name, value in values.items():
        if getattr(member, name) != value:
            setattr(member, name, value)
            changes[name] = value.isoformat() if isinstance(value, dt.date) else value
    if custom:
        merged = dict(member.custom_fields or {})  # a new dict: changed_fields() compares with the loaded one
        changed_custom = {}
        for key, value in custom.items():
            if value is None:
                if key in merged:
                    del merged[key]
                    changed_custom[key] = None
            elif key not in merged or not json_same(merged[key], value):
                merged[key] = value
                changed_custom[key] = value
        if changed_custom:
            member.custom_fields = merged
            changes["custom_fields"] = changed_custom
    if member.status != old_status or (creating and "status" in values):
        if member.status == MemberStatus.ACTIVE:
            member.opted_in_at = at
        elif member.status == MemberStatus.OPTED_OUT:
            member.opted_out_at = at

    touched = set(values) | ({"custom_fields"} if custom else set()) | ({"member_id"} if creating else set())
    try:
        # Not validate_unique: a check before the insert races with other requests (answering 400 where the
        # insert's unique index answers MemberAlreadyExists); the insert alone decides (``_member_insert``).
        member.full_clean(
            exclude=[f.name for f in Member._meta.fields if f.name not in touched],
            validate_unique=False,
            validate_constraints=False,
        )
    except ValidationError as error:
        raise InvalidData(
            {("body" if key == "__all__" else key): messages for key, messages in error.message_dict.items()}
        ) from None
    return changes


def member_profile_check(
    *, member: Member | None, member_id: str | None = None, profile: dict[str, Any], custom_fields: Any = None
) -> None:
    """Raise ``InvalidData`` if ``member_update`` (or ``member_create`` when ``member`` is None) would refuse
    these values; writes nothing. Forms (the admin) call it to show errors next to the fields."""
    if member is None:
        _member_id_check(member_id, "member_id")
        candidate = Member(member_id=member_id)
    else:
        candidate = Member.objects.get(pk=member.pk)
    _profile_apply(
        candidate, profile=profile, custom_fields=custom_fields, at=timezone.now(), creating=member is None
    )
    member_checks_run(candidate, None if member is None else candidate.changed_fields())


@retry_transient
def member_create(
    *, member_id: str, source: str, custom_fields: dict[str, Any] | None = None, **profile: Any
) -> Member:
    """Create a member from profile fields and custom field values.

    An active new member is an enrolment: an ``opt_in`` event is recorded (so workflows and
    Braze hear of it) and the member gets the entry tier (without a ``tier_reached``). Raises
    ``MemberAlreadyExists``, ``MemberErased`` (the id was erased) or ``InvalidData`` (paths
    ``member_id``, ``email``, ``custom_fields.<key>``, ...).
    """
    _source_check(source)
    _member_id_check(member_id, "member_id")
    erased_id_check(member_id, "member_id")
    now = timezone.now()
    with transaction.atomic():
        if Member.objects.filter(member_id=member_id).exists():
            raise MemberAlreadyExists(f"A member with id {member_id!r} exists already.", field="member_id")
        member = Member(member_id=member_id)
        changes = _profile_apply(member, profile=profile, custom_fields=custom_fields, at=now, creating=True)
        if member.status == MemberStatus.ACTIVE:
            member.opted_in_at = now
        _member_insert(member)
        context = _Context(member=member, occurred_at=now, source=source)
        if member.status == MemberStatus.ACTIVE:
            _event_create(context, "opt_in", changes)
        _standing_refresh(context, joining=True)
        _member_save(member)
        _announce(context.events)
    return member


@retry_transient
def member_update(
    *,
    member: Member,
    profile: dict[str, Any] | None = None,
    custom_fields: dict[str, Any] | None = None,
    source: str,
) -> Member:
    """Change profile fields and custom field values; returns the member as saved.

    Custom fields are merged: keys not given keep their value, ``None`` clears one. Computed
    fields cannot be written (``InvalidData`` naming the field). When something changed, the
    member is saved and a ``profile`` event with the changed values is recorded; otherwise nothing
    is written.
    """
    _source_check(source)
    now = timezone.now()
    with transaction.atomic():
        member = Member.objects.select_for_update(no_key=True).get(pk=member.pk)
        changes = _profile_apply(member, profile=profile or {}, custom_fields=custom_fields, at=now)
        if changes:
            _member_save(member)
            context = _Context(member=member, occurred_at=now, source=source)
            _event_create(context, "profile", changes)
            _announce(context.events)
    return member


# --- Imports -------------------------------------------------------------------------------------------

IMPORT_CUSTOM_PREFIX = "custom."  # how an import names a custom field's column: custom.<key>
_STRUCTURED_TYPES = {FieldType.ARRAY, FieldType.OBJECT, FieldType.ARRAY_OF_OBJECTS}


class ImportOutcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


def _import_split(
    row: Mapping[str, Any], custom_types: Mapping[str, str]
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(member id, profile values, custom values) of an import row."""
    row = dict(row)
    member_id = row.pop("member_id", None)
    if member_id is not None and not isinstance(member_id, str):
        # JSON lines can hold a number here; saying "missing" would send people looking for the wrong problem.
        raise LoyaltyError(f"must be a string (text), not {json_type(member_id)}.", field="member_id")
    if not member_id or not member_id.strip():
        raise LoyaltyError("is missing or empty.", field="member_id")
    custom = row.pop(CUSTOM_FIELDS, None) or {}
    if not isinstance(custom, dict):
        raise LoyaltyError("must be an object.", field=CUSTOM_FIELDS)
    custom = dict(custom)
    for key in [k for k in row if k.startswith(IMPORT_CUSTOM_PREFIX)]:
        custom[key[len(IMPORT_CUSTOM_PREFIX) :]] = row.pop(key)
    for key, value in custom.items():
        # A CSV cell holds arrays and objects as JSON text.
        if custom_types.get(key) in _STRUCTURED_TYPES and isinstance(value, str):
            try:
                custom[key] = json.loads(value)
            except json.JSONDecodeError as err:
                raise LoyaltyError(f"is not valid JSON ({err.msg}).", field=f"{CUSTOM_PREFIX}{key}") from None
    unknown = sorted(set(row) - set(PROFILE_FIELDS))
    if unknown:
        raise LoyaltyError(
            f"unknown column(s) {', '.join(unknown)} (profile fields, custom.<key> or member_id).",
            field=unknown[0],
        )
    return member_id.strip(), row, custom


def member_import_row(
    *, row: Mapping[str, Any], custom_types: Mapping[str, str], source: str = EventSource.IMPORT
) -> ImportOutcome:
    """Create or update one member from an import row; returns what happened.

    ``row`` has ``member_id``, profile attributes, and custom field values as ``custom.<key>`` keys
    or in a ``custom_fields`` object (arrays and objects may be JSON text, as a CSV cell holds them).
    ``custom_types`` maps each custom field key to its type (read once per import). Raises
    ``LoyaltyError`` naming the column or field.
    """
    member_id, profile, custom = _import_split(row, custom_types)
    member = Member.objects.filter(member_id=member_id).first()
    if member is None:
        member_create(member_id=member_id, source=source, custom_fields=custom or None, **profile)
        return ImportOutcome.CREATED
    before = member.updated_at
    saved = member_update(member=member, profile=profile, custom_fields=custom or None, source=source)
    return ImportOutcome.UPDATED if saved.updated_at != before else ImportOutcome.UNCHANGED

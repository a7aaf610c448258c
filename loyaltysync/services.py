"""Services of the loyalty domain: the one way its state changes.

The REST API, the admin, the commands and the tasks parse their input and call one of these.
Every service is keyword-only, runs in one ``transaction.atomic()``, saves members with
``.save()`` (listeners rely on ``post_save`` and ``Member.changed_fields()``) and sends
``loyalty_event_recorded`` for every event it records, after the member's state is updated and
inside the transaction (listeners defer their own work with ``on_commit``).

Field paths in errors: profile and custom fields are named as in a member's body (``email``,
``custom_fields.shoe_size``); an event's problems are named as in the event (``customer``,
``action``, ``data.total``, ``data.items[0].price``).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from .errors import (
    DuplicateTransaction,
    InsufficientPoints,
    InvalidData,
    InvalidEventData,
    LoyaltyError,
    MemberAlreadyExists,
    MemberNotFound,
)
from .models import (
    CustomField,
    EventSource,
    FieldType,
    Gender,
    LedgerKind,
    LoyaltyEvent,
    Member,
    MemberStatus,
    PointsTransaction,
    Tier,
    coerce_value,
)
from .signals import loyalty_event_recorded

# --- What can be written --------------------------------------------------------------------------

PROFILE_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "birth_date",
    "gender",
    "language",
    "country",
    "status",
)
# Kept by the engine (ledger, checkouts, tiers) or by the database; never written from outside.
COMPUTED_FIELDS = (
    "points_earned",
    "points_spent",
    "points_pending",
    "points_expired",
    "points_spendable",
    "purchase_count",
    "purchase_total",
    "last_purchase_at",
    "last_purchase",
    "tier",
    "tier_since",
    "opted_in_at",
    "opted_out_at",
    "created_at",
    "updated_at",
)
ACTION_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Actions only the engine records; a client sending them would fake tier changes or balances.
ENGINE_ACTIONS = frozenset({"tier_reached", "tier_lost", "points_spendable", "points_expired"})
REFUND_ACTIONS = ("refund", "partial_refund")

MAX_MONEY = Decimal("1000000000")  # one checkout's total; purchase_total holds 12 digits before the point
MAX_PURCHASE_TOTAL = Decimal("999999999999.99")
MAX_POINTS_PER_EVENT = 100_000_000
# Balances are 32-bit integer columns on PostgreSQL; stay well inside them.
MAX_POINTS_BALANCE = 2_000_000_000
MAX_ITEMS = 500
MAX_JSON_DEPTH = 20
MAX_REPORTED_ERRORS = 50
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
EARLIEST_EFFECTIVE = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_INT64 = 2**63
_CREDIT_KINDS = (LedgerKind.EARN, LedgerKind.ADJUST)
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
# Stricter than the model's validator: control characters would be invisible in the admin and in Braze.
_MEMBER_ID = re.compile(r"^[^\s\x00-\x1f\x7f]{1,255}$")


def _loyalty_setting(name: str) -> Any:
    # Read on every call so tests (and the settings fixture) can change them.
    return settings.LOYALTY[name]


# --- Input checks (pure) --------------------------------------------------------------------------


class _Errors:
    """Collects every problem of one input, so one answer names all of them."""

    def __init__(self) -> None:
        self.items: dict[str, list[str]] = {}

    def add(self, path: str, message: str) -> None:
        if len(self.items) < MAX_REPORTED_ERRORS or path in self.items:
            self.items.setdefault(path, []).append(message)

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, error_class: type[InvalidData] = InvalidData) -> None:
        if self.items:
            raise error_class(self.items)


def _check_json(value: Any, path: str, errors: _Errors, depth: int = 0) -> None:
    """Refuse what JSON parsers let through but databases and Braze do not."""
    if depth > MAX_JSON_DEPTH:
        errors.add(path, f"is nested too deeply (at most {MAX_JSON_DEPTH} levels).")
        return
    if isinstance(value, str):
        problem = _string_problem(value)
        if problem:
            errors.add(path, problem)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if abs(value) >= _INT64:
            errors.add(path, "is out of range (integers must fit in 64 bits).")
    elif isinstance(value, float):
        if not math.isfinite(value):
            errors.add(path, "must be a finite number.")
    elif isinstance(value, dict):
        for key, item in value.items():
            key_problem = _string_problem(key) if isinstance(key, str) else "must be a string."
            if key_problem:
                errors.add(f"{path}.{path_key(key)}", f"key {key_problem}")
                continue
            _check_json(item, f"{path}.{key}" if path else key, errors, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, f"{path}[{index}]", errors, depth + 1)


def path_key(key: Any) -> str:
    """A client's key as it can appear in an error path: printable, valid UTF-8, at most 64 characters."""
    text = str(key)[:64]
    if _string_problem(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return text


def _string_problem(value: str) -> str | None:
    if "\x00" in value:
        return "must not contain NUL characters."
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains invalid Unicode (an unpaired surrogate)."
    return None


def _string(
    value: Any, path: str, errors: _Errors, *, required: bool = False, max_length: int = 255
) -> str | None:
    if value is None or value == "":
        if required:
            errors.add(path, "is required.")
        return None
    if not isinstance(value, str):
        errors.add(path, f"must be a string, not {_json_type(value)}.")
        return None
    problem = _string_problem(value)
    if problem:
        errors.add(path, problem)
        return None
    if len(value) > max_length:
        errors.add(path, f"must be at most {max_length} characters (got {len(value)}).")
        return None
    return value


def _money(
    value: Any, path: str, errors: _Errors, *, required: bool = False, allow_zero: bool = False
) -> Decimal | None:
    """A JSON number (or a numeric string) as Decimal rounded to cents."""
    if value is None:
        if required:
            errors.add(path, "is required.")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        errors.add(path, f"must be a number, not {_json_type(value)}.")
        return None
    try:
        if isinstance(value, int) and abs(value) >= _INT64:
            raise InvalidOperation
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        errors.add(path, "must be a number.")
        return None
    if not number.is_finite():
        errors.add(path, "must be a finite number.")
        return None
    if number > MAX_MONEY or number < -MAX_MONEY:
        errors.add(path, f"must be at most {MAX_MONEY}.")
        return None
    number = number.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if number < 0 or (number == 0 and not allow_zero):
        errors.add(
            path, "must be a positive number (at least 0.01)." if not allow_zero else "must not be negative."
        )
        return None
    return number


def _positive_int(
    value: Any, path: str, errors: _Errors, *, required: bool = False, maximum: int = MAX_POINTS_PER_EVENT
) -> int | None:
    if value is None:
        if required:
            errors.add(path, "is required.")
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < _INT64:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        errors.add(path, f"must be a positive integer, not {_json_type(value)}.")
        return None
    if value < 1:
        errors.add(path, "must be a positive integer (at least 1).")
        return None
    if value > maximum:
        errors.add(path, f"must be at most {maximum}.")
        return None
    return value


def _json_type(value: Any) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float() | Decimal():
            return "a number"
        case str():
            return "a string"
        case list():
            return "a list"
        case dict():
            return "an object"
    return type(value).__name__


def _money_json(value: Decimal) -> int | float:
    """Money as a JSON number (events and last_purchase are read by workflows and Braze)."""
    return int(value) if value == value.to_integral_value() else float(value)


def _decimal_from_json(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _parse_moment(value: Any, path: str, errors: _Errors) -> dt.datetime | None:
    if not isinstance(value, str):
        errors.add(path, f"must be an ISO 8601 date and time string, not {_json_type(value)}.")
        return None
    try:
        moment = parse_datetime(value.strip())
        if moment is not None:
            if timezone.is_naive(moment):
                moment = timezone.make_aware(moment, dt.UTC)
            moment = moment.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        moment = None
    if moment is None:
        errors.add(path, "must be an ISO 8601 date and time, e.g. 2026-11-25T10:00:00Z.")
        return None
    if moment > timezone.now() + FUTURE_TOLERANCE:
        errors.add(path, "must not be in the future.")
        return None
    if moment < EARLIEST_EFFECTIVE:
        errors.add(path, "must not be before 1970.")
        return None
    return moment


# --- Profile and custom fields ---------------------------------------------------------------------


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
            errors.add(f"custom_fields.{path_key(key)}", "is not a defined custom field.")
            continue
        before = len(errors.items)
        _check_json(value, path, errors)
        if len(errors.items) != before:
            continue
        try:
            converted = coerce_value(definition.type, value)
        except ValidationError as error:
            errors.add(path, " ".join(error.messages))
            continue
        except (ValueError, TypeError, OverflowError):
            errors.add(path, f"is not a valid {definition.get_type_display().lower()} value.")
            continue
        if definition.type == FieldType.INTEGER and converted is not None and abs(converted) >= _INT64:
            errors.add(path, "is out of range (integers must fit in 64 bits).")
            continue
        cleaned[key] = converted
    errors.raise_if_any()
    return cleaned


def _profile_value(name: str, value: Any, errors: _Errors) -> Any:
    """Type-check one profile value; returns the value to set (``errors`` names problems)."""
    if name == "birth_date":
        if value is None or value == "":
            return None
        if isinstance(value, dt.datetime):
            errors.add(name, "must be a date (YYYY-MM-DD), not a date and time.")
            return None
        if isinstance(value, dt.date):
            parsed = value
        elif isinstance(value, str):
            try:
                parsed = parse_date(value.strip())
            except ValueError:
                parsed = None
            if parsed is None:
                errors.add(name, "must be a date as YYYY-MM-DD.")
                return None
        else:
            errors.add(name, f"must be a date as YYYY-MM-DD, not {_json_type(value)}.")
            return None
        if parsed > timezone.localdate() or parsed.year < 1900:
            errors.add(name, "must be a date between 1900-01-01 and today.")
            return None
        return parsed
    if value is None:
        if name == "status":
            errors.add(name, "must be one of: " + ", ".join(MemberStatus.values) + ".")
        return ""
    text = _string(value, name, errors, max_length=255)
    if text is None:
        return "" if isinstance(value, str) and value == "" else None
    text = text.strip()
    if name == "country":
        text = text.upper()
        if text and not _COUNTRY.match(text):
            errors.add(name, "must be an ISO 3166-1 alpha-2 country code, e.g. DE.")
        return text
    if name == "language":
        if text and not _LANGUAGE.match(text):
            errors.add(name, "must be an ISO 639-1 language code, e.g. en or en-GB.")
        return text
    if name == "gender" and text not in Gender.values:
        errors.add(name, "must be one of: female, male, other, or empty.")
    if name == "status" and text not in MemberStatus.values:
        errors.add(name, "must be one of: " + ", ".join(MemberStatus.values) + ".")
    return text


def _profile_apply(
    member: Member, *, profile: dict[str, Any], custom_fields: Any, at: dt.datetime, creating: bool = False
) -> dict[str, Any]:
    """Validate and set profile and custom field values on ``member`` (not saved).

    Returns the values that changed (JSON-friendly). Raises ``InvalidData`` naming each bad field.
    """
    errors = _Errors()
    values: dict[str, Any] = {}
    for name, value in profile.items():
        if name == "custom_fields":
            errors.add(name, "is given twice.")
        elif name in COMPUTED_FIELDS:
            errors.add(name, "is computed by the loyalty engine and cannot be written.")
        elif name in ("member_id", "id"):
            errors.add(name, "cannot be changed.")
        elif name not in PROFILE_FIELDS:
            errors.add(path_key(name), "is not a known member field.")
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
                for problem in problems:
                    errors.add(path, problem)
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
            elif merged.get(key) != value:
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
        member.full_clean(
            exclude=[f.name for f in Member._meta.fields if f.name not in touched],
            validate_unique=creating,
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


def _member_id_check(member_id: Any, path: str) -> str:
    if not isinstance(member_id, str) or not _MEMBER_ID.match(member_id) or _string_problem(member_id):
        raise InvalidData({path: "must be 1-255 characters without spaces or control characters."})
    return member_id


def _source_check(source: str) -> str:
    if source not in EventSource.values:
        raise ValueError(f"Unknown event source {source!r}; use one of {EventSource.values}.")
    return source


def member_create(
    *, member_id: str, source: str, custom_fields: dict[str, Any] | None = None, **profile: Any
) -> Member:
    """Create a member from profile fields and custom field values.

    An active new member is an enrolment: an ``opt_in`` event is recorded (so workflows and
    Braze hear of it) and the member gets the entry tier. Raises ``MemberAlreadyExists`` or
    ``InvalidData`` (paths ``member_id``, ``email``, ``custom_fields.<key>``, ...).
    """
    _source_check(source)
    _member_id_check(member_id, "member_id")
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
        _standing_refresh(context)
        _member_save(member)
        _announce(context.events)
    return member


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
        member = Member.objects.select_for_update().get(pk=member.pk)
        changes = _profile_apply(member, profile=profile or {}, custom_fields=custom_fields, at=now)
        if changes:
            _member_save(member)
            context = _Context(member=member, occurred_at=now, source=source)
            _event_create(context, "profile", changes)
            _announce(context.events)
    return member


def _member_insert(member: Member) -> None:
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
        member.save()


# --- Events --------------------------------------------------------------------------------------


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


def event_record(
    *,
    member_id: str,
    action: str,
    data: dict[str, Any],
    source: str,
    occurred_at: dt.datetime | None = None,
) -> tuple[Member, LoyaltyEvent]:
    """Record one loyalty event for a member and apply its effect; returns (member, event).

    The member must exist (``MemberNotFound``) unless the action is ``opt_in``, which creates it.
    ``data.effective_timestamp`` (ISO 8601, not in the future) back-dates the event, unless
    ``occurred_at`` is given. Actions with an effect: ``opt_in``, ``opt_out``, ``profile``,
    ``checkout``, ``refund``, ``partial_refund``, ``point_add``, ``point_spend`` (or ``point_sub``);
    any other action matching ``^[a-z][a-z0-9_]{0,63}$`` is recorded as is. Problems raise
    ``InvalidEventData`` (paths ``customer``, ``action``, ``data.<...>``), ``DuplicateTransaction``
    or ``InsufficientPoints``; nothing is written then.
    """
    _source_check(source)
    errors = _Errors()
    if not isinstance(member_id, str) or not _MEMBER_ID.match(member_id) or _string_problem(member_id):
        errors.add("customer", "must be a member id: 1-255 characters without spaces or control characters.")
    if not isinstance(action, str) or not ACTION_PATTERN.match(action):
        errors.add(
            "action", "must be 1-64 lower-case letters, digits or underscores, starting with a letter."
        )
    elif action in ENGINE_ACTIONS and source != EventSource.ENGINE:
        errors.add("action", "is recorded by the loyalty engine only.")
    if not isinstance(data, dict):
        errors.add("data", f"must be an object, not {_json_type(data)}.")
    else:
        _check_json(data, "data", errors)
    errors.raise_if_any(InvalidEventData)

    data = dict(data)
    effective = data.pop("effective_timestamp", None)
    if occurred_at is None:
        occurred_at = (
            timezone.now()
            if effective is None
            else _parse_moment(effective, "data.effective_timestamp", errors)
        )
    errors.raise_if_any(InvalidEventData)

    handler = _HANDLERS.get(action, _record_as_is)
    with transaction.atomic():
        member = Member.objects.select_for_update().filter(member_id=member_id).first()
        if member is None:
            if action != "opt_in":
                raise MemberNotFound(f"No member with id {member_id!r}.", field="customer")
            member = Member(member_id=member_id)
        context = _Context(member=member, occurred_at=occurred_at, source=source, action=action)
        event = handler(context, data)
        _member_save(member)
        _announce(context.events)
    return member, event


def _profile_from_data(context: _Context, data: dict[str, Any], *, creating: bool = False) -> dict[str, Any]:
    profile = {key: value for key, value in data.items() if key != "custom_fields"}
    try:
        return _profile_apply(
            context.member,
            profile=profile,
            custom_fields=data.get("custom_fields"),
            at=context.occurred_at,
            creating=creating,
        )
    except InvalidData as error:
        raise error.under("data.") from None


def _opt_in(context: _Context, data: dict[str, Any]) -> LoyaltyEvent:
    """Enrol (or re-activate) the member; ``data`` may carry profile fields and ``custom_fields``."""
    if "status" in data:
        raise InvalidEventData({"data.status": "is set by the action (opt_in makes the member active)."})
    member = context.member
    creating = member.pk is None
    _profile_from_data(context, data, creating=creating)
    if creating or member.status != MemberStatus.ACTIVE:
        member.status = MemberStatus.ACTIVE
        member.opted_in_at = context.occurred_at
    if creating:
        _member_insert(member)
    event = _event_create(context, "opt_in", data)
    if creating:
        _standing_refresh(context)
    return event


def _opt_out(context: _Context, data: dict[str, Any]) -> LoyaltyEvent:
    member = context.member
    if member.status != MemberStatus.OPTED_OUT:
        member.status = MemberStatus.OPTED_OUT
        member.opted_out_at = context.occurred_at
    return _event_create(context, "opt_out", data)


def _profile(context: _Context, data: dict[str, Any]) -> LoyaltyEvent:
    """Profile fields at the top of ``data``; custom field values in ``data.custom_fields``."""
    _profile_from_data(context, data)
    return _event_create(context, "profile", data)


def _items_clean(value: Any, errors: _Errors) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        errors.add("data.items", f"must be a list of objects, not {_json_type(value)}.")
        return []
    if len(value) > MAX_ITEMS:
        errors.add("data.items", f"must have at most {MAX_ITEMS} items (got {len(value)}).")
        return []
    items = []
    for index, item in enumerate(value):
        path = f"data.items[{index}]"
        if not isinstance(item, dict):
            errors.add(path, f"must be an object, not {_json_type(item)}.")
            continue
        product_id = item.get("product_id")
        if isinstance(product_id, int) and not isinstance(product_id, bool):
            product_id = str(product_id)
        cleaned = dict(item)
        cleaned["product_id"] = _string(
            product_id, f"{path}.product_id", errors, required=True, max_length=128
        )
        cleaned["product_name"] = _string(
            item.get("product_name"), f"{path}.product_name", errors, required=True
        )
        price = _money(item.get("price"), f"{path}.price", errors, required=True, allow_zero=True)
        quantity = _positive_int(
            item.get("quantity"), f"{path}.quantity", errors, required=True, maximum=1_000_000
        )
        cleaned["quantity"] = quantity
        for name, amount in (
            ("price", price),
            ("discount", _money(item.get("discount"), f"{path}.discount", errors, allow_zero=True)),
            ("subtotal", _money(item.get("subtotal"), f"{path}.subtotal", errors, allow_zero=True)),
        ):
            if amount is not None:
                cleaned[name] = _money_json(amount)
        items.append(cleaned)
    return items


def _checkout(context: _Context, data: dict[str, Any]) -> LoyaltyEvent:
    """A purchase: earns points by total and tier, counts towards purchase totals, may burn points."""
    errors = _Errors()
    transaction_id = _string(
        data.get("transaction_id"), "data.transaction_id", errors, required=True, max_length=128
    )
    total = _money(data.get("total"), "data.total", errors, required=True)
    currency = data.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.match(currency.upper()):
        errors.add("data.currency", "must be a 3-letter ISO 4217 currency code, e.g. EUR.")
    items = _items_clean(data.get("items"), errors)
    raw_burned = data.get("points_burned")
    no_burn = raw_burned is None or (raw_burned == 0 and not isinstance(raw_burned, bool))
    burned = 0 if no_burn else (_positive_int(raw_burned, "data.points_burned", errors) or 0)
    errors.raise_if_any(InvalidEventData)

    member = context.member
    if LoyaltyEvent.objects.filter(action="checkout", transaction_id=transaction_id).exists():
        raise _duplicate(transaction_id)
    if member.purchase_total + total > MAX_PURCHASE_TOTAL:
        raise InvalidEventData({"data.total": "would take the member's purchase total beyond its maximum."})
    multiplier = member.tier.multiplier if member.tier_id else Decimal(1)
    rate = Decimal(str(_loyalty_setting("POINTS_PER_CURRENCY_UNIT")))
    points = math.floor(total * rate * multiplier)
    if member.points_earned + points > MAX_POINTS_BALANCE:
        raise InvalidEventData({"data.total": f"would take the member's points beyond {MAX_POINTS_BALANCE}."})
    if burned and burned > member.points_spendable:
        raise _insufficient(burned, member.points_spendable, "data.points_burned")

    event_data = {
        **data,
        "transaction_id": transaction_id,
        "total": _money_json(total),
        "currency": currency.upper(),
        "items": items,
        "points_earned": points,
    }
    if burned:
        event_data["points_burned"] = burned
    event = _event_create(context, "checkout", event_data, transaction_id=transaction_id)
    if burned:
        _points_spend(context, burned, event, note=f"Burned at checkout {transaction_id}")
    if points:
        _points_credit(
            context,
            points,
            event,
            kind=LedgerKind.EARN,
            pending_days=_loyalty_setting("PENDING_DAYS"),
            note=f"Checkout {transaction_id}",
        )
    member.purchase_count += 1
    member.purchase_total += total
    if member.last_purchase_at is None or context.occurred_at >= member.last_purchase_at:
        member.last_purchase_at = context.occurred_at
        member.last_purchase = {
            "transaction_id": transaction_id,
            "total": event_data["total"],
            "currency": event_data["currency"],
            "items": items,
            "points_earned": points,
        }
    _standing_refresh(context)
    return event


def _refund(context: _Context, data: dict[str, Any]) -> LoyaltyEvent:
    """Take back (part of) an earlier checkout: its points in proportion, and its amount from purchase_total.

    Points the member has spent meanwhile are taken from other earnings; what cannot be taken
    back at all is reported in the event (``points_not_recovered``) rather than making balances negative.
    """
    errors = _Errors()
    transaction_id = _string(
        data.get("transaction_id"), "data.transaction_id", errors, required=True, max_length=128
    )
    amount = _money(data.get("amount"), "data.amount", errors)
    errors.raise_if_any(InvalidEventData)

    member = context.member
    checkout = member.events.filter(action="checkout", transaction_id=transaction_id).first()
    if checkout is None:
        # The same answer whether the id is unknown or another member's: nothing leaks.
        raise InvalidEventData({"data.transaction_id": "is not a checkout of this member."})
    checkout_total = _decimal_from_json(checkout.data.get("total", 0))
    refunded_before = sum(
        (
            _decimal_from_json(previous.data.get("amount", 0))
            for previous in member.events.filter(action__in=REFUND_ACTIONS, transaction_id=transaction_id)
        ),
        Decimal(0),
    )
    refundable = checkout_total - refunded_before
    if refundable <= 0:
        raise InvalidEventData({"data.transaction_id": "this checkout has been refunded in full already."})
    if amount is None:
        amount = refundable
    elif amount > refundable:
        raise InvalidEventData(
            {
                "data.amount": f"must be at most {refundable} (what remains of the checkout's {checkout_total})."
            }
        )
    # Cumulative rounding, so that refunding a checkout in parts takes back exactly what it earned.
    checkout_points = int(checkout.data.get("points_earned", 0) or 0)
    due = math.floor(checkout_points * (refunded_before + amount) / checkout_total) - math.floor(
        checkout_points * refunded_before / checkout_total
    )
    event_data = {**data, "transaction_id": transaction_id, "amount": _money_json(amount), "points_due": due}
    taken = _points_recoverable(member, due)
    event_data["points_refunded"] = taken
    if taken < due:
        event_data["points_not_recovered"] = due - taken
    event = _event_create(context, context.action, event_data, transaction_id=transaction_id)
    if taken:
        first = member.ledger.filter(event=checkout, kind=LedgerKind.EARN).first()
        _points_take_back(context, taken, event, first=first, note=f"Refund of {transaction_id}")
    member.purchase_total = max(Decimal(0), member.purchase_total - amount)
    _standing_refresh(context)
    return event


def _point_add(context: _Context, data: dict[str, Any]) -> LoyaltyEvent:
    errors = _Errors()
    points = _positive_int(data.get("points"), "data.points", errors, required=True)
    reason = _string(data.get("reason"), "data.reason", errors)
    errors.raise_if_any(InvalidEventData)
    if context.member.points_earned + points > MAX_POINTS_BALANCE:
        raise InvalidEventData(
            {"data.points": f"would take the member's points beyond {MAX_POINTS_BALANCE}."}
        )
    event = _event_create(context, "point_add", {**data, "points": points})
    _points_credit(
        context, points, event, kind=LedgerKind.ADJUST, pending_days=0, note=reason or "Points added"
    )
    _standing_refresh(context)
    return event


def _point_spend(context: _Context, data: dict[str, Any]) -> LoyaltyEvent:
    errors = _Errors()
    points = _positive_int(data.get("points"), "data.points", errors, required=True)
    reason = _string(data.get("reason"), "data.reason", errors)
    errors.raise_if_any(InvalidEventData)
    spendable = context.member.points_spendable
    if points > spendable:
        raise _insufficient(points, spendable, "data.points")
    event = _event_create(context, context.action, {**data, "points": points})
    _points_spend(context, points, event, note=reason or "Points spent")
    _standing_refresh(context)
    return event


def _insufficient(wanted: int, spendable: int, path: str) -> InsufficientPoints:
    return InsufficientPoints(
        f"Cannot spend {wanted} points: the member has {spendable} spendable points.", field=path
    )


def _record_as_is(context: _Context, data: dict[str, Any]) -> LoyaltyEvent:
    """A program-defined action: recorded for workflows and Braze, no change to the member."""
    return _event_create(context, context.action, data)


_HANDLERS = {
    "opt_in": _opt_in,
    "opt_out": _opt_out,
    "profile": _profile,
    "checkout": _checkout,
    "refund": _refund,
    "partial_refund": _refund,
    "point_add": _point_add,
    "point_spend": _point_spend,
    "point_sub": _point_spend,
}


# --- Points ledger and tiers -------------------------------------------------------------------------


def _open_credits(member: Member) -> QuerySet[PointsTransaction]:
    return member.ledger.filter(kind__in=_CREDIT_KINDS, points__gt=0, remaining__gt=0).order_by(
        "created_at", "id"
    )


def _points_credit(
    context: _Context, points: int, event: LoyaltyEvent | None, *, kind: str, pending_days: int, note: str
) -> PointsTransaction:
    """An earning: spendable after ``pending_days``, expiring after LOYALTY POINTS_EXPIRY_DAYS (0: never)."""
    start = context.occurred_at
    available_at = start + dt.timedelta(days=pending_days)
    expiry_days = _loyalty_setting("POINTS_EXPIRY_DAYS")
    return PointsTransaction.objects.create(
        member=context.member,
        kind=kind,
        points=points,
        remaining=points,
        event=event,
        note=note[:255],
        created_at=start,
        available_at=available_at,
        pending=available_at > timezone.now(),
        expires_at=start + dt.timedelta(days=expiry_days) if expiry_days else None,
    )


def _points_spend(context: _Context, points: int, event: LoyaltyEvent, *, note: str) -> None:
    """Consume spendable earnings, oldest first, and write one spend row."""
    left = points
    for credit in _open_credits(context.member).filter(pending=False).select_for_update():
        take = min(credit.remaining, left)
        credit.remaining -= take
        credit.save(update_fields=["remaining"])
        left -= take
        if not left:
            break
    if left:
        raise _insufficient(points, points - left, "data.points")
    PointsTransaction.objects.create(
        member=context.member,
        kind=LedgerKind.SPEND,
        points=-points,
        event=event,
        note=note[:255],
        created_at=context.occurred_at,
        available_at=context.occurred_at,
    )


def _points_recoverable(member: Member, due: int) -> int:
    if due <= 0:
        return 0
    open_points = _open_credits(member).aggregate(total=Sum("remaining"))["total"] or 0
    return min(due, open_points)


def _points_take_back(
    context: _Context, points: int, event: LoyaltyEvent, *, first: PointsTransaction | None, note: str
) -> None:
    """Take back earned points (refunds): from ``first`` (the checkout's earning), then oldest first."""
    credits = list(_open_credits(context.member).select_for_update())
    if first is not None:
        credits.sort(key=lambda credit: credit.pk != first.pk)  # stable: the rest stay oldest first
    left = points
    for credit in credits:
        take = min(credit.remaining, left)
        credit.remaining -= take
        credit.save(update_fields=["remaining"])
        left -= take
        if not left:
            break
    PointsTransaction.objects.create(
        member=context.member,
        kind=LedgerKind.REFUND,
        points=-(points - left),
        event=event,
        note=note[:255],
        created_at=context.occurred_at,
        available_at=context.occurred_at,
    )


def _balances_refresh(member: Member) -> None:
    credit = Q(kind__in=_CREDIT_KINDS, points__gt=0)
    totals = member.ledger.aggregate(
        sum_earned=Sum("points", filter=credit | Q(kind=LedgerKind.REFUND)),
        sum_spent=Sum("points", filter=Q(kind=LedgerKind.SPEND)),
        sum_expired=Sum("points", filter=Q(kind=LedgerKind.EXPIRE)),
        sum_pending=Sum("remaining", filter=credit & Q(pending=True)),
        sum_spendable=Sum("remaining", filter=credit & Q(pending=False)),
    )
    member.points_earned = totals["sum_earned"] or 0
    member.points_spent = -(totals["sum_spent"] or 0)
    member.points_expired = -(totals["sum_expired"] or 0)
    member.points_pending = totals["sum_pending"] or 0
    member.points_spendable = totals["sum_spendable"] or 0


def _standing_refresh(context: _Context) -> None:
    """Recompute balances from the ledger and the tier from lifetime points; record tier changes."""
    member = context.member
    _balances_refresh(member)
    new_tier = (
        Tier.objects.filter(points_threshold__lte=member.points_earned).order_by("-points_threshold").first()
    )
    floor = member.tier_floor_at(timezone.now())
    if floor is not None and (new_tier is None or new_tier.points_threshold < floor.points_threshold):
        new_tier = floor
    if (new_tier.pk if new_tier else None) == member.tier_id:
        return
    old_tier = member.tier if member.tier_id else None
    member.tier = new_tier
    member.tier_since = context.occurred_at
    upgrade = new_tier is not None and (
        old_tier is None or new_tier.points_threshold > old_tier.points_threshold
    )
    _event_create(
        context,
        "tier_reached" if upgrade else "tier_lost",
        {
            "tier": new_tier.name if new_tier else None,
            "previous_tier": old_tier.name if old_tier else None,
            "benefits": new_tier.benefits if new_tier else "",
        },
        source=EventSource.ENGINE,
    )


def member_points_refresh(*, member: Member, source: str = EventSource.ENGINE) -> Member:
    """Recompute a member's balances and tier from the ledger (repairs hand-edited data)."""
    _source_check(source)
    with transaction.atomic():
        member = Member.objects.select_for_update().get(pk=member.pk)
        context = _Context(member=member, occurred_at=timezone.now(), source=source)
        _standing_refresh(context)
        _member_save(member)
        _announce(context.events)
    return member


# --- Periodic jobs ------------------------------------------------------------------------------------


def points_release_pending(*, now: dt.datetime | None = None) -> int:
    """Make pending earnings spendable once their ``available_at`` has passed.

    Records one engine event ``points_spendable`` (data ``{"points", "points_spendable"}``) per
    member. Returns how many members had points released.
    """
    now = now or timezone.now()
    due = PointsTransaction.objects.filter(pending=True, available_at__lte=now)
    released = 0
    for member_pk in due.values_list("member_id", flat=True).distinct().order_by():
        with transaction.atomic():
            member = Member.objects.select_for_update().get(pk=member_pk)
            rows = member.ledger.filter(pending=True, available_at__lte=now)
            points = rows.aggregate(total=Sum("remaining"))["total"] or 0
            rows.update(pending=False)
            context = _Context(member=member, occurred_at=now, source=EventSource.ENGINE)
            _standing_refresh(context)
            if points:
                _event_create(
                    context,
                    "points_spendable",
                    {"points": points, "points_spendable": member.points_spendable},
                )
                released += 1
            _member_save(member)
            _announce(context.events)
    return released


def points_expire_due(*, now: dt.datetime | None = None) -> int:
    """Expire what remains of earnings past their ``expires_at``: ``expire`` ledger rows and balances.

    Records one engine event ``points_expired`` (data ``{"points"}``) per member; returns how many
    members lost points.
    """
    now = now or timezone.now()
    due = PointsTransaction.objects.filter(
        kind__in=_CREDIT_KINDS, remaining__gt=0, expires_at__isnull=False, expires_at__lte=now
    )
    expired = 0
    for member_pk in due.values_list("member_id", flat=True).distinct().order_by():
        with transaction.atomic():
            member = Member.objects.select_for_update().get(pk=member_pk)
            credits = list(due.filter(member=member).select_for_update().order_by("created_at", "id"))
            points = sum(credit.remaining for credit in credits)
            if not points:
                continue
            context = _Context(member=member, occurred_at=now, source=EventSource.ENGINE)
            event = _event_create(context, "points_expired", {"points": points})
            PointsTransaction.objects.bulk_create(
                PointsTransaction(
                    member=member,
                    kind=LedgerKind.EXPIRE,
                    points=-credit.remaining,
                    event=event,
                    note=f"Expired from #{credit.pk}",
                    created_at=now,
                    available_at=now,
                )
                for credit in credits
            )
            for credit in credits:
                credit.remaining = 0
            PointsTransaction.objects.bulk_update(credits, ["remaining"])
            _standing_refresh(context)
            _member_save(member)
            _announce(context.events)
            expired += 1
    return expired


SCHEDULES = (
    ("loyaltysync: release pending points", "loyaltysync.tasks.points_release_pending"),
    ("loyaltysync: expire points", "loyaltysync.tasks.points_expire_due"),
    ("loyaltysync: end tiers given by hand", "loyaltysync.tasks.tier_floors_expire"),
)


def schedules_ensure() -> None:
    """Create or update the hourly django-q2 schedules of the points jobs (safe to call repeatedly)."""
    from django_q.models import Schedule

    with transaction.atomic():
        for name, func in SCHEDULES:
            Schedule.objects.update_or_create(
                name=name,
                defaults={"func": func, "schedule_type": Schedule.HOURLY, "repeats": -1},
                create_defaults={
                    "func": func,
                    "schedule_type": Schedule.HOURLY,
                    "repeats": -1,
                    "next_run": timezone.now(),
                },
            )


__all__ = [
    "COMPUTED_FIELDS",
    "PROFILE_FIELDS",
    "LoyaltyError",
    "custom_fields_validate",
    "event_record",
    "member_create",
    "member_points_refresh",
    "member_profile_check",
    "member_update",
    "points_expire_due",
    "points_release_pending",
    "schedules_ensure",
]

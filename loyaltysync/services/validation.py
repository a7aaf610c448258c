"""Input checks of the loyalty services: pure functions that collect every problem of one input.

Owns the limits (money, points, items, JSON depth), the error collector ``_Errors`` and the checks
of strings, money, positive integers, moments, member ids and member field names that the other
service modules and the REST API's serializers use, so each rule exists once.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from ..attributes import BY_NAME
from ..errors import InvalidData
from ..fieldtypes import json_type as _json_type
from ..fieldtypes import string_problem as _string_problem
from ..models import MEMBER_ID_PATTERN, EventSource

ACTION_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")

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
# The model's rule (control characters would be invisible in the admin and in Braze).
_MEMBER_ID = re.compile(MEMBER_ID_PATTERN)


class _Errors:
    """Collects every problem of one input, so one answer names all of them."""

    def __init__(self) -> None:
        self.items: dict[str, list[str]] = {}
        self.codes: dict[str, list[str]] = {}

    def add(self, path: str, message: str, code: str = "invalid") -> None:
        """One problem of ``path``; ``code`` is what the API gives machines (``required``, ``min_value``...)."""
        if len(self.items) < MAX_REPORTED_ERRORS or path in self.items:
            self.items.setdefault(path, []).append(message)
            self.codes.setdefault(path, []).append(code)

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, error_class: type[InvalidData] = InvalidData) -> None:
        if self.items:
            raise error_class(self.items, codes=self.codes)


def _check_json(value: Any, path: str, errors: _Errors, depth: int = 0) -> None:
    """Refuse what JSON parsers let through but databases and Braze do not."""
    if depth > MAX_JSON_DEPTH:
        errors.add(path, f"is nested too deeply (at most {MAX_JSON_DEPTH} levels).", "max_depth")
        return
    if isinstance(value, str):
        problem = _string_problem(value)
        if problem:
            errors.add(path, problem)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            errors.add(path, "is out of range (integers must fit in 64 bits).", "max_value")
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


def _string(
    value: Any, path: str, errors: _Errors, *, required: bool = False, max_length: int = 255
) -> str | None:
    if value is None or value == "":
        if required:
            errors.add(path, "is required.", "required")
        return None
    if not isinstance(value, str):
        errors.add(path, f"must be a string, not {_json_type(value)}.")
        return None
    problem = _string_problem(value)
    if problem:
        errors.add(path, problem)
        return None
    if len(value) > max_length:
        errors.add(path, f"must be at most {max_length} characters (got {len(value)}).", "max_length")
        return None
    if required and all(c.isspace() or unicodedata.category(c) == "Cf" for c in value):  # "  ", a zero-width space
        errors.add(path, "must not be blank.", "blank")
        return None
    return value


def _money(
    value: Any, path: str, errors: _Errors, *, required: bool = False, allow_zero: bool = False
) -> Decimal | None:
    """A JSON number (or a numeric string) as Decimal rounded to cents."""
    if value is None:
        if required:
            errors.add(path, "is required.", "required")
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
        errors.add(path, f"must be at most {MAX_MONEY}.", "max_value")
        return None
    number = number.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if number < 0 or (number == 0 and not allow_zero):
        errors.add(
            path,
            "must be a positive number (at least 0.01)." if not allow_zero else "must not be negative.",
            "min_value",
        )
        return None
    return number


def _positive_int(
    value: Any, path: str, errors: _Errors, *, required: bool = False, maximum: int = MAX_POINTS_PER_EVENT
) -> int | None:
    if value is None:
        if required:
            errors.add(path, "is required.", "required")
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < _INT64:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        errors.add(path, f"must be a positive integer, not {_json_type(value)}.")
        return None
    if value < 1:
        errors.add(path, "must be a positive integer (at least 1).", "min_value")
        return None
    if value > maximum:
        errors.add(path, f"must be at most {maximum}.", "max_value")
        return None
    return value


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
        errors.add(path, "must not be in the future.", "max_value")
        return None
    if moment < EARLIEST_EFFECTIVE:
        errors.add(path, "must not be before 1970.", "min_value")
        return None
    return moment


def member_id_problem(member_id: Any) -> str | None:
    """Why ``member_id`` cannot be a member's id; ``None`` when it can. The API's serializers use it too."""
    if not isinstance(member_id, str) or not _MEMBER_ID.match(member_id) or _string_problem(member_id):
        return "must be 1-255 characters without spaces or control characters."
    if not member_id.strip("."):
        # HTTP clients collapse the dot segments of /members/./ and /members/../: such a member has no URL.
        return "must not consist of dots only ('.' and '..' cannot be used in URLs)."
    # Invisible characters (U+200B zero width space, U+202E right-to-left override...) make look-alike ids.
    formatting = next((char for char in member_id if unicodedata.category(char) == "Cf"), None)
    if formatting is not None:
        name = unicodedata.name(formatting, "a formatting character")
        return f"must not contain invisible formatting characters (found U+{ord(formatting):04X} {name})."
    return None


def _member_id_check(member_id: Any, path: str) -> str:
    problem = member_id_problem(member_id)
    if problem:
        raise InvalidData({path: problem})
    return member_id


def member_field_problem(name: Any) -> tuple[str, str] | None:
    """(path, problem) when ``name`` is not a member attribute that may be written; ``None`` when it is.

    Profile attributes of the registry may be written; ``member_id`` never changes; computed
    attributes are refused by name; anything else is unknown.
    """
    attribute = BY_NAME.get(name) if isinstance(name, str) else None
    if attribute is not None and attribute.writable:
        return None
    if name in ("member_id", "id"):
        return name, "cannot be changed."
    if attribute is not None:
        return name, "is computed by the loyalty engine and cannot be written."
    return path_key(name), "is not a known member field."


def _source_check(source: str) -> str:
    if source not in EventSource.values:
        raise ValueError(f"Unknown event source {source!r}; use one of {EventSource.values}.")
    return source

"""The loyalty domain's value types: each ``FieldType`` and how a value of it is checked and converted.

The one owner of the per-type rules. ``coerce`` turns input (API, admin, imports) into what a
custom field stores, or raises ``ValidationError``. The scalar readers below it (``to_boolean``,
``number_from_text``, ``parse_moment``, ``string_problem``) are what every other reader of typed
values uses: Braze's payloads (which only add Braze's formatting), the workflows' conditions
(which read typed text) and the services' input checks. Pure: no database.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime


class FieldType(models.TextChoices):
    """Value types of member attributes and program-defined fields; they match Braze's custom attribute types."""

    STRING = "string", "String"
    INTEGER = "integer", "Integer"
    FLOAT = "float", "Float"
    BOOLEAN = "boolean", "Boolean"
    DATE = "date", "Date"
    DATETIME = "datetime", "Date and time"
    ARRAY = "array", "Array of strings/numbers"
    OBJECT = "object", "Object"
    ARRAY_OF_OBJECTS = "array_of_objects", "Array of objects"


# Limits that keep a custom value within what Braze accepts for the type.
MAX_STRING_LENGTH = 255
MAX_ARRAY_LENGTH = 500
MAX_OBJECT_BYTES = 100 * 1024
_OBJECT_KEY = re.compile(r"^[^\s.$][^\s.$]{0,254}\Z")


class TypeProblem(ValueError):
    """A value that is not of the expected type. ``code`` tells callers which problem it is
    (``invalid``, ``not_finite``) so each can word it for its reader."""

    def __init__(self, message: str, code: str = "invalid"):
        super().__init__(message)
        self.message = message
        self.code = code


# --- Scalar readers shared by every consumer of typed values ------------------------------------


def string_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored or sent as text (NUL characters, broken Unicode); ``None`` when it can."""
    if "\x00" in value:
        return "must not contain NUL characters."
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains invalid Unicode (an unpaired surrogate)."
    return None


def json_same(a: Any, b: Any) -> bool:
    """Whether two JSON values are the same value, which ``==`` does not say: Python takes ``true``
    for ``1`` and ``false`` for ``0`` (and ``{"k": true}`` for ``{"k": 1}``), where JSON and Braze do not."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(json_same(value, b[key]) for key, value in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(json_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def json_type(value: Any) -> str:
    """What kind of JSON value ``value`` is, for messages ("a number", "an object")."""
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


def to_boolean(value: Any) -> bool:
    """``True``/``False`` from a boolean or the text ``true``/``false`` (any case); else ``TypeProblem``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise TypeProblem("expected true or false")


def number_from_text(text: str) -> Decimal:
    """A finite number written as text (surrounding spaces allowed); ``TypeProblem`` with code
    ``invalid`` (not a number) or ``not_finite`` (NaN, infinity)."""
    try:
        number = Decimal(text.strip())
    except ArithmeticError:
        raise TypeProblem("is not a number") from None
    if not number.is_finite():
        raise TypeProblem("expected a finite number", "not_finite")
    return number


def parse_moment(value: Any) -> dt.date | dt.datetime | None:
    """A date (``YYYY-MM-DD``) or an aware datetime (UTC when no zone is given) from ISO 8601 text or
    a date; ``None`` when it is neither."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return dt.date.fromisoformat(text)
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


# --- Conversion for storage ------------------------------------------------------------------------


def coerce(field_type: str, value: Any) -> Any:
    """Convert ``value`` to ``field_type`` as it is stored (JSON-friendly), or raise ``ValidationError``.

    ``None`` is always allowed: it clears the value.
    """
    if value is None:
        return None
    match field_type:
        case FieldType.STRING:
            if not isinstance(value, str):
                raise ValidationError("Expected a string.")
            if len(value) > MAX_STRING_LENGTH:
                raise ValidationError(f"At most {MAX_STRING_LENGTH} characters (got {len(value)}).", code="max_length")
            return value
        case FieldType.INTEGER:
            if isinstance(value, bool):
                raise ValidationError("Expected an integer, got a boolean.")
            if isinstance(value, int):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str) and re.fullmatch(r"-?\d{1,18}", value.strip()):
                return int(value)
            raise ValidationError("Expected an integer.")
        case FieldType.FLOAT:
            if isinstance(value, bool):
                raise ValidationError("Expected a number, got a boolean.")
            if isinstance(value, int | float | Decimal):
                number = float(value)
            elif isinstance(value, str):
                try:
                    number = float(value)
                except ValueError:
                    raise ValidationError("Expected a number.") from None
            else:
                raise ValidationError("Expected a number.")
            if number != number or number in (float("inf"), float("-inf")):
                raise ValidationError("Expected a finite number.")
            return number
        case FieldType.BOOLEAN:
            try:
                return to_boolean(value)
            except TypeProblem:
                raise ValidationError("Expected true or false.") from None
        case FieldType.DATE:
            if isinstance(value, dt.datetime):
                return value.date().isoformat()
            if isinstance(value, dt.date):
                return value.isoformat()
            if isinstance(value, str):
                try:
                    parsed = parse_date(value)
                except ValueError:
                    parsed = None
                if parsed:
                    return parsed.isoformat()
            raise ValidationError("Expected a date as YYYY-MM-DD.")
        case FieldType.DATETIME:
            if isinstance(value, dt.datetime):
                parsed_dt = value
            elif isinstance(value, str):
                try:
                    parsed_dt = parse_datetime(value)
                except ValueError:
                    parsed_dt = None
                if parsed_dt is None:
                    raise ValidationError("Expected a date and time in ISO 8601, e.g. 2026-11-25T10:00:00Z.")
            else:
                raise ValidationError("Expected a date and time in ISO 8601.")
            if timezone.is_naive(parsed_dt):
                parsed_dt = timezone.make_aware(parsed_dt, dt.UTC)
            return parsed_dt.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        case FieldType.ARRAY:
            if not isinstance(value, list):
                raise ValidationError("Expected a list.")
            if len(value) > MAX_ARRAY_LENGTH:
                raise ValidationError(f"At most {MAX_ARRAY_LENGTH} elements (got {len(value)}).", code="max_length")
            for index, item in enumerate(value):
                if isinstance(item, bool) or not isinstance(item, str | int | float):
                    raise ValidationError(f"Element {index}: expected a string or a number.")
                if isinstance(item, str) and len(item) > MAX_STRING_LENGTH:
                    raise ValidationError(f"Element {index}: at most {MAX_STRING_LENGTH} characters.", code="max_length")
            return value
        case FieldType.OBJECT:
            if not isinstance(value, dict):
                raise ValidationError("Expected an object.")
            _check_object(value, "")
            return value
        case FieldType.ARRAY_OF_OBJECTS:
            if not isinstance(value, list):
                raise ValidationError("Expected a list of objects.")
            for index, item in enumerate(value):
                if not isinstance(item, dict):
                    raise ValidationError(f"Element {index}: expected an object.")
                _check_object(item, f"[{index}]")
            if json_bytes(value) > MAX_OBJECT_BYTES:
                raise ValidationError("At most 100 KB.", code="max_length")
            return value
    raise ValidationError(f"Unknown field type {field_type!r}.")


def _check_object(value: dict, where: str) -> None:
    for key, item in value.items():
        if not isinstance(key, str) or not _OBJECT_KEY.match(key):
            raise ValidationError(
                f"Key {where}{key!r}: keys must be 1-255 characters without spaces, '.' or '$'."
            )
        if isinstance(item, dict):
            _check_object(item, f"{where}.{key}")
    if not where and json_bytes(value) > MAX_OBJECT_BYTES:
        raise ValidationError("At most 100 KB.", code="max_length")


def json_bytes(value: Any) -> int:
    """A value's size as Braze measures it: the UTF-8 bytes of its compact JSON, not ASCII-escaped."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())

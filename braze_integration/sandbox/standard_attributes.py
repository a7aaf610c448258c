"""Braze's standard profile attributes: which keys they are, what each accepts, how it is kept.

`STANDARD_ATTRIBUTES` is the one list: validation asks it whether a value is acceptable, the
store asks it for the value to keep (codes in their canonical case; subscription group states
merged per group) and whether writing it is billed as a data point. Every standard attribute
but `subscription_groups` can be removed with null, like a custom attribute.
"""

from __future__ import annotations

import json
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Any

from .iso_codes import COUNTRY_CODES, LANGUAGE_CODES

MAX_STRING_LENGTH = 255
GENDERS = ("M", "F", "O", "N", "P")
SUBSCRIPTION_STATES = ("opted_in", "subscribed", "unsubscribed")
SUBSCRIPTION_GROUP_STATES = ("subscribed", "unsubscribed")
SUBSCRIPTION_GROUP_KEYS = frozenset({"subscription_group_id", "subscription_state"})

_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
_PHONE = re.compile(r"\+?[0-9 ()\-.]+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class InvalidStandardValue(ValueError):
    """A value a standard attribute does not take; the message names the attribute."""


@dataclass(frozen=True, slots=True)
class StandardAttribute:
    """One standard attribute: `clean` returns the value to keep or raises `InvalidStandardValue`."""

    name: str
    clean: Callable[[str, Any], Any]
    billed: bool = True
    nullable: bool = True


def standard_attribute_error(name: str, value: Any) -> str | None:
    """Why `value` is refused for the standard attribute `name`, or None if it is accepted."""
    try:
        clean_standard_value(name, value)
    except InvalidStandardValue as err:
        return str(err)
    return None


def clean_standard_value(name: str, value: Any) -> Any:
    """The value Braze keeps for `name` (None removes it); raises `InvalidStandardValue`."""
    attribute = STANDARD_ATTRIBUTES[name]
    if value is None:
        if attribute.nullable:
            return None
        raise InvalidStandardValue(f"Attribute '{name}' must not be null.")
    return attribute.clean(name, value)


# --- the checks ---------------------------------------------------------------------------------


def _string(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidStandardValue(f"Attribute '{name}' must be a string, received {_preview(value)}.")
    if len(value) > MAX_STRING_LENGTH:
        raise InvalidStandardValue(
            f"Attribute '{name}' value is longer than {MAX_STRING_LENGTH} characters ({len(value)})."
        )
    return value


def _email(name: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_STRING_LENGTH or not _EMAIL.fullmatch(value):
        raise InvalidStandardValue(
            f"Attribute '{name}' must be a valid e-mail address such as 'ada@example.com', "
            f"received {_preview(value)}."
        )
    return value


def _phone(name: str, value: Any) -> str:
    valid = (
        isinstance(value, str)
        and len(value) <= MAX_STRING_LENGTH
        and _PHONE.fullmatch(value) is not None
        and sum(character.isdigit() for character in value) >= 3
    )
    if not valid:
        raise InvalidStandardValue(
            f"Attribute '{name}' must be a phone number (digits, optionally a leading '+', spaces, "
            f"dashes, dots or parentheses; E.164 such as '+4712345678' is best), received {_preview(value)}."
        )
    return value


def _country(name: str, value: Any) -> str:
    code = value.upper() if isinstance(value, str) else None
    if code not in COUNTRY_CODES:
        raise InvalidStandardValue(
            f"Attribute '{name}' must be an ISO-3166-1 alpha-2 country code such as 'DE', "
            f"received {_preview(value)}."
        )
    return code


def _language(name: str, value: Any) -> str:
    code = value.lower() if isinstance(value, str) else None
    if code not in LANGUAGE_CODES:
        raise InvalidStandardValue(
            f"Attribute '{name}' must be an ISO-639-1 language code such as 'en', "
            f"received {_preview(value)}."
        )
    return code


def _date_of_birth(name: str, value: Any) -> str:
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            date.fromisoformat(value)
        except ValueError:
            pass
        else:
            return value
    raise InvalidStandardValue(
        f"Attribute '{name}' must be a date as YYYY-MM-DD such as '1990-05-17', received {_preview(value)}."
    )


def _gender(name: str, value: Any) -> str:
    letter = value.upper() if isinstance(value, str) else None
    if letter not in GENDERS:
        raise InvalidStandardValue(
            f"Attribute '{name}' must be one of {_choices(GENDERS)} or null, received {_preview(value)}."
        )
    return letter


def _subscription_state(name: str, value: Any) -> str:
    if value not in SUBSCRIPTION_STATES:
        raise InvalidStandardValue(
            f"Attribute '{name}' must be one of {_choices(SUBSCRIPTION_STATES)}, received {_preview(value)}."
        )
    return value


def _time_zone(name: str, value: Any) -> str:
    zones = _time_zones()
    # Without a time zone database on the machine every name passes rather than none.
    if not isinstance(value, str) or (zones and value not in zones):
        raise InvalidStandardValue(
            f"Attribute '{name}' must be an IANA time zone name such as 'Europe/Oslo', "
            f"received {_preview(value)}."
        )
    return value


def _subscription_groups(name: str, value: Any) -> dict[str, str]:
    """A list of {subscription_group_id, subscription_state}; kept as {group id: state}."""
    if not isinstance(value, list):
        raise InvalidStandardValue(
            f"Attribute '{name}' must be an array of "
            '{"subscription_group_id": ..., "subscription_state": ...} objects, '
            f"received {_preview(value)}."
        )
    states: dict[str, str] = {}
    for position, item in enumerate(value):
        where = f"{name}[{position}]"
        if not isinstance(item, dict) or set(item) != SUBSCRIPTION_GROUP_KEYS:
            raise InvalidStandardValue(
                f"Attribute '{where}' must have exactly the keys {sorted(SUBSCRIPTION_GROUP_KEYS)}."
            )
        group_id, state = item["subscription_group_id"], item["subscription_state"]
        if not isinstance(group_id, str) or not group_id:
            raise InvalidStandardValue(f"Attribute '{where}' 'subscription_group_id' must be a non-empty string.")
        if state not in SUBSCRIPTION_GROUP_STATES:
            raise InvalidStandardValue(
                f"Attribute '{where}' 'subscription_state' must be one of "
                f"{_choices(SUBSCRIPTION_GROUP_STATES)}, received {_preview(state)}."
            )
        states[group_id] = state
    return states


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _choices(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def _preview(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


STANDARD_ATTRIBUTES: dict[str, StandardAttribute] = {
    attribute.name: attribute
    for attribute in (
        StandardAttribute("first_name", _string),
        StandardAttribute("last_name", _string),
        StandardAttribute("home_city", _string),
        StandardAttribute("email", _email),
        StandardAttribute("phone", _phone),
        StandardAttribute("dob", _date_of_birth),
        StandardAttribute("gender", _gender),
        StandardAttribute("time_zone", _time_zone),
        # Not billed as data points (reference notes, "Data points").
        StandardAttribute("country", _country, billed=False),
        StandardAttribute("language", _language, billed=False),
        StandardAttribute("email_subscribe", _subscription_state, billed=False),
        StandardAttribute("push_subscribe", _subscription_state, billed=False),
        StandardAttribute("subscription_groups", _subscription_groups, billed=False, nullable=False),
    )
}
UNBILLED_ATTRIBUTES = frozenset(name for name, attribute in STANDARD_ATTRIBUTES.items() if not attribute.billed)

"""Braze's standard profile attributes as the sync writes them, and its subscription groups.

The one list of them (``STANDARD_FIELDS``): for each standard attribute, the Braze type its values
have, which loyalty fields may feed it (checked when a mapping is saved: the admin and
``braze_config import``), and how a loyalty value becomes what Braze takes (ISO 3166-1 alpha-2
countries, ISO 639-1 languages, ``YYYY-MM-DD`` birth dates, Braze's gender letters, subscription
states). Field mappings, workflows' sync-data values and ``braze_resync --clear`` read it.

Channels other than e-mail and push are subscription groups: a mapping of a consent field to a group
id sends ``subscription_groups: [{"subscription_group_id": ..., "subscription_state": ...}]``.
A consent that was never given sends nothing (``NOT_SENT``): Braze keeps what it has.
Pure: no database.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from loyaltysync import locales
from loyaltysync.fieldtypes import FieldType, parse_moment
from loyaltysync.models import Consent, Gender

from .fields import LoyaltyField
from .payloads import MAX_STRING, BrazeType, PayloadError, convert_value

SUBSCRIPTION_GROUPS = "subscription_groups"
MAX_GROUP_ID = 255
# Loyalty genders in Braze's letters (O: other; Braze also has N, not applicable, and P, prefer not to say).
GENDER_LETTERS = {Gender.FEMALE: "F", Gender.MALE: "M", Gender.OTHER: "O"}
BRAZE_GENDERS = ("M", "F", "O", "N", "P")


class _NotSent:
    def __repr__(self) -> str:
        return "NOT_SENT"


NOT_SENT: Any = _NotSent()  # a value that leaves the attribute out of the request (unset consent)


# --- conversions: a loyalty value (already of the field's Braze type) to Braze's format ------------


def _blank_is_null(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _text(value: Any, where: str) -> str | None:
    if type(value) is str and len(value) <= MAX_STRING:  # the common case, without the general conversion
        return value.strip() or None
    value = _blank_is_null(value)
    return None if value is None else convert_value(BrazeType.STRING, value, where=where).strip()


# What Braze takes (the sandbox checks the same): an e-mail address with one "@" and a domain of two
# or more dot-separated labels; a phone number of digits, with an optional leading "+", spaces, dashes,
# dots and parentheses, three digits at least; a time zone by its IANA name. A value Braze refuses
# makes it refuse the member's whole attributes object, so these are caught here, attribute by
# attribute: only that attribute is held back (and named), and the door refuses it where it can.
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
_PHONE = re.compile(r"\+?[0-9 ()\-.]+")


def _email(value: Any, where: str) -> str | None:
    text = _text(value, where)
    if text is not None and not _EMAIL.fullmatch(text):
        raise PayloadError(where, f"{text!r} is not an e-mail address Braze takes, such as ada@example.com")
    return text


def _phone(value: Any, where: str) -> str | None:
    text = _text(value, where)
    if text is not None and (not _PHONE.fullmatch(text) or sum(c.isdigit() for c in text) < 3):
        raise PayloadError(where, f"{text!r} is not a phone number Braze takes: digits, with an optional leading +, "
                                  "spaces, dashes, dots or parentheses (E.164 such as +4712345678 is best)")
    return text


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _time_zone(value: Any, where: str) -> str | None:
    text = _text(value, where)
    # Without a time zone database on the machine every name passes rather than none.
    if text is not None and _time_zones() and text not in _time_zones():
        raise PayloadError(where, f"{text!r} is not an IANA time zone name such as Europe/Oslo")
    return text


def _country(value: Any, where: str) -> str | None:
    code = _text(value, where)
    if code is None:
        return None
    if code.upper() not in locales.iso_countries():
        raise PayloadError(where, f"{code!r} is not an ISO 3166-1 alpha-2 country code such as DE")
    return code.upper()


def _language(value: Any, where: str) -> str | None:
    tag = _text(value, where)
    if tag is None:
        return None
    code = locales.language_of(tag)  # en-GB: Braze keeps the language, not the region
    if code is None:
        raise PayloadError(where, f"{tag!r} is not an ISO 639-1 language code such as en")
    return code


def _date_of_birth(value: Any, where: str) -> str | None:
    value = _blank_is_null(value)
    if value is None:
        return None
    moment = parse_moment(value)
    if moment is None or isinstance(moment, dt.datetime):
        raise PayloadError(where, f"{value!r} is not a date as YYYY-MM-DD")
    return moment.isoformat()


def _gender(value: Any, where: str) -> str | None:
    text = _text(value, where)
    if text is None:
        return None
    if text in GENDER_LETTERS:
        return GENDER_LETTERS[text]
    if text.upper() in BRAZE_GENDERS:
        return text.upper()
    raise PayloadError(where, f"{text!r} is not a gender: female, male, other, or one of Braze's "
                              f"letters {', '.join(BRAZE_GENDERS)}")


def subscription_state(value: Any, where: str) -> str:
    """A consent as ``email_subscribe``/``push_subscribe`` take it; ``NOT_SENT`` when never given."""
    value = _blank_is_null(value)
    if value is None:
        return NOT_SENT
    if value not in Consent.values:
        raise PayloadError(where, f"{value!r} is not a consent: {', '.join(v for v in Consent.values if v)} or empty")
    return value


def subscription_group_state(value: Any, where: str) -> str:
    """A consent as a subscription group takes it (``opted_in`` counts as subscribed); ``NOT_SENT`` when never given."""
    state = subscription_state(value, where)
    if state is NOT_SENT:
        return NOT_SENT
    return "unsubscribed" if state == Consent.UNSUBSCRIBED else "subscribed"


# --- the list ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StandardField:
    """One standard attribute: its values' Braze type, which loyalty fields may feed it (``feeds``,
    described by ``rule``), and how a value is put in Braze's format (``convert``)."""

    name: str
    braze_type: BrazeType
    rule: str = ""
    feeds: Callable[[LoyaltyField], bool] | None = None
    convert: Callable[[Any, str], Any] | None = None

    def accepts(self, field: LoyaltyField) -> bool:
        return self.feeds(field) if self.feeds is not None else field.braze_type == self.braze_type

    @property
    def rule_words(self) -> str:
        return self.rule or f"needs a {self.braze_type.value.replace('_', ' ')} field"

    def value(self, value: Any, where: str) -> Any:
        """``value`` (of ``braze_type``) as Braze takes it: ``None`` removes the attribute, ``NOT_SENT``
        leaves it out. Raises ``PayloadError`` naming ``where``."""
        if self.convert is None:
            return value
        return self.convert(value, where)


def _string_field(field: LoyaltyField) -> bool:
    return field.braze_type == BrazeType.STRING and not field.consent


_S, _D, _O = BrazeType.STRING, BrazeType.DATE, BrazeType.OBJECT
STANDARD_FIELDS: dict[str, StandardField] = {
    standard.name: standard
    for standard in (
        StandardField("email", _S, "needs a text field (an e-mail address)", _string_field, _email),
        StandardField("first_name", _S, "needs a text field", _string_field),
        StandardField("last_name", _S, "needs a text field", _string_field),
        StandardField("phone", _S, "needs a text field (a phone number)", _string_field, _phone),
        StandardField("country", _S, "needs a text field of ISO 3166-1 alpha-2 country codes, such as country",
                      _string_field, _country),
        StandardField("language", _S, "needs a text field of ISO 639-1 language codes, such as language",
                      _string_field, _language),
        StandardField("dob", _D, "needs a date field (sent as YYYY-MM-DD), such as birth_date",
                      lambda field: field.field_type == FieldType.DATE, _date_of_birth),
        StandardField("gender", _S, "needs the gender field (sent as M, F or O)",
                      lambda field: field.key == "gender", _gender),
        StandardField("email_subscribe", _S, "needs a consent field, such as consent_email",
                      lambda field: field.consent, subscription_state),
        StandardField("push_subscribe", _S, "needs a consent field", lambda field: field.consent, subscription_state),
        StandardField("home_city", _S, "needs a text field", _string_field),
        StandardField("time_zone", _S, "needs a text field (IANA time zone names)", _string_field, _time_zone),
        StandardField("image_url", _S, "needs a text field", _string_field),
        StandardField("bio", _S, "needs a text field", _string_field),
        StandardField("alias_name", _S, "needs a text field", _string_field),
        StandardField("alias_label", _S, "needs a text field", _string_field),
        StandardField("date_of_first_session", _D),
        StandardField("date_of_last_session", _D),
        StandardField("current_location", _O),
        StandardField("facebook", _O),
        StandardField("twitter", _O),
        StandardField("email_open_tracking_disabled", BrazeType.BOOLEAN),
        StandardField("email_click_tracking_disabled", BrazeType.BOOLEAN),
        # The devices' push tokens (app id, token, device id): the apps' SDKs register them.
        StandardField("push_tokens", BrazeType.ARRAY_OF_OBJECTS,
                      "holds the devices' push tokens, which the apps register through Braze's SDK",
                      lambda field: False),
        # Written by subscription-group mappings only (a consent field and a group id), never by name.
        StandardField(SUBSCRIPTION_GROUPS, BrazeType.ARRAY_OF_OBJECTS,
                      "is written by subscription group mappings: map a consent field with the kind "
                      "\"subscription group\" and the group's id", lambda field: False),
    )
}
# Braze's standard profile fields: a mapping or a workflow value of one of these names writes the profile field.
STANDARD_PROFILE_FIELDS = frozenset(STANDARD_FIELDS)
# Standard attributes Braze does not bill as data points (reference notes, "Data points").
UNBILLED = frozenset({"country", "language", "email_subscribe", "push_subscribe", SUBSCRIPTION_GROUPS})


def mapping_problem(*, loyalty_field: LoyaltyField, remote_field: str) -> str | None:
    """Why ``loyalty_field`` cannot feed the standard attribute ``remote_field``; ``None`` when it can
    (or ``remote_field`` is a custom attribute). Names the mapping and the rule."""
    standard = STANDARD_FIELDS.get(remote_field)
    if standard is None or standard.accepts(loyalty_field):
        return None
    kind = "consent" if loyalty_field.consent else loyalty_field.field_type.label.lower()
    article = "an" if kind[0] in "aeiou" else "a"
    return (f'The mapping {loyalty_field.key} → {remote_field}: Braze\'s standard attribute "{remote_field}" '
            f"{standard.rule_words}, and {loyalty_field.key} is {article} {kind} field.")


def subscription_group_problem(*, loyalty_field: LoyaltyField, group_id: str) -> str | None:
    """Why a subscription-group mapping cannot be saved; ``None`` when it can."""
    if not loyalty_field.consent:
        return (f"The mapping {loyalty_field.key} → subscription group {group_id}: a subscription group needs a "
                f"consent field (such as consent_sms), and {loyalty_field.key} is not one.")
    return group_id_problem(group_id)


def group_id_problem(group_id: str) -> str | None:
    if not group_id or len(group_id) > MAX_GROUP_ID or any(c.isspace() for c in group_id):
        return (f"The subscription group id must be 1-{MAX_GROUP_ID} characters without spaces, as Braze shows it "
                "(Audience › Subscriptions).")
    return None


def standard_attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (attribute name -> a value already of its Braze type) with every standard attribute in
    Braze's format; attributes ``NOT_SENT`` are left out. Raises ``PayloadError`` naming the attribute."""
    out = {}
    for name, value in values.items():
        standard = STANDARD_FIELDS.get(name)
        converted = standard.value(value, name) if standard is not None and value is not None else value
        if converted is not NOT_SENT:
            out[name] = converted
    return out

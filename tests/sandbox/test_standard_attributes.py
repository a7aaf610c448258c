"""Braze's standard attributes: what each accepts (pure), then over real HTTP to a sandbox."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from braze_integration.sandbox import SandboxServer
from braze_integration.sandbox.standard_attributes import (
    STANDARD_ATTRIBUTES,
    clean_standard_value,
    standard_attribute_error,
)

from .sandbox_http import member, track, user

# --- what each accepts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "kept"),
    [
        ("email", "ada@example.com", "ada@example.com"),
        ("phone", "+47 123 45 678", "+47 123 45 678"),
        ("phone", "(555) 010-9999", "(555) 010-9999"),
        ("country", "DE", "DE"),
        ("country", "no", "NO"),
        ("language", "EN", "en"),
        ("dob", "1990-05-17", "1990-05-17"),
        ("gender", "f", "F"),
        ("gender", "P", "P"),
        ("email_subscribe", "opted_in", "opted_in"),
        ("push_subscribe", "unsubscribed", "unsubscribed"),
        ("first_name", "Ada", "Ada"),
        ("time_zone", "Europe/Oslo", "Europe/Oslo"),
        (
            "subscription_groups",
            [{"subscription_group_id": "g1", "subscription_state": "subscribed"}],
            {"g1": "subscribed"},
        ),
        ("gender", None, None),
        ("email", None, None),
    ],
)
def test_given_valid_value_when_cleaned_then_braze_keeps_its_canonical_form(name: str, value: Any, kept: Any) -> None:
    assert standard_attribute_error(name, value) is None
    assert clean_standard_value(name, value) == kept


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("email", "ada.example.com", "valid e-mail address"),
        ("email", "ada@example", "valid e-mail address"),
        ("email", 7, "valid e-mail address"),
        ("phone", "call me", "phone number"),
        ("phone", "+1", "phone number"),
        ("country", "Germany", "ISO-3166-1 alpha-2"),
        ("country", "XX", "ISO-3166-1 alpha-2"),
        ("language", "eng", "ISO-639-1"),
        ("language", "xx", "ISO-639-1"),
        ("dob", "17.05.1990", "YYYY-MM-DD"),
        ("dob", "1990-02-30", "YYYY-MM-DD"),
        ("dob", "1990-05-17T00:00:00Z", "YYYY-MM-DD"),
        ("gender", "female", "'M', 'F', 'O', 'N', 'P' or null"),
        ("email_subscribe", "yes", "'opted_in', 'subscribed', 'unsubscribed'"),
        ("push_subscribe", True, "'opted_in', 'subscribed', 'unsubscribed'"),
        ("first_name", "x" * 256, "longer than 255"),
        ("last_name", 3, "must be a string"),
        ("time_zone", "Mars/Olympus", "IANA time zone"),
        ("subscription_groups", None, "must not be null"),
        ("subscription_groups", {"g1": "subscribed"}, "must be an array"),
        ("subscription_groups", [{"subscription_group_id": "g1"}], "subscription_groups[0]"),
        (
            "subscription_groups",
            [{"subscription_group_id": "g1", "subscription_state": "opted_in"}],
            "'subscription_state' must be one of 'subscribed', 'unsubscribed'",
        ),
        (
            "subscription_groups",
            [{"subscription_group_id": "", "subscription_state": "subscribed"}],
            "'subscription_group_id' must be a non-empty string",
        ),
    ],
)
def test_given_bad_value_when_checked_then_error_names_attribute_and_problem(
    name: str, value: Any, expected: str
) -> None:
    problem = standard_attribute_error(name, value)
    assert problem is not None and f"'{name}" in problem and expected in problem


def test_given_registry_when_read_then_braze_documented_standard_keys_are_there() -> None:
    documented = {
        "first_name", "last_name", "email", "phone", "country", "language", "dob", "gender",
        "home_city", "time_zone", "email_subscribe", "push_subscribe", "subscription_groups",
    }  # fmt: skip
    assert set(STANDARD_ATTRIBUTES) == documented


# --- over HTTP ----------------------------------------------------------------------------------------


def test_given_valid_standard_attributes_when_tracked_then_profile_shows_them_canonical(
    server: SandboxServer,
) -> None:
    values = {
        "email": "ada@example.com", "phone": "+4712345678", "country": "no", "language": "NB",
        "dob": "1990-05-17", "gender": "f", "email_subscribe": "opted_in", "push_subscribe": "subscribed",
        "first_name": "Ada", "last_name": "Lovelace",
        "subscription_groups": [{"subscription_group_id": "sms-1", "subscription_state": "subscribed"}],
    }  # fmt: skip
    response = track(server, {"attributes": [member(**values)]})
    assert response.status_code == 201 and "errors" not in response.json()
    assert user(server, "member-1").json()["attributes"] == {
        **values, "country": "NO", "language": "nb", "gender": "F", "subscription_groups": {"sms-1": "subscribed"},
    }  # fmt: skip


def test_given_bad_standard_value_when_tracked_then_per_object_error_and_other_objects_applied(
    server: SandboxServer,
) -> None:
    body = {
        "attributes": [
            member("ok", country="DE"),
            member("bad-gender", gender="female"),
            member("bad-dob", dob="1990-13-01"),
            member("bad-group", subscription_groups=[{"subscription_group_id": "g", "subscription_state": "x"}]),
        ]
    }
    response = track(server, body)
    assert response.status_code == 201
    errors = response.json()["errors"]
    assert [(error["input_array"], error["index"]) for error in errors] == [
        ("attributes", 1),
        ("attributes", 2),
        ("attributes", 3),
    ]
    assert "'gender'" in errors[0]["type"] and "'dob'" in errors[1]["type"]
    assert "subscription_state" in errors[2]["type"]
    assert server.store.profile_keys() == ["ok"]


def test_given_only_bad_standard_values_when_tracked_then_400_with_the_errors(server: SandboxServer) -> None:
    response = track(server, {"attributes": [member(email="not-an-address")]})
    assert response.status_code == 400
    assert "'email'" in response.json()["errors"][0]["type"]


def test_given_subscription_groups_in_two_requests_when_tracked_then_states_merged_per_group(
    server: SandboxServer,
) -> None:
    def groups(*states: tuple[str, str]) -> list[dict[str, str]]:
        return [{"subscription_group_id": group, "subscription_state": state} for group, state in states]

    track(server, {"attributes": [member(subscription_groups=groups(("a", "subscribed"), ("b", "subscribed")))]})
    track(server, {"attributes": [member(subscription_groups=groups(("b", "unsubscribed")))]})
    kept = user(server, "member-1").json()["attributes"]["subscription_groups"]
    assert kept == {"a": "subscribed", "b": "unsubscribed"}


def test_given_standard_attribute_nulled_when_tracked_then_removed_and_free_ones_not_billed(
    server: SandboxServer,
) -> None:
    track(server, {"attributes": [member(gender="M", email_subscribe="subscribed", country="DE", language="de")]})
    track(server, {"attributes": [member(gender=None)]})
    assert user(server, "member-1").json()["attributes"] == {
        "email_subscribe": "subscribed", "country": "DE", "language": "de",
    }  # fmt: skip
    stats = requests.get(f"{server.url}/sandbox/stats", timeout=5).json()
    assert stats["data_points"] == 1  # gender; subscription state, country and language are free

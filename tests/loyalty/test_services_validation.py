"""services.validation: the checks the services and the API's serializers share (pure, no database)."""

from __future__ import annotations

import pytest

from loyaltysync import attributes, services


@pytest.mark.parametrize("name", attributes.PROFILE_FIELDS)
def test_profile_attributes_may_be_written(name):
    assert services.member_field_problem(name) is None


@pytest.mark.parametrize("name", ["points_spendable", "tier", "last_purchase", "created_at", "next_tier", "full_name"])
def test_computed_attributes_are_refused_by_name(name):
    assert services.member_field_problem(name) == (name, "is computed by the loyalty engine and cannot be written.")


def test_member_id_cannot_be_changed_and_unknown_names_are_named_printably():
    assert services.member_field_problem("member_id") == ("member_id", "cannot be changed.")
    assert services.member_field_problem("shoe\x00size") == ("shoe\\x00size", "is not a known member field.")


@pytest.mark.parametrize("member_id", ["", "M 1", "M\x001", "x" * 256, 5, None, "tab\there",
                                       # a newline at the end, and C1 control characters (U+0080-U+009F)
                                       "M-1\n", "M-1\r\n", "M\x80-1", "M-1\x9b", "M\x85"])
def test_bad_member_ids_are_named_with_the_rule(member_id):
    assert services.member_id_problem(member_id) == "must be 1-255 characters without spaces or control characters."


@pytest.mark.parametrize("member_id", [".", "..", "....."])
def test_member_ids_of_dots_only_are_refused(member_id):
    assert services.member_id_problem(member_id) == (
        "must not consist of dots only ('.' and '..' cannot be used in URLs)."
    )


@pytest.mark.parametrize(
    ("member_id", "found"),
    [
        ("abc\u202efdp.exe", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("M-\u200b1", "U+200B ZERO WIDTH SPACE"),
        ("\ufeffM-1", "U+FEFF ZERO WIDTH NO-BREAK SPACE"),
        ("M\u00ad1", "U+00AD SOFT HYPHEN"),
    ],
)
def test_member_ids_with_invisible_formatting_characters_are_refused_naming_the_character(member_id, found):
    assert services.member_id_problem(member_id) == (
        f"must not contain invisible formatting characters (found {found})."
    )


@pytest.mark.parametrize("member_id", ["M-1", "ü-ß", "x" * 255, "a.b", ".a", "..a", "shop/42", "مرحبا-١"])
def test_good_member_ids_pass(member_id):
    assert services.member_id_problem(member_id) is None

"""member_create / member_update: profile fields, custom field types, computed fields, signals."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db.models.signals import post_save

from loyaltysync import services
from loyaltysync.errors import InvalidData, LoyaltyError, MemberAlreadyExists
from loyaltysync.models import Member, MemberStatus

from .conftest import CUSTOM_FIELD_CASES

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(tiers, loyalty_settings):
    return services.member_create(member_id="M-1", source="api", first_name="Ada")


def test_member_create_enrols_an_active_member(member, tiers):
    """Given tiers, when a member is created, then it is active, in the entry tier, with an opt_in event (and no
    tier_reached: joining the entry tier is not reaching a tier)."""
    assert member.pk and member.status == MemberStatus.ACTIVE and member.opted_in_at
    assert member.tier == tiers["Bronze"]
    assert list(member.events.order_by("id").values_list("action", flat=True)) == ["opt_in"]
    assert member.events.get(action="opt_in").data == {"first_name": "Ada"}


def test_member_create_of_an_inactive_member_records_no_opt_in(tiers, loyalty_settings):
    """Given tiers, when an inactive member is imported, then no opt_in is recorded."""
    member = services.member_create(member_id="M-9", source="import", status="inactive")
    assert not member.events.filter(action="opt_in").exists()
    assert member.opted_in_at is None


def test_member_create_refuses_an_existing_id(member):
    """Given a member, when its id is created again, then MemberAlreadyExists names member_id."""
    with pytest.raises(MemberAlreadyExists) as caught:
        services.member_create(member_id="M-1", source="api")
    assert caught.value.field == "member_id"


@pytest.mark.parametrize("member_id", ["", "has space", "x" * 256, 42, "nul\x00", "esc\x1b", "tab\t"])
def test_member_create_refuses_bad_ids(db, member_id):
    """Given a bad member id, when a member is created with it, then the error names member_id."""
    with pytest.raises(InvalidData) as caught:
        services.member_create(member_id=member_id, source="api")
    assert "member_id" in caught.value.errors


@pytest.mark.parametrize(
    ("profile", "path"),
    [
        ({"email": "nope"}, "email"),
        ({"email": 5}, "email"),
        ({"birth_date": "2020-02-30"}, "birth_date"),
        ({"birth_date": "2999-01-01"}, "birth_date"),
        ({"gender": "robot"}, "gender"),
        ({"country": "Germany"}, "country"),
        ({"language": "english!"}, "language"),
        ({"status": "gone"}, "status"),
        ({"first_name": "x" * 151}, "first_name"),
        ({"points_spendable": 1_000_000}, "points_spendable"),
        ({"tier": "Platinum"}, "tier"),
        ({"member_id": "M-2"}, "member_id"),
        ({"favourite_colour": "red"}, "favourite_colour"),
    ],
)
def test_member_update_names_the_bad_field(member, profile, path):
    """Given a member, when an update has a bad or computed field, then the error names it and nothing
    changes.
    """
    with pytest.raises(InvalidData) as caught:
        services.member_update(member=member, profile=profile, source="api")
    assert path in caught.value.errors
    fresh = Member.objects.get()
    assert (fresh.points_spendable, fresh.tier.name, fresh.member_id) == (0, "Bronze", "M-1")


def test_member_update_saves_and_records_only_real_changes(member):
    """Given a member, when the same and then new values are written, then only the real change is saved
    and recorded.
    """
    saves = []

    def on_save(sender, instance, created, **kwargs):
        saves.append(instance.changed_fields())

    post_save.connect(on_save, sender=Member)
    try:
        # When the same values are written again, nothing is saved and no event is recorded
        services.member_update(member=member, profile={"first_name": "Ada"}, source="api")
        assert saves == [] and not member.events.filter(action="profile").exists()

        # When a value changes, one save that reports the change, and a profile event with the new value
        updated = services.member_update(
            member=member,
            profile={"first_name": "Ada", "country": "de", "birth_date": "1990-12-10"},
            source="admin",
        )
    finally:
        post_save.disconnect(on_save, sender=Member)
    assert len(saves) == 1 and saves[0] - {"updated_at"} == {"country", "birth_date"}
    assert (updated.country, updated.birth_date) == ("DE", dt.date(1990, 12, 10))
    event = member.events.get(action="profile")
    assert (event.data, event.source) == ({"country": "DE", "birth_date": "1990-12-10"}, "admin")


def test_status_change_through_the_profile_sets_the_timestamps(member):
    """Given an active member, when the status is set to opted_out, then opted_out_at is set."""
    updated = services.member_update(member=member, profile={"status": "opted_out"}, source="admin")
    assert updated.status == MemberStatus.OPTED_OUT and updated.opted_out_at is not None


@pytest.mark.parametrize("key", list(CUSTOM_FIELD_CASES))
def test_custom_field_good_value_is_stored_converted(member, custom_fields, key):
    """Given a custom field of each type, when a good value is written, then it is stored converted."""
    _type, good, stored, _bad = CUSTOM_FIELD_CASES[key]
    updated = services.member_update(member=member, custom_fields={key: good}, source="api")
    assert updated.custom_fields == {key: stored}
    assert Member.objects.get().custom_fields == {key: stored}


@pytest.mark.parametrize("key", list(CUSTOM_FIELD_CASES))
def test_custom_field_bad_value_is_refused_naming_the_field(member, custom_fields, key):
    """Given a custom field of each type, when a bad value is written, then the error names
    custom_fields.<key>.
    """
    _type, _good, _stored, bad = CUSTOM_FIELD_CASES[key]
    with pytest.raises(InvalidData) as caught:
        services.member_update(member=member, custom_fields={key: bad}, source="api")
    assert list(caught.value.errors) == [f"custom_fields.{key}"]
    assert Member.objects.get().custom_fields == {}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("shoe_size", 2**70),
        ("avg_basket", 10**400),
        ("avg_basket", float("inf")),
        ("interests", ["ok", "\x00"]),
        (
            "preferences",
            {
                "a": {
                    "b": {
                        "c": {
                            "d": {
                                "e": {
                                    "f": {
                                        "g": {
                                            "h": {
                                                "i": {
                                                    "j": {
                                                        "k": {
                                                            "l": {
                                                                "m": {
                                                                    "n": {
                                                                        "o": {
                                                                            "p": {
                                                                                "q": {
                                                                                    "r": {
                                                                                        "s": {
                                                                                            "t": {
                                                                                                "u": {"v": 1}
                                                                                            }
                                                                                        }
                                                                                    }
                                                                                }
                                                                            }
                                                                        }
                                                                    }
                                                                }
                                                            }
                                                        }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            },
        ),
        ("last_visit_at", "0001-01-01T00:00:00+05:00"),
    ],
)
def test_custom_field_extreme_values_are_refused_not_crashing(member, custom_fields, key, value):
    """Given custom fields, when extreme values are written, then they are refused with a named error, not
    a crash.
    """
    with pytest.raises(InvalidData) as caught:
        services.member_update(member=member, custom_fields={key: value}, source="api")
    assert any(path.startswith(f"custom_fields.{key}") for path in caught.value.errors)


def test_custom_fields_merge_and_null_clears(member, custom_fields):
    """Given two custom values, when one is set to null, then it is removed and the other kept."""
    services.member_update(member=member, custom_fields={"shoe_size": 41, "newsletter": True}, source="api")
    updated = services.member_update(member=member, custom_fields={"shoe_size": None}, source="api")
    assert updated.custom_fields == {"newsletter": True}


def test_unknown_custom_field_is_named(member, custom_fields):
    """Given no field eye_colour, when a value is written for it, then the error names
    custom_fields.eye_colour.
    """
    with pytest.raises(InvalidData) as caught:
        services.member_update(member=member, custom_fields={"eye_colour": "green"}, source="api")
    assert caught.value.errors == {"custom_fields.eye_colour": ["is not a defined custom field."]}


@pytest.mark.parametrize(("value", "kept"), [(-2**63, True), (2**63 - 1, True), (-2**63 - 1, False), (2**63, False)])
def test_a_custom_integer_is_kept_exactly_when_it_fits_in_64_bits(member, custom_fields, value, kept):
    if kept:
        updated = services.member_update(member=member, custom_fields={"shoe_size": value}, source="api")
        assert updated.custom_fields["shoe_size"] == value
    else:
        with pytest.raises(InvalidData) as caught:
            services.member_update(member=member, custom_fields={"shoe_size": value}, source="api")
        assert caught.value.errors == {"custom_fields.shoe_size": ["is out of range (integers must fit in 64 bits)."]}


# --- imports ---------------------------------------------------------------------------------------


def test_member_import_row_creates_then_updates_then_leaves_unchanged(tiers, loyalty_settings, custom_fields):
    # Given an import row with a profile field and custom fields in both spellings
    row = {"member_id": " M-7 ", "first_name": "Ada", "custom.shoe_size": "42", "custom.interests": '["yoga"]'}
    types = {"shoe_size": "integer", "interests": "array"}

    # When it is imported three times, the second time with a change
    first = services.member_import_row(row=row, custom_types=types)
    second = services.member_import_row(row={**row, "first_name": "Grace"}, custom_types=types)
    third = services.member_import_row(row={**row, "first_name": "Grace"}, custom_types=types)

    # Then the member is created, updated, then left alone, with values converted
    assert (first, second, third) == ("created", "updated", "unchanged")
    member = Member.objects.get(member_id="M-7")
    assert member.first_name == "Grace"
    assert member.custom_fields == {"shoe_size": 42, "interests": ["yoga"]}


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"first_name": "Ada"}, "member_id"),
        ({"member_id": "M-1", "nickname": "A"}, "nickname"),
        ({"member_id": "M-1", "custom_fields": ["x"]}, "custom_fields"),
        ({"member_id": "M-1", "custom.interests": "[not json"}, "custom_fields.interests"),
    ],
)
def test_member_import_row_refuses_bad_rows_naming_the_column(db, row, field):
    with pytest.raises(LoyaltyError) as caught:
        services.member_import_row(row=row, custom_types={"interests": "array"})
    assert caught.value.field == field
    assert not Member.objects.exists()


@pytest.mark.parametrize("member_id", [123, 1.5, True, ["M-1"]])
def test_member_import_row_says_a_member_id_that_is_not_text_must_be_a_string(db, member_id):
    with pytest.raises(LoyaltyError) as caught:
        services.member_import_row(row={"member_id": member_id}, custom_types={})
    assert caught.value.field == "member_id"
    assert "must be a string (text)" in caught.value.message
    assert not Member.objects.exists()

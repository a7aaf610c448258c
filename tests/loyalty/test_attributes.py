"""loyaltysync.attributes: the one list of member attributes, and everything that derives from it."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from braze_integration.fields import BRAZE_TYPES, loyalty_fields
from loyaltysync import attributes
from loyaltysync.api.serializers import MemberSerializer, MemberWriteSerializer
from loyaltysync.attributes import AttributeContext, Kind
from loyaltysync.fieldtypes import FieldType
from loyaltysync.models import CustomField, Member
from workflows.context import MEMBER_ATTRIBUTES, WATCHABLE_FIELDS, attribute_schema, member_context

pytestmark = pytest.mark.django_db

# A value of each profile attribute the services accept.
GOOD_PROFILE = {
    "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com", "phone": "+44 1",
    "birth_date": "1990-12-10", "gender": "female", "language": "en", "country": "GB", "status": "active",
    "consent_email": "opted_in", "consent_sms": "unsubscribed",
}


@pytest.fixture
def member(enrol, record):
    enrol("M-1", first_name="Ada", last_name="Lovelace", birth_date="1990-12-10")
    record("M-1", "checkout", transaction_id="T-1", total=600, currency="EUR",
           items=[{"product_id": "p-1", "product_name": "Socks", "price": 600, "quantity": 1}])
    return Member.objects.select_related("tier").get(member_id="M-1")


def test_every_attribute_is_readable_from_a_real_member_row(member):
    # Given a member with a tier and a purchase, when each attribute reads its values() row
    context = AttributeContext.load()
    for attribute in attributes.ATTRIBUTES:
        row = Member.objects.filter(pk=member.pk).values(*attribute.lookups).get()
        value = attribute.read(row, context)
        # Then it reads the same as from the loaded object
        assert value == attribute.read(attributes.row_of(member, attribute.lookups), context), attribute.name
    row = Member.objects.filter(pk=member.pk).values(*attributes.lookups_of(attributes.ATTRIBUTES)).get()
    read = {a.name: a.read(row, context) for a in attributes.ATTRIBUTES}
    assert read["full_name"] == "Ada Lovelace" and read["tier"] == "Silver" and read["next_tier"] == "Gold"
    assert read["points_to_next_tier"] == 1400 and read["last_purchase_products"] == ["p-1"]
    assert read["opted_in"] is True and read["birth_date"] == dt.date(1990, 12, 10)


def test_every_attribute_names_changes_member_changed_fields_can_report():
    attnames = {f.attname for f in Member._meta.concrete_fields}
    for attribute in attributes.ATTRIBUTES:
        assert set(attribute.changes) <= attnames, attribute.name
        assert attribute.type in FieldType.values


def test_names_are_unique_and_stored_attributes_are_columns():
    assert len(attributes.BY_NAME) == len(attributes.ATTRIBUTES)
    columns = {f.name for f in Member._meta.concrete_fields}
    for attribute in attributes.ATTRIBUTES:
        assert (attribute.name in columns) == attribute.stored, attribute.name


def test_every_writable_attribute_is_accepted_by_the_api_and_stored(api, enrol):
    # Given the write serializer, when every profile attribute is sent
    assert set(MemberWriteSerializer().fields) == {*attributes.PROFILE_FIELDS, attributes.CUSTOM_FIELDS}
    assert set(GOOD_PROFILE) == set(attributes.PROFILE_FIELDS)
    enrol("M-1")
    response = api.patch("/api/v1/members/M-1/", GOOD_PROFILE, format="json")
    # Then it is accepted and shown back
    assert response.status_code == 200, response.json()
    assert {name: response.json()[name] for name in GOOD_PROFILE} == GOOD_PROFILE


def test_the_api_shows_every_stored_attribute():
    stored = {a.name for a in attributes.ATTRIBUTES if a.stored}
    assert set(MemberSerializer.Meta.fields) == stored | {attributes.CUSTOM_FIELDS}


def test_the_braze_field_registry_holds_exactly_the_registry_and_the_custom_fields(db):
    CustomField.objects.create(key="vip", label="VIP", type=FieldType.BOOLEAN)
    fields = loyalty_fields()
    assert set(fields) == {*attributes.BY_NAME, "custom.vip"}
    for attribute in attributes.ATTRIBUTES:
        assert fields[attribute.name].braze_type == BRAZE_TYPES[attribute.type]
        assert fields[attribute.name].depends_on == attribute.changes
    assert fields["custom.vip"].depends_on == ("custom_fields.vip",)


def test_the_workflow_schema_holds_exactly_the_registry_plus_custom_fields():
    assert set(MEMBER_ATTRIBUTES) == {*attributes.BY_NAME, attributes.CUSTOM_FIELDS}
    schema = attribute_schema("field_change", {"vip": FieldType.BOOLEAN})
    members = {name.removeprefix("member.") for name in schema.known if name.startswith("member.")}
    assert members == {*attributes.BY_NAME, attributes.CUSTOM_FIELDS, "custom_fields.vip"}
    assert WATCHABLE_FIELDS["tier"] == "tier_id"
    assert set(WATCHABLE_FIELDS) == {a.name for a in attributes.ATTRIBUTES if a.watchable}


def test_the_workflow_member_context_has_every_attribute(member):
    context = member_context(member)
    assert set(context) == {*attributes.BY_NAME, attributes.CUSTOM_FIELDS}
    assert context["tier"] == "Silver" and context["tier_benefits"] == "Silver benefits"
    assert context["purchase_total"] == 600 and context["birth_date"] == "1990-12-10"


def test_custom_fields_join_as_attributes_of_their_type(db):
    CustomField.objects.create(key="joined", label="Joined", type=FieldType.DATE)
    joined = attributes.member_attributes()["custom_fields.joined"]
    assert (joined.kind, joined.type, joined.anniversary, joined.custom_key) == (Kind.CUSTOM, "date", True, "joined")
    assert joined.read({"custom_fields": {"joined": "2020-01-02"}}, AttributeContext()) == "2020-01-02"
    assert joined.read({"custom_fields": None}, AttributeContext()) is None


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("country", "Germany", "must be an ISO 3166-1 alpha-2 country code, e.g. DE (GERMANY is not one)."),
        ("country", "zz", "must be an ISO 3166-1 alpha-2 country code, e.g. DE (ZZ is not one)."),
        ("language", "english", "must be an ISO 639-1 language code, e.g. en or en-GB (english is not one)."),
        ("language", "zz", "must be an ISO 639-1 language code, e.g. en or en-GB (zz is not one)."),
        ("language", "EN", "must be an ISO 639-1 language code, e.g. en or en-GB (EN is not one)."),
        ("gender", "x", "must be one of: female, male, other, or empty."),
        ("status", None, "must be one of: active, inactive, opted_out."),
        ("birth_date", "1800-01-01", "must be a date between 1900-01-01 and today."),
        ("first_name", 12, "must be a string, not a number."),
    ],
)
def test_profile_attributes_check_their_input(name, value, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        attributes.BY_NAME[name].clean(value)


def test_profile_attributes_convert_their_input():
    assert attributes.BY_NAME["country"].clean(" de ") == "DE"
    assert attributes.BY_NAME["birth_date"].clean("1990-12-10") == dt.date(1990, 12, 10)
    assert attributes.BY_NAME["first_name"].clean(None) == ""

"""Braze's standard attributes and subscription groups: Braze's formats, which loyalty field may feed
each (checked when a mapping is saved), and a member with all of them mapped reaching the sandbox."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from braze_integration import building, services, standard_fields
from braze_integration.fields import loyalty_fields
from braze_integration.models import FieldMapping, MemberSyncState, RemoteKind, SyncRequest, SyncStatus
from braze_integration.payloads import PayloadError
from braze_integration.standard_fields import NOT_SENT, STANDARD_FIELDS
from loyaltysync.models import Member

# --- Braze's formats (pure) --------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value", "sent"), [
    ("country", "de", "DE"),
    ("country", "", None),
    ("language", "en-GB", "en"),
    ("language", "DE", "de"),
    ("dob", dt.date(1990, 5, 17), "1990-05-17"),
    ("dob", "1990-05-17", "1990-05-17"),
    ("gender", "female", "F"),
    ("gender", "male", "M"),
    ("gender", "other", "O"),
    ("gender", "", None),
    ("gender", "p", "P"),
    ("email", "", None),
    ("email", "ada@example.com", "ada@example.com"),
    ("phone", "", None),
    ("phone", "+49 30 1234-567", "+49 30 1234-567"),
    ("phone", "(030) 123.45", "(030) 123.45"),
    ("time_zone", "Europe/Oslo", "Europe/Oslo"),
    ("time_zone", "", None),
    ("email_subscribe", "opted_in", "opted_in"),
    ("push_subscribe", "unsubscribed", "unsubscribed"),
    ("email_subscribe", "", NOT_SENT),
])
def test_each_standard_value_is_sent_in_brazes_format(name, value, sent):
    assert STANDARD_FIELDS[name].value(value, name) == sent


@pytest.mark.parametrize(("name", "value", "words"), [
    ("country", "Germany", "'Germany' is not an ISO 3166-1 alpha-2 country code"),
    ("country", "XX", "'XX' is not an ISO 3166-1 alpha-2 country code"),
    ("language", "english", "'english' is not an ISO 639-1 language code"),
    ("dob", "1990-05-17T10:00:00Z", "is not a date as YYYY-MM-DD"),
    ("gender", "unknown", "'unknown' is not a gender"),
    ("email_subscribe", "yes", "'yes' is not a consent"),
    # Braze refuses these (and with them the member's whole attributes object); the API once let them in.
    ("email", "ada@localhost", "'ada@localhost' is not an e-mail address Braze takes"),
    ("email", '"a@b"@example.com', "is not an e-mail address Braze takes"),
    ("email", "ada @example.com", "is not an e-mail address Braze takes"),
    ("phone", "n/a", "'n/a' is not a phone number Braze takes"),
    ("phone", "+1", "'+1' is not a phone number Braze takes"),
    ("time_zone", "Mars/Base", "'Mars/Base' is not an IANA time zone name"),
])
def test_a_value_braze_would_refuse_is_refused_naming_the_attribute(name, value, words):
    with pytest.raises(PayloadError) as caught:
        STANDARD_FIELDS[name].value(value, name)

    assert caught.value.field == name
    assert words in caught.value.problem


@pytest.mark.parametrize(("consent", "state"), [
    ("opted_in", "subscribed"), ("subscribed", "subscribed"), ("unsubscribed", "unsubscribed"), ("", NOT_SENT),
    (None, NOT_SENT),
])
def test_a_consent_becomes_a_subscription_group_state(consent, state):
    assert standard_fields.subscription_group_state(consent, "subscription_groups[g]") == state


def test_workflow_values_of_standard_names_are_put_in_brazes_format_and_unset_consent_is_left_out():
    values = {"gender": "female", "country": "no", "email_subscribe": "", "loyalty_tier": "Gold", "phone": None}

    assert standard_fields.standard_attributes(values) == {"gender": "F", "country": "NO", "loyalty_tier": "Gold",
                                                           "phone": None}


# --- which loyalty field may feed which attribute (checked when saved) --------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("loyalty_field", "remote_field"), [
    ("email", "email"), ("first_name", "first_name"), ("last_name", "last_name"), ("phone", "phone"),
    ("country", "country"), ("language", "language"), ("birth_date", "dob"), ("gender", "gender"),
    ("consent_email", "email_subscribe"), ("consent_sms", "push_subscribe"),
    ("opted_in", "email_open_tracking_disabled"), ("opted_in", "email_click_tracking_disabled"),
])
def test_each_standard_attribute_accepts_its_loyalty_field(loyalty_field, remote_field):
    assert standard_fields.mapping_problem(loyalty_field=loyalty_fields()[loyalty_field],
                                           remote_field=remote_field) is None


@pytest.mark.django_db
@pytest.mark.parametrize(("loyalty_field", "remote_field", "words"), [
    ("points_spendable", "dob", "Braze's standard attribute \"dob\" needs a date field (sent as YYYY-MM-DD)"),
    ("opted_in_at", "dob", "needs a date field"),  # a date and time is not a date of birth
    ("first_name", "email_subscribe", "needs a consent field"),
    ("consent_email", "email", "needs a text field"),
    ("country", "gender", "needs the gender field"),
    ("tier", "subscription_groups", "is written by subscription group mappings"),
    ("last_purchase_items", "push_tokens", "holds the devices' push tokens"),
    ("first_name", "email_open_tracking_disabled", "needs a boolean field"),
])
def test_a_mapping_to_a_standard_attribute_from_the_wrong_field_is_refused_naming_the_mapping_and_the_rule(
        braze_connection, loyalty_field, remote_field, words):
    mapping = FieldMapping(connection=braze_connection, loyalty_field=loyalty_field, remote_field=remote_field)

    with pytest.raises(ValidationError) as caught:
        mapping.full_clean()

    message = caught.value.message_dict["remote_field"][0]
    assert message.startswith(f"The mapping {loyalty_field} → {remote_field}: ")
    assert words in message


def test_a_subscription_group_needs_a_consent_field_and_a_group_id(braze_connection):
    wrong_field = FieldMapping(connection=braze_connection, loyalty_field="phone", remote_field="sms-group-1",
                               remote_kind=RemoteKind.SUBSCRIPTION_GROUP)
    no_id = FieldMapping(connection=braze_connection, loyalty_field="consent_sms", remote_field="two words",
                         remote_kind=RemoteKind.SUBSCRIPTION_GROUP)

    with pytest.raises(ValidationError) as field_refused:
        wrong_field.full_clean()
    with pytest.raises(ValidationError) as id_refused:
        no_id.full_clean()

    assert field_refused.value.message_dict["remote_field"] == [
        "The mapping phone → subscription group sms-group-1: a subscription group needs a consent field (such as "
        "consent_sms), and phone is not one."]
    assert "subscription group id must be 1-255 characters without spaces" in id_refused.value.message_dict[
        "remote_field"][0]
    FieldMapping(connection=braze_connection, loyalty_field="consent_sms", remote_field="sms-group-1",
                 remote_kind=RemoteKind.SUBSCRIPTION_GROUP).full_clean()


# --- end to end: every standard attribute reaches the sandbox over HTTP ----------------------------------

EVERY_STANDARD_ATTRIBUTE = [
    ("email", "email"), ("first_name", "first_name"), ("last_name", "last_name"), ("phone", "phone"),
    ("country", "country"), ("language", "language"), ("birth_date", "dob"), ("gender", "gender"),
    ("consent_email", "email_subscribe"), ("consent_email", "push_subscribe"),
]
SMS_GROUP = "6f0f5c43-sms-group"
PROMO_GROUP = "2b7d1e0a-promo-group"


@pytest.fixture
def standard_connection(braze_connection):
    braze_connection.mappings.all().delete()
    for position, (loyalty_field, remote_field) in enumerate(EVERY_STANDARD_ATTRIBUTE):
        FieldMapping.objects.create(connection=braze_connection, loyalty_field=loyalty_field,
                                    remote_field=remote_field, position=position)
    for position, (loyalty_field, group) in enumerate([("consent_sms", SMS_GROUP), ("consent_email", PROMO_GROUP)]):
        FieldMapping.objects.create(connection=braze_connection, loyalty_field=loyalty_field, remote_field=group,
                                    remote_kind=RemoteKind.SUBSCRIPTION_GROUP, position=20 + position)
    services.sync_config_invalidate()
    return braze_connection


@pytest.mark.usefixtures("q_sync")
def test_given_every_standard_attribute_mapped_when_a_member_is_saved_then_the_sandbox_holds_them_in_brazes_format(
        standard_connection, sandbox):
    Member.objects.create(
        member_id="m-1", email="ada@example.com", first_name="Ada", last_name="Lovelace", phone="+44 20 7946 0958",
        country="GB", language="en-GB", birth_date=dt.date(1990, 5, 17), gender="female",
        consent_email="opted_in", consent_sms="unsubscribed")

    assert sandbox.user("m-1")["attributes"] == {
        "email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace", "phone": "+44 20 7946 0958",
        "country": "GB", "language": "en", "dob": "1990-05-17", "gender": "F",
        "email_subscribe": "opted_in", "push_subscribe": "opted_in",
        "subscription_groups": {SMS_GROUP: "unsubscribed", PROMO_GROUP: "subscribed"},
    }
    request = SyncRequest.objects.get()
    assert (request.http_status, request.errors) == (201, [])
    assert [entry["errors"] for entry in sandbox.requests()] == [0]
    state = MemberSyncState.objects.get(member__member_id="m-1")
    assert (state.status, state.last_error) == (SyncStatus.SYNCED, "")


@pytest.mark.usefixtures("q_sync")
def test_given_consent_never_given_then_nothing_is_sent_for_it_and_a_withdrawal_unsubscribes(
        standard_connection, sandbox):
    member = Member.objects.create(member_id="m-1", email="ada@example.com", gender="", consent_email="",
                                   consent_sms="subscribed")

    attributes = sandbox.user("m-1")["attributes"]
    assert "email_subscribe" not in attributes and "gender" not in attributes
    assert attributes["subscription_groups"] == {SMS_GROUP: "subscribed"}

    member.consent_sms = "unsubscribed"
    member.consent_email = "subscribed"
    member.save()

    attributes = sandbox.user("m-1")["attributes"]
    assert attributes["email_subscribe"] == "subscribed"
    assert attributes["subscription_groups"] == {SMS_GROUP: "unsubscribed", PROMO_GROUP: "subscribed"}


@pytest.mark.usefixtures("q_sync")
def test_given_a_consent_cleared_after_it_was_sent_then_braze_is_told_unsubscribed(standard_connection, sandbox):
    member = Member.objects.create(member_id="m-1", email="ada@example.com", consent_email="opted_in",
                                   consent_sms="subscribed")
    attributes = sandbox.user("m-1")["attributes"]
    assert attributes["email_subscribe"] == "opted_in"
    assert attributes["subscription_groups"] == {SMS_GROUP: "subscribed", PROMO_GROUP: "subscribed"}

    member.consent_email = ""
    member.consent_sms = ""
    member.save()

    attributes = sandbox.user("m-1")["attributes"]
    # Braze would keep opted in / subscribed: a consent no longer on record is withdrawn there.
    assert attributes["email_subscribe"] == "unsubscribed" and attributes["push_subscribe"] == "unsubscribed"
    assert attributes["subscription_groups"] == {SMS_GROUP: "unsubscribed", PROMO_GROUP: "unsubscribed"}

    # What Braze holds now is the withdrawal: the next change does not send it again.
    state = MemberSyncState.objects.get()
    assert state.status == SyncStatus.SYNCED and state.last_sent_values["email_subscribe"] == "unsubscribed"
    plan = building.MappingPlan.load(standard_connection)
    values, _ = plan.sendable_values(Member.objects.filter(pk=member.pk).values(*plan.columns).get(),
                                     state.last_sent_values)
    assert building.attributes_to_send(values, state.last_sent_values, send_all=False, force=False) == {}

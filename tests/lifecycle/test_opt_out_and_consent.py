"""Opt-out makes a member inactive (no earning); marketing consent is separate, in Braze's vocabulary."""

from __future__ import annotations

import pytest

from loyaltysync.models import Member, MemberStatus

pytestmark = pytest.mark.django_db

EVENTS = "/api/v1/events"


def post(api, member_id, action, **data):
    return api.post(EVENTS, {"customer": member_id, "action": action, "data": data}, format="json")


def test_an_opted_out_member_records_checkouts_but_earns_nothing_and_point_add_is_refused(api, enrol, record):
    # Given a member with 100 points who opts out
    enrol("M-1")
    record("M-1", "point_add", points=100)
    record("M-1", "opt_out")

    # When a checkout and a point_add arrive
    checkout = post(api, "M-1", "checkout", transaction_id="T-1", total=80, currency="EUR")
    bonus = post(api, "M-1", "point_add", points=50)

    # Then the checkout is recorded without points, and the bonus is refused with a clear error
    assert checkout.status_code == 201, checkout.json()
    assert checkout.json()["event"]["data"]["points_earned"] == 0
    assert checkout.json()["event"]["data"]["points_withheld"] == "member is opted_out"
    assert bonus.status_code == 409
    assert bonus.json()["error"]["code"] == "member_inactive"
    assert "opted out" in bonus.json()["error"]["message"] and "customer" in bonus.json()["error"]["fields"]
    member = Member.objects.get(member_id="M-1")
    # And the balance is kept as it was (frozen, not forfeited); the purchase counts
    assert (member.points_spendable, member.points_earned, member.purchase_count) == (100, 100, 1)


def test_opting_in_again_restores_earning(api, enrol, record):
    enrol("M-1")
    record("M-1", "opt_out")

    assert post(api, "M-1", "opt_in").status_code == 201
    checkout = post(api, "M-1", "checkout", transaction_id="T-2", total=30, currency="EUR")

    assert checkout.json()["event"]["data"]["points_earned"] == 30
    member = Member.objects.get(member_id="M-1")
    assert member.status == MemberStatus.ACTIVE and member.points_spendable == 30
    assert post(api, "M-1", "point_add", points=5).status_code == 201


@pytest.mark.parametrize("value", ["opted_in", "subscribed", "unsubscribed", ""])
def test_consent_takes_brazes_values_through_the_api(api, enrol, value):
    enrol("M-1")
    response = api.patch("/api/v1/members/M-1/", {"consent_email": value, "consent_sms": value}, format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["consent_email"], response.json()["consent_sms"]) == (value, value)


def test_null_consent_means_not_given(api, enrol):
    enrol("M-1", consent_sms="subscribed")
    response = api.patch("/api/v1/members/M-1/", {"consent_sms": None}, format="json")
    assert response.status_code == 200 and response.json()["consent_sms"] == ""


@pytest.mark.parametrize("field", ["consent_email", "consent_sms"])
@pytest.mark.parametrize("value", ["yes", "OPTED_IN", True, 1])
def test_any_other_consent_value_is_a_400_naming_the_field(api, enrol, field, value):
    enrol("M-1")
    response = api.patch("/api/v1/members/M-1/", {field: value}, format="json")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == [field]
    assert Member.objects.get(member_id="M-1").consent_email == ""


def test_consent_is_not_membership(api, enrol, record):
    # Given a member who unsubscribes from e-mail
    enrol("M-1", consent_email="opted_in")
    api.patch("/api/v1/members/M-1/", {"consent_email": "unsubscribed"}, format="json")
    # Then it is still an active, earning member
    checkout = post(api, "M-1", "checkout", transaction_id="T-3", total=10, currency="EUR")
    assert checkout.json()["event"]["data"]["points_earned"] == 10
    # And opting out of the program leaves its consent as it was
    record("M-1", "opt_out")
    assert Member.objects.get(member_id="M-1").consent_email == "unsubscribed"


def test_consent_in_an_opt_in_event_with_a_bad_value_names_the_data_field(api):
    response = post(api, "M-9", "opt_in", consent_sms="maybe")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["data.consent_sms"]


def test_the_admin_edits_consent_and_refuses_other_values(admin_client, enrol):
    member = enrol("M-1")
    url = f"/admin/loyaltysync/member/{member.pk}/change/"
    form = {"first_name": "", "last_name": "", "email": "", "phone": "", "gender": "", "language": "",
            "country": "", "status": "active", "custom_fields": "{}", "consent_sms": "opted_in"}

    bad = admin_client.post(url, {**form, "consent_email": "sure"})
    saved = admin_client.post(url, {**form, "consent_email": "subscribed"})

    assert bad.status_code == 200 and b"Select a valid choice" in bad.content
    assert saved.status_code == 302
    member.refresh_from_db()
    assert (member.consent_email, member.consent_sms) == ("subscribed", "opted_in")

"""The program's rules belong to staff: settings with history, currencies, declared custom actions."""

from __future__ import annotations

from decimal import Decimal

import pytest

from loyaltysync import services
from loyaltysync.models import CustomAction, Member, ProgramSettings

pytestmark = pytest.mark.django_db

EVENTS = "/api/v1/events"


def checkout(api, total, currency, transaction_id="T-1"):
    return api.post(EVENTS, {"customer": "M-1", "action": "checkout", "data": {
        "transaction_id": transaction_id, "total": total, "currency": currency}}, format="json")


def test_without_saved_settings_the_environment_defaults_rule(loyalty_settings):
    rules = services.program_rules()
    assert (rules.points_per_unit, rules.pending_days, rules.expiry_days, rules.currency) == (Decimal(1), 0, 365, "EUR")


def test_staff_save_versions_in_the_admin_and_the_newest_rules(admin_client, api, enrol):
    enrol("M-1")
    form = {"points_per_unit": "2", "pending_days": "0", "expiry_days": "30", "currency": "eur",
            "rates": '{"USD": "0.5"}', "note": "Double points week"}

    assert admin_client.post("/admin/loyaltysync/programsettings/add/", form).status_code == 302
    assert admin_client.post("/admin/loyaltysync/programsettings/add/", {**form, "points_per_unit": "3"}).status_code == 302

    versions = list(ProgramSettings.objects.values_list("points_per_unit", "currency", "created_by"))
    assert versions == [(Decimal(3), "EUR", "admin"), (Decimal(2), "EUR", "admin")]  # newest first: the history
    response = checkout(api, 10, "USD")  # 10 USD = 5 EUR, 3 points per EUR
    assert response.status_code == 201, response.json()
    data = response.json()["event"]["data"]
    assert (data["points_earned"], data["exchange_rate"], data["program_total"]) == (15, "0.5", 5)
    member = Member.objects.get(member_id="M-1")
    assert member.purchase_total == Decimal("5.00")
    assert member.ledger.get().expires_at is not None
    # An old version is history: it cannot be changed
    old = ProgramSettings.objects.order_by("id").first()
    assert admin_client.post(f"/admin/loyaltysync/programsettings/{old.pk}/change/", form).status_code == 403


def test_the_admin_refuses_unknown_currencies_and_bad_rates(admin_client):
    form = {"points_per_unit": "1", "pending_days": "0", "expiry_days": "0", "currency": "EURO",
            "rates": '{"XYZ": "1", "GBP": "-2"}', "note": ""}
    page = admin_client.post("/admin/loyaltysync/programsettings/add/", form)
    assert page.status_code == 200
    assert b"3-letter ISO 4217" in page.content and b"XYZ" in page.content and b"GBP: the rate" in page.content
    assert not ProgramSettings.objects.exists()


@pytest.mark.parametrize("currency, problem", [("EURO", "3-letter ISO 4217"), ("XYZ", "not an ISO 4217"),
                                               ("USD", "has no rate")])
def test_a_checkout_in_an_unknown_or_rateless_currency_is_a_400_naming_data_currency(api, enrol, currency, problem):
    enrol("M-1")
    response = checkout(api, 10, currency)
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["data.currency"]
    assert problem in response.json()["error"]["fields"]["data.currency"][0]
    assert Member.objects.get(member_id="M-1").purchase_count == 0


def test_a_refund_of_a_foreign_checkout_takes_back_its_program_currency_total(api, enrol, settings):
    settings.LOYALTY = {**settings.LOYALTY, "CURRENCY_RATES": {"GBP": "1.2"}}
    enrol("M-1")
    checkout(api, 100, "GBP")
    api.post(EVENTS, {"customer": "M-1", "action": "refund", "data": {"transaction_id": "T-1", "amount": 50}},
             format="json")
    member = Member.objects.get(member_id="M-1")
    assert member.purchase_total == Decimal("60.00") and member.points_spendable == 60


def test_an_undeclared_action_is_a_400_with_the_nearest_known_names(api, enrol):
    enrol("M-1")
    CustomAction.objects.create(name="review_written")

    typo = api.post(EVENTS, {"customer": "M-1", "action": "chekout"}, format="json")
    declared = api.post(EVENTS, {"customer": "M-1", "action": "review_written"}, format="json")
    near_custom = api.post(EVENTS, {"customer": "M-1", "action": "review_writen"}, format="json")

    assert typo.status_code == 400
    assert "Did you mean 'checkout'" in typo.json()["error"]["fields"]["action"][0]
    assert declared.status_code == 201
    assert "'review_written'" in near_custom.json()["error"]["fields"]["action"][0]


def test_custom_actions_are_listed_in_the_admin(admin_client, db):
    CustomAction.objects.create(name="review_written", description="A product review")
    page = admin_client.get("/admin/loyaltysync/customaction/")
    assert page.status_code == 200 and b"review_written" in page.content and b"A product review" in page.content

"""services.events: recording each action and its effect on the member, purchases and refunds."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from loyaltysync.errors import (
    DuplicateTransaction,
    InsufficientPoints,
    InvalidEventData,
    MemberNotFound,
)
from loyaltysync.models import LedgerKind, LoyaltyEvent, Member, MemberStatus, PointsTransaction
from loyaltysync.signals import loyalty_event_recorded

from .conftest import checkout, ledger_consistent

pytestmark = pytest.mark.django_db



# --- opt_in / opt_out / profile / custom actions ---------------------------------------------------


def test_opt_in_creates_an_unknown_member_in_the_entry_tier(enrol, tiers):
    # Given no member M-1, when an opt_in event arrives with profile data
    member = enrol("M-1", first_name="Ada", email="ada@example.com", custom_fields={})

    # Then the member exists, is active, opted in, and in the tier of 0 points (joining it is not reaching it:
    # no tier_reached)
    member.refresh_from_db()
    assert (member.first_name, member.email, member.status) == ("Ada", "ada@example.com", MemberStatus.ACTIVE)
    assert member.opted_in_at is not None
    assert member.tier == tiers["Bronze"]
    actions = list(member.events.order_by("id").values_list("action", "source"))
    assert actions == [("opt_in", "api")]
    assert member.tier_since is not None


def test_opt_out_then_opt_in_reactivates(enrol, record):
    # Given an enrolled member who opted out
    enrol("M-1")
    member, _ = record("M-1", "opt_out", reason="too many mails")
    assert member.status == MemberStatus.OPTED_OUT and member.opted_out_at is not None

    # When they opt in again
    member, event = record("M-1", "opt_in")

    # Then they are active again, and both events are on record
    member.refresh_from_db()
    assert member.status == MemberStatus.ACTIVE
    assert member.events.filter(action="opt_out").get().data == {"reason": "too many mails"}


def test_events_for_an_unknown_member_are_refused(record, tiers):
    # Given no member, when a checkout arrives, then MemberNotFound names the customer and nothing is written
    with pytest.raises(MemberNotFound) as caught:
        checkout(record, member_id="nobody")
    assert caught.value.field == "customer"
    assert not Member.objects.exists() and not LoyaltyEvent.objects.exists()


def test_profile_event_sets_profile_and_custom_fields(enrol, record, custom_fields):
    """Given a member, when a profile event arrives, then its profile and custom fields are set."""
    enrol("M-1")
    member, event = record("M-1", "profile", last_name="Lovelace", custom_fields={"shoe_size": 38})
    member.refresh_from_db()
    assert member.last_name == "Lovelace" and member.custom_fields == {"shoe_size": 38}
    assert event.action == "profile"


def test_profile_event_names_bad_fields_under_data(enrol, record, custom_fields):
    """Given a member, when a profile event has bad fields, then each is named under data."""
    enrol("M-1")
    with pytest.raises(InvalidEventData) as caught:
        record("M-1", "profile", email="not-an-email", points_earned=5, custom_fields={"nope": 1})
    assert set(caught.value.errors) == {"data.points_earned", "data.custom_fields.nope"}
    # email is checked once the typing problems are fixed
    with pytest.raises(InvalidEventData) as caught:
        record("M-1", "profile", email="not-an-email")
    assert set(caught.value.errors) == {"data.email"}


def test_custom_action_is_recorded_without_changing_the_member(enrol, record):
    """Given a member, when a program-defined action arrives, then it is recorded as is and the member is
    not saved.
    """
    enrol("M-1")
    before = Member.objects.get().updated_at
    member, event = record("M-1", "store_visit", store="Berlin")
    assert (event.action, event.data) == ("store_visit", {"store": "Berlin"})
    assert Member.objects.get().updated_at == before


@pytest.mark.parametrize("action", ["Checkout", "1st", "has space", "a" * 65, "", "tier_reached"])
def test_bad_or_engine_only_action_names_are_refused(enrol, record, action):
    """Given a member, when an event has a bad or engine-only action, then the error names action."""
    enrol("M-1")
    with pytest.raises(InvalidEventData) as caught:
        record("M-1", action)
    assert "action" in caught.value.errors


def test_effective_timestamp_backdates_the_event(enrol, record):
    """Given a member, when an event carries effective_timestamp, then it is back-dated to it (in UTC)."""
    enrol("M-1")
    _, event = record("M-1", "store_visit", effective_timestamp="2026-01-05T08:00:00+02:00")
    assert event.occurred_at == dt.datetime(2026, 1, 5, 6, 0, tzinfo=dt.UTC)
    assert "effective_timestamp" not in event.data


@pytest.mark.parametrize("value", ["tomorrow", "2999-01-01T00:00:00Z", 12, "0001-01-01T00:00:00+05:00"])
def test_bad_effective_timestamps_are_refused(enrol, record, value):
    """Given a member, when effective_timestamp is not a past ISO date and time, then the error names it."""
    enrol("M-1")
    with pytest.raises(InvalidEventData) as caught:
        record("M-1", "store_visit", effective_timestamp=value)
    assert "data.effective_timestamp" in caught.value.errors


def test_every_event_is_announced_after_the_member_is_updated(enrol, record):
    """Given a listener, when a checkout reaches a tier, then both events are announced in order, with the
    member already updated.
    """
    enrol("M-1")
    heard = []

    def listener(sender, event, **kwargs):
        heard.append((event.action, event.member.points_earned))

    loyalty_event_recorded.connect(listener)
    try:
        checkout(record, total=600)
    finally:
        loyalty_event_recorded.disconnect(listener)
    assert heard == [("checkout", 600), ("tier_reached", 600)]


# --- checkout -------------------------------------------------------------------------------------


def test_checkout_earns_points_and_updates_purchases(enrol, record):
    # Given an enrolled Bronze member (multiplier 1)
    enrol("M-1")
    items = [{"product_id": 7, "product_name": "Shoe", "price": "99.99", "quantity": 1, "discount": 0}]

    # When they buy for 99.99
    member, event = checkout(record, total=99.99, items=items)

    # Then floor(99.99) points are earned, spendable now, and the purchase is counted
    member.refresh_from_db()
    assert (member.points_earned, member.points_spendable, member.points_pending) == (99, 99, 0)
    assert (member.purchase_count, member.purchase_total) == (1, Decimal("99.99"))
    assert member.last_purchase == {
        "transaction_id": "T-1",
        "total": 99.99,
        "currency": "EUR",
        "items": [{"product_id": "7", "product_name": "Shoe", "price": 99.99, "quantity": 1, "discount": 0}],
        "points_earned": 99,
    }
    assert member.last_purchase_at == event.occurred_at
    earn = PointsTransaction.objects.get(kind=LedgerKind.EARN)
    assert (earn.points, earn.remaining, earn.event_id, earn.pending) == (99, 99, event.pk, False)
    assert earn.expires_at == event.occurred_at + dt.timedelta(days=365)


def test_checkout_uses_the_tier_multiplier_and_upgrades(enrol, record, tiers):
    # Given a member who reaches Silver with a first purchase
    enrol("M-1")
    member, _ = checkout(record, transaction_id="T-1", total=500)
    assert member.tier == tiers["Silver"]
    assert member.events.filter(action="tier_reached").first().data == {
        "tier": "Silver",
        "previous_tier": "Bronze",
        "benefits": "Silver benefits",
    }

    # When they buy again as Silver (1.25)
    member, event = checkout(record, transaction_id="T-2", total=101)

    # Then floor(101 * 1.25) = 126 points are earned
    assert event.data["points_earned"] == 126
    assert member.points_earned == 626


def test_points_per_currency_unit_setting_is_applied(enrol, record, loyalty_settings):
    """Given 0.1 points per unit, when a member buys for 99, then 9 points are earned."""
    loyalty_settings["POINTS_PER_CURRENCY_UNIT"] = 0.1
    enrol("M-1")
    member, _ = checkout(record, total=99)
    assert member.points_earned == 9


def test_duplicate_transaction_id_is_refused_and_not_counted_twice(enrol, record):
    """Given a checkout T-1, when T-1 arrives again (for anyone), then it is refused and counted once."""
    enrol("M-1")
    enrol("M-2")
    checkout(record, transaction_id="T-1", total=100)
    # Another member's checkout with the same id is a duplicate too: the id is the shop's order number
    with pytest.raises(DuplicateTransaction) as caught:
        checkout(record, member_id="M-2", transaction_id="T-1", total=100)
    assert caught.value.field == "data.transaction_id"
    with pytest.raises(DuplicateTransaction):
        checkout(record, transaction_id="T-1", total=100)
    member = Member.objects.get(member_id="M-1")
    assert (member.purchase_count, member.points_earned) == (1, 100)
    assert LoyaltyEvent.objects.filter(action="checkout").count() == 1


def test_database_constraint_catches_a_duplicate_the_check_missed(enrol, record, monkeypatch):
    # Given a checkout recorded, when a second one races past the exists() check
    enrol("M-1")
    checkout(record, transaction_id="T-1")
    real_filter = LoyaltyEvent.objects.filter

    def filter_missing_checkouts(*args, **kwargs):
        if kwargs.get("action") == "checkout" and "member" not in kwargs:
            return real_filter(pk=-1)
        return real_filter(*args, **kwargs)

    monkeypatch.setattr(LoyaltyEvent.objects, "filter", filter_missing_checkouts)
    # Then the unique constraint still refuses it as a DuplicateTransaction
    with pytest.raises(DuplicateTransaction):
        checkout(record, transaction_id="T-1")
    monkeypatch.undo()
    assert Member.objects.get().purchase_count == 1


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"total": 10, "currency": "EUR"}, "data.transaction_id"),
        ({"transaction_id": 5, "total": 10, "currency": "EUR"}, "data.transaction_id"),
        ({"transaction_id": "T", "total": -3, "currency": "EUR"}, "data.total"),
        ({"transaction_id": "T", "total": 0, "currency": "EUR"}, "data.total"),
        ({"transaction_id": "T", "total": "ten", "currency": "EUR"}, "data.total"),
        ({"transaction_id": "T", "total": True, "currency": "EUR"}, "data.total"),
        ({"transaction_id": "T", "total": 10**30, "currency": "EUR"}, "data.total"),
        ({"transaction_id": "T", "total": 10, "currency": "EURO"}, "data.currency"),
        ({"transaction_id": "T", "total": 10}, "data.currency"),
        ({"transaction_id": "T", "total": 10, "currency": "EUR", "items": {}}, "data.items"),
        ({"transaction_id": "T", "total": 10, "currency": "EUR", "items": ["x"]}, "data.items[0]"),
        (
            {
                "transaction_id": "T",
                "total": 10,
                "currency": "EUR",
                "items": [{"product_id": "P", "product_name": "N", "price": -1, "quantity": 1}],
            },
            "data.items[0].price",
        ),
        (
            {
                "transaction_id": "T",
                "total": 10,
                "currency": "EUR",
                "items": [{"product_id": "P", "product_name": "N", "price": 1, "quantity": 1.5}],
            },
            "data.items[0].quantity",
        ),
        ({"transaction_id": "T", "total": 10, "currency": "EUR", "points_burned": -5}, "data.points_burned"),
        ({"transaction_id": "T\x00", "total": 10, "currency": "EUR"}, "data.transaction_id"),
        ({"transaction_id": "T", "total": 10, "currency": "EUR", "note": "\ud800"}, "data.note"),
    ],
)
def test_bad_checkout_data_is_refused_naming_the_field(enrol, record, data, path):
    """Given a member, when checkout data is invalid, then the error names the field and nothing is
    recorded.
    """
    enrol("M-1")
    with pytest.raises(InvalidEventData) as caught:
        record("M-1", "checkout", **data)
    assert path in caught.value.errors
    assert not LoyaltyEvent.objects.filter(action="checkout").exists()


def test_checkout_can_burn_points(enrol, record):
    """Given 300 spendable points, when a checkout burns 250, then they are spent and the ledger adds up."""
    enrol("M-1")
    record("M-1", "point_add", points=300)
    member, event = checkout(record, total=100, points_burned=250)
    assert (member.points_spent, member.points_spendable, member.points_earned) == (250, 150, 400)
    assert PointsTransaction.objects.get(kind=LedgerKind.SPEND).points == -250
    assert ledger_consistent(member)


def test_checkout_burning_more_than_spendable_is_refused(enrol, record):
    """Given 10 spendable points, when a checkout burns 11, then it is refused and not counted."""
    enrol("M-1")
    record("M-1", "point_add", points=10)
    with pytest.raises(InsufficientPoints):
        checkout(record, total=100, points_burned=11)
    assert Member.objects.get().purchase_count == 0


def test_pending_days_keep_checkout_points_pending(enrol, record, loyalty_settings):
    """Given 14 pending days, when a member buys, then the points are pending and cannot be spent yet."""
    loyalty_settings["PENDING_DAYS"] = 14
    enrol("M-1")
    member, _ = checkout(record, total=80)
    assert (member.points_pending, member.points_spendable, member.points_earned) == (80, 0, 80)
    with pytest.raises(InsufficientPoints):
        record("M-1", "point_spend", points=1)


def test_backdated_checkout_does_not_replace_a_later_last_purchase(enrol, record):
    """Given a recent checkout, when an older one is recorded later, then the last purchase stays the
    recent one.
    """
    enrol("M-1")
    checkout(record, transaction_id="T-new", total=10)
    member, _ = checkout(record, transaction_id="T-old", total=20, effective_timestamp="2026-01-01T00:00:00Z")
    assert member.last_purchase["transaction_id"] == "T-new"
    assert member.purchase_count == 2


# --- refunds ----------------------------------------------------------------------------------------


def test_full_refund_takes_back_points_and_purchase_total_and_can_lose_a_tier(enrol, record, tiers):
    """Given a checkout that reached Silver, when it is refunded in full, then points and purchase total go
    back and the tier is lost.
    """
    enrol("M-1")
    checkout(record, transaction_id="T-1", total=600)
    member, event = record("M-1", "refund", transaction_id="T-1")
    assert (member.points_earned, member.points_spendable, member.purchase_total) == (0, 0, Decimal("0.00"))
    assert event.data["amount"] == 600 and event.data["points_refunded"] == 600
    assert PointsTransaction.objects.get(kind=LedgerKind.REFUND).points == -600
    assert member.tier == tiers["Bronze"]
    lost = member.events.get(action="tier_lost")
    assert lost.data == {"tier": "Bronze", "previous_tier": "Silver", "benefits": "Bronze benefits"}
    assert lost.source == "engine"


def test_partial_refunds_take_back_points_in_proportion_and_add_up_to_the_total(enrol, record):
    """Given a checkout of 100, when it is refunded in three parts, then the points taken back add up to
    exactly what it earned.
    """
    enrol("M-1")
    checkout(record, transaction_id="T-1", total=100)  # 100 points
    member, first = record("M-1", "partial_refund", transaction_id="T-1", amount=33.33)
    assert first.data["points_refunded"] == 33
    member, second = record("M-1", "partial_refund", transaction_id="T-1", amount="33.33")
    assert second.data["points_refunded"] == 33
    member, rest = record("M-1", "refund", transaction_id="T-1")  # the remaining 33.34
    assert rest.data["amount"] == 33.34 and rest.data["points_refunded"] == 34
    assert (member.points_earned, member.purchase_total) == (0, Decimal("0.00"))
    assert ledger_consistent(member)


def test_refunding_more_than_remains_is_refused(enrol, record):
    """Given a checkout partly refunded, when more than remains is refunded, then the error names
    data.amount with what remains.
    """
    enrol("M-1")
    checkout(record, transaction_id="T-1", total=50)
    record("M-1", "partial_refund", transaction_id="T-1", amount=30)
    with pytest.raises(InvalidEventData) as caught:
        record("M-1", "partial_refund", transaction_id="T-1", amount=30)
    assert "data.amount" in caught.value.errors and "20.00" in caught.value.errors["data.amount"][0]
    record("M-1", "refund", transaction_id="T-1")
    with pytest.raises(InvalidEventData) as caught:
        record("M-1", "refund", transaction_id="T-1")
    assert "data.transaction_id" in caught.value.errors


def test_refund_of_another_members_checkout_looks_like_an_unknown_one(enrol, record):
    """Given another member's checkout, when it is refunded for someone else, then the answer is the one
    for an unknown id.
    """
    enrol("M-1")
    enrol("M-2")
    checkout(record, member_id="M-2", transaction_id="T-2", total=50)
    with pytest.raises(InvalidEventData) as caught:
        record("M-1", "refund", transaction_id="T-2")
    unknown = pytest.raises(InvalidEventData)
    with unknown as caught_unknown:
        record("M-1", "refund", transaction_id="T-nope")
    assert caught.value.errors == caught_unknown.value.errors
    assert Member.objects.get(member_id="M-2").purchase_total == Decimal("50.00")


def test_refund_after_spending_takes_what_is_left_and_reports_the_rest(enrol, record):
    """Given points of a checkout mostly spent, when it is refunded, then what is left is taken back and
    the rest reported.
    """
    enrol("M-1")
    checkout(record, transaction_id="T-1", total=100)
    record("M-1", "point_spend", points=80)
    member, event = record("M-1", "refund", transaction_id="T-1")
    assert event.data["points_due"] == 100
    assert event.data["points_refunded"] == 20 and event.data["points_not_recovered"] == 80
    assert (member.points_spendable, member.points_earned, member.points_spent) == (0, 80, 80)
    assert ledger_consistent(member)

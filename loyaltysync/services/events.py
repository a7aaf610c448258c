"""Loyalty events: recording one event for a member and applying its effect (enrolment, profile,
checkout, refund, points added or spent); program-defined actions are recorded as they are.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..currencies import currency_problem
from ..errors import InvalidData, InvalidEventData, MemberAlreadyExists, MemberInactive, MemberNotFound
from ..models import CustomAction, EventSource, LedgerKind, LoyaltyEvent, Member, MemberStatus
from ..transient import retry_transient
from .erasure import erased_id_check
from .ledger import (
    _insufficient,
    _points_credit,
    _points_recoverable,
    _points_spend,
    _points_take_back,
    _standing_refresh,
)
from .members import _profile_apply
from .program import program_rules
from .recording import _announce, _Context, _duplicate, _event_create, _member_insert, _member_save
from .validation import (
    ACTION_PATTERN,
    MAX_ITEMS,
    MAX_POINTS_BALANCE,
    MAX_PURCHASE_TOTAL,
    _check_json,
    _decimal_from_json,
    _Errors,
    _json_type,
    _money,
    _money_json,
    _parse_moment,
    _positive_int,
    _source_check,
    _string,
    member_id_problem,
    path_key,
)

# Actions only the engine records; a client sending them would fake tier changes or balances.
ENGINE_ACTIONS = frozenset({"tier_reached", "tier_lost", "points_spendable", "points_expired"})
REFUND_ACTIONS = ("refund", "partial_refund")


@retry_transient
def event_record(
    *,
    member_id: str,
    action: str,
    data: dict[str, Any],
    source: str,
    occurred_at: dt.datetime | None = None,
) -> tuple[Member, LoyaltyEvent]:
    """Record one loyalty event for a member and apply its effect; returns (member, event).

    The member must exist (``MemberNotFound``) unless the action is ``opt_in``, which creates it (an
    ``opt_in`` that loses the race to create it is recorded for the member the other request created).
    ``data.effective_timestamp`` (ISO 8601, not in the future) back-dates the event, unless
    ``occurred_at`` is given. Actions with an effect: ``opt_in``, ``opt_out``, ``profile``,
    ``checkout``, ``refund``, ``partial_refund``, ``point_add``, ``point_spend`` (or ``point_sub``);
    a custom action must be declared (``CustomAction``) and is recorded as is; an undeclared one is
    refused naming the nearest known actions. Problems raise ``InvalidEventData`` (paths ``customer``,
    ``action``, ``data.<...>``), ``DuplicateTransaction``, ``InsufficientPoints``, ``MemberInactive``
    (an opted-out member cannot be given points) or ``MemberErased``; nothing is written then.
    """
    _source_check(source)
    errors = _Errors()
    if problem := member_id_problem(member_id):
        errors.add("customer", problem)
    if not isinstance(action, str) or not ACTION_PATTERN.match(action):
        errors.add(
            "action", "must be 1-64 lower-case letters, digits or underscores, starting with a letter."
        )
    elif action in ENGINE_ACTIONS and source != EventSource.ENGINE:
        errors.add("action", "is recorded by the loyalty engine only.")
    elif action not in _HANDLERS and action not in ENGINE_ACTIONS:
        if problem := _undeclared_action_problem(action):
            errors.add("action", problem)
    if not isinstance(data, dict):
        errors.add("data", f"must be an object, not {_json_type(data)}.")
    else:
        _check_json(data, "data", errors)
        _near_misses_check(action, data, errors)
    errors.raise_if_any(InvalidEventData)

    data = dict(data)
    effective = data.pop("effective_timestamp", None)
    if occurred_at is None:
        occurred_at = (
            timezone.now()
            if effective is None
            else _parse_moment(effective, "data.effective_timestamp", errors)
        )
    errors.raise_if_any(InvalidEventData)

    handler = _HANDLERS.get(action, _record_as_is)
    try:
        return _event_apply(member_id, action, handler, data, source, occurred_at)
    except MemberAlreadyExists:
        # Another request enrolled this id between our look-up and our insert (an opt_in, the only action
        # that inserts). Our transaction (or savepoint) was rolled back whole; the member exists now, so
        # running the recording once more takes the existing member's path, as if we had come second.
        return _event_apply(member_id, action, handler, data, source, occurred_at)


def _event_apply(
    member_id: str,
    action: str,
    handler: Callable[[_Context, dict[str, Any]], LoyaltyEvent],
    data: dict[str, Any],
    source: str,
    occurred_at: dt.datetime,
) -> tuple[Member, LoyaltyEvent]:
    """One try at recording the event: the member locked (or, for an opt_in, new), all in one transaction."""
    with transaction.atomic():
        # NO KEY: a plain FOR UPDATE also blocks the FOR KEY SHARE that other transactions' foreign-key
        # checks take on the member (a worker committing a row that references it): a deadlock.
        member = Member.objects.select_for_update(no_key=True).filter(member_id=member_id).first()
        if member is None:
            if action != "opt_in":
                raise MemberNotFound(f"No member with id {member_id!r}.", field="customer")
            erased_id_check(member_id, "customer")
            member = Member(member_id=member_id)
        context = _Context(member=member, occurred_at=occurred_at, source=source, action=action)
        event = handler(context, data)
        try:
            _member_save(member)
        except InvalidEventData:
            raise
        except InvalidData as error:  # a member check (see ``member_checks``), in the member's terms
            raise _in_event_terms(error, data) from None
        _announce(context.events)
    return member, event


# Member attributes a checkout derives from its data, and where in the data they come from.
_CHECKOUT_SOURCES = {
    "last_purchase": "data",
    "last_purchase_items": "data.items",
    "last_purchase_products": "data.items",
    "last_purchase_amount": "data.total",
    "last_purchase_currency": "data.currency",
}


def _in_event_terms(error: InvalidData, data: dict[str, Any]) -> InvalidEventData:
    """A member check's problems named by the event data they came from: ``email`` as ``data.email``,
    ``last_purchase_items`` as ``data.items``; what the engine keeps (points, tiers) keeps its name."""
    errors: dict[str, list[str]] = {}
    codes: dict[str, list[str]] = {}
    for path, problems in error.field_errors.items():
        if path.split(".", 1)[0] in data:
            where = f"data.{path}"
        else:
            where = _CHECKOUT_SOURCES.get(path, path)
        errors.setdefault(where, []).extend(problems)
        codes.setdefault(where, []).extend(error.field_codes.get(path, []))
    return InvalidEventData(errors, codes=codes)


# The keys of ``data`` each action with a fixed shape reads (profile actions read member fields, which are
# checked by name). Other keys are kept with the event (and reach Braze's event properties), unless one is
# so close to a known key that it is surely a typo: a ``points_burnt`` would otherwise burn nothing.
ACTION_DATA_KEYS: dict[str, frozenset[str]] = {
    "checkout": frozenset({"transaction_id", "total", "currency", "items", "points_burned", "effective_timestamp"}),
    "refund": frozenset({"transaction_id", "amount", "effective_timestamp"}),
    "partial_refund": frozenset({"transaction_id", "amount", "effective_timestamp"}),
    "point_add": frozenset({"points", "reason", "effective_timestamp"}),
    "point_spend": frozenset({"points", "reason", "effective_timestamp"}),
    "point_sub": frozenset({"points", "reason", "effective_timestamp"}),
    "opt_out": frozenset({"effective_timestamp"}),
}
NEAR_MISS = 0.8  # difflib's ratio from which an unknown key is taken for a misspelt known one


def _near_misses_check(action: Any, data: dict[str, Any], errors: _Errors) -> None:
    known = ACTION_DATA_KEYS.get(action)
    if not known:
        return
    for key in data:
        if not isinstance(key, str) or key in known:
            continue
        if close := difflib.get_close_matches(key, sorted(known), n=1, cutoff=NEAR_MISS):
            errors.add(f"data.{path_key(key)}", f"is not a field of {action}; did you mean {close[0]}?",
                       "unknown_field")


BUILT_IN_ACTIONS = ("opt_in", "opt_out", "profile", "checkout", "refund", "partial_refund", "point_add",
                    "point_spend", "point_sub")


def _undeclared_action_problem(action: str) -> str | None:
    """Why a custom action is refused (not declared), naming the nearest known actions; ``None`` if declared."""
    declared = list(CustomAction.objects.values_list("name", flat=True))
    if action in declared:
        return None
    nearest = difflib.get_close_matches(action, [*BUILT_IN_ACTIONS, *declared], n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(name) for name in nearest)}?" if nearest else ""
    return (f"{action!r} is not a known action: declare custom actions in the admin (Custom actions) "
            f"or in the braze_config file's custom_actions.{hint}")


def _earning_refused(member: Member) -> MemberInactive:
    return MemberInactive(
        f"Member {member.member_id!r} is {member.get_status_display().lower()}: it earns no points until it opts "
        "in again.",
        field="customer",
    )


def _profile_from_data(context: _Context, data: dict[str, Any], *, creating: bool = False) -> dict[str, Any]:
    profile = {key: value for key, value in data.items() if key != "custom_fields"}
    try:
        return _profile_apply(
            context.member,
            profile=profile,
            custom_fields=data.get("custom_fields"),
            at=context.occurred_at,
            creating=creating,
        )
    except InvalidData as error:
        raise error.under("data.") from None


def _opt_in(context: _Context, data: dict[str, Any]) -> LoyaltyEvent:
    """Enrol (or re-activate) the member; ``data`` may carry profile fields and ``custom_fields``."""
    if "status" in data:
        raise InvalidEventData({"data.status": "is set by the action (opt_in makes the member active)."})
    member = context.member
    creating = member.pk is None
    _profile_from_data(context, data, creating=creating)
    if creating or member.status != MemberStatus.ACTIVE:
        member.status = MemberStatus.ACTIVE
        member.opted_in_at = context.occurred_at
    if creating:
        _member_insert(member)
    event = _event_create(context, "opt_in", data)
    if creating:
        _standing_refresh(context, joining=True)
    return event


def _opt_out(context: _Context, data: dict[str, Any]) -> LoyaltyEvent:
    member = context.member
    if member.status != MemberStatus.OPTED_OUT:
        member.status = MemberStatus.OPTED_OUT
        member.opted_out_at = context.occurred_at
    return _event_create(context, "opt_out", data)


def _profile(context: _Context, data: dict[str, Any]) -> LoyaltyEvent:
    """Profile fields at the top of ``data``; custom field values in ``data.custom_fields``."""
    _profile_from_data(context, data)
    return _event_create(context, "profile", data)


def _items_clean(value: Any, errors: _Errors) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        errors.add("data.items", f"must be a list of objects, not {_json_type(value)}.")
        return []
    if len(value) > MAX_ITEMS:
        errors.add("data.items", f"must have at most {MAX_ITEMS} items (got {len(value)}).")
        return []
    items = []
    for index, item in enumerate(value):
        path = f"data.items[{index}]"
        if not isinstance(item, dict):
            errors.add(path, f"must be an object, not {_json_type(item)}.")
            continue
        product_id = item.get("product_id")
        if isinstance(product_id, int) and not isinstance(product_id, bool):
            product_id = str(product_id)
        cleaned = dict(item)
        cleaned["product_id"] = _string(
            product_id, f"{path}.product_id", errors, required=True, max_length=128
        )
        cleaned["product_name"] = _string(
            item.get("product_name"), f"{path}.product_name", errors, required=True
        )
        price = _money(item.get("price"), f"{path}.price", errors, required=True, allow_zero=True)
        quantity = _positive_int(
            item.get("quantity"), f"{path}.quantity", errors, required=True, maximum=1_000_000
        )
        cleaned["quantity"] = quantity
        for name, amount in (
            ("price", price),
            ("discount", _money(item.get("discount"), f"{path}.discount", errors, allow_zero=True)),
            ("subtotal", _money(item.get("subtotal"), f"{path}.subtotal", errors, allow_zero=True)),
        ):
            if amount is not None:
                cleaned[name] = _money_json(amount)
        items.append(cleaned)
    return items


def _checkout(context: _Context, data: dict[str, Any]) -> LoyaltyEvent:
    """A purchase: earns points by total and tier, counts towards purchase totals, may burn points."""
    errors = _Errors()
    transaction_id = _string(
        data.get("transaction_id"), "data.transaction_id", errors, required=True, max_length=128
    )
    total = _money(data.get("total"), "data.total", errors, required=True)
    currency = data.get("currency")
    rules = program_rules()
    rate = None
    if problem := currency_problem(currency):
        errors.add("data.currency", problem)
    else:
        currency = currency.upper()
        rate = rules.rate_of(currency)
        if rate is None:
            errors.add("data.currency", f"has no rate: the program's currency is {rules.currency}; staff set "
                       f"rates of other currencies in the program settings.")
    items = _items_clean(data.get("items"), errors)
    raw_burned = data.get("points_burned")
    no_burn = raw_burned is None or (raw_burned == 0 and not isinstance(raw_burned, bool))
    burned = 0 if no_burn else (_positive_int(raw_burned, "data.points_burned", errors) or 0)
    errors.raise_if_any(InvalidEventData)

    member = context.member
    if LoyaltyEvent.objects.filter(action="checkout", transaction_id=transaction_id).exists():
        raise _duplicate(transaction_id)
    # Purchase totals are kept in the program currency; the event keeps the checkout's own currency.
    program_total = (total * rate).quantize(Decimal("0.01"))
    if member.purchase_total + program_total > MAX_PURCHASE_TOTAL:
        raise InvalidEventData({"data.total": "would take the member's purchase total beyond its maximum."})
    multiplier = member.tier.multiplier if member.tier_id else Decimal(1)
    earning = member.status == MemberStatus.ACTIVE
    points = math.floor(program_total * rules.points_per_unit * multiplier) if earning else 0
    if member.points_earned + points > MAX_POINTS_BALANCE:
        raise InvalidEventData({"data.total": f"would take the member's points beyond {MAX_POINTS_BALANCE}."})
    if burned and burned > member.points_spendable:
        raise _insufficient(burned, member.points_spendable, "data.points_burned")

    event_data = {
        **data,
        "transaction_id": transaction_id,
        "total": _money_json(total),
        "currency": currency,
        "items": items,
        "points_earned": points,
    }
    if rate != 1:
        event_data["exchange_rate"] = str(rate)
        event_data["program_total"] = _money_json(program_total)
    if not earning:
        event_data["points_withheld"] = f"member is {member.status}"
    if burned:
        event_data["points_burned"] = burned
    event = _event_create(context, "checkout", event_data, transaction_id=transaction_id)
    if burned:
        _points_spend(context, burned, event, note=f"Burned at checkout {transaction_id}")
    if points:
        _points_credit(
            context,
            points,
            event,
            kind=LedgerKind.EARN,
            pending_days=rules.pending_days,
            note=f"Checkout {transaction_id}",
        )
    member.purchase_count += 1
    member.purchase_total += program_total
    if member.last_purchase_at is None or context.occurred_at >= member.last_purchase_at:
        member.last_purchase_at = context.occurred_at
        member.last_purchase = {
            "transaction_id": transaction_id,
            "total": event_data["total"],
            "currency": event_data["currency"],
            "items": items,
            "points_earned": points,
        }
    _standing_refresh(context)
    return event


def _refund(context: _Context, data: dict[str, Any]) -> LoyaltyEvent:
    """Take back (part of) an earlier checkout: its points in proportion, and its amount from purchase_total.

    Points the member has spent meanwhile are taken from other earnings; what cannot be taken
    back at all is reported in the event (``points_not_recovered``) rather than making balances negative.
    """
    errors = _Errors()
    transaction_id = _string(
        data.get("transaction_id"), "data.transaction_id", errors, required=True, max_length=128
    )
    amount = _money(data.get("amount"), "data.amount", errors)
    errors.raise_if_any(InvalidEventData)

    member = context.member
    checkout = member.events.filter(action="checkout", transaction_id=transaction_id).first()
    if checkout is None:
        # The same answer whether the id is unknown or another member's: nothing leaks.
        raise InvalidEventData({"data.transaction_id": "is not a checkout of this member."})
    checkout_total = _decimal_from_json(checkout.data.get("total", 0))
    refunded_before = sum(
        (
            _decimal_from_json(previous.data.get("amount", 0))
            for previous in member.events.filter(action__in=REFUND_ACTIONS, transaction_id=transaction_id)
        ),
        Decimal(0),
    )
    refundable = checkout_total - refunded_before
    if refundable <= 0:
        raise InvalidEventData({"data.transaction_id": "this checkout has been refunded in full already."})
    if amount is None:
        amount = refundable
    elif amount > refundable:
        raise InvalidEventData(
            {
                "data.amount": f"must be at most {refundable} (what remains of the checkout's {checkout_total})."
            }
        )
    # Cumulative rounding, so that refunding a checkout in parts takes back exactly what it earned.
    checkout_points = int(checkout.data.get("points_earned", 0) or 0)
    due = math.floor(checkout_points * (refunded_before + amount) / checkout_total) - math.floor(
        checkout_points * refunded_before / checkout_total
    )
    event_data = {**data, "transaction_id": transaction_id, "amount": _money_json(amount), "points_due": due}
    taken = _points_recoverable(member, due)
    event_data["points_refunded"] = taken
    if taken < due:
        event_data["points_not_recovered"] = due - taken
    event = _event_create(context, context.action, event_data, transaction_id=transaction_id)
    if taken:
        first = member.ledger.filter(event=checkout, kind=LedgerKind.EARN).first()
        _points_take_back(context, taken, event, first=first, note=f"Refund of {transaction_id}")
    checkout_rate = Decimal(str(checkout.data.get("exchange_rate", 1)))
    member.purchase_total = max(Decimal(0), member.purchase_total - (amount * checkout_rate).quantize(Decimal("0.01")))
    _standing_refresh(context)
    return event


def _point_add(context: _Context, data: dict[str, Any]) -> LoyaltyEvent:
    errors = _Errors()
    points = _positive_int(data.get("points"), "data.points", errors, required=True)
    reason = _string(data.get("reason"), "data.reason", errors)
    errors.raise_if_any(InvalidEventData)
    if context.member.status != MemberStatus.ACTIVE:
        raise _earning_refused(context.member)
    if context.member.points_earned + points > MAX_POINTS_BALANCE:
        raise InvalidEventData(
            {"data.points": f"would take the member's points beyond {MAX_POINTS_BALANCE}."}
        )
    event = _event_create(context, "point_add", {**data, "points": points})
    _points_credit(
        context, points, event, kind=LedgerKind.ADJUST, pending_days=0, note=reason or "Points added"
    )
    _standing_refresh(context)
    return event


def _point_spend(context: _Context, data: dict[str, Any]) -> LoyaltyEvent:
    errors = _Errors()
    points = _positive_int(data.get("points"), "data.points", errors, required=True)
    reason = _string(data.get("reason"), "data.reason", errors)
    errors.raise_if_any(InvalidEventData)
    spendable = context.member.points_spendable
    if points > spendable:
        raise _insufficient(points, spendable, "data.points")
    event = _event_create(context, context.action, {**data, "points": points})
    _points_spend(context, points, event, note=reason or "Points spent")
    _standing_refresh(context)
    return event


def _record_as_is(context: _Context, data: dict[str, Any]) -> LoyaltyEvent:
    """A declared custom action: recorded for workflows and Braze, no change to the member."""
    return _event_create(context, context.action, data)


_HANDLERS = {
    "opt_in": _opt_in,
    "opt_out": _opt_out,
    "profile": _profile,
    "checkout": _checkout,
    "refund": _refund,
    "partial_refund": _refund,
    "point_add": _point_add,
    "point_spend": _point_spend,
    "point_sub": _point_spend,
}

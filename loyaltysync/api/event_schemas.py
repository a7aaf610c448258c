"""The OpenAPI description of an event: one schema per action (a ``oneOf`` whose variants are told apart by
``action``), so each action's ``data`` is typed, with an example per action.

These serializers document; they do not validate. ``EventInputSerializer`` checks the shape and
``services.event_record`` checks what ``data`` means (one rule, one place): the types here follow those
services' checks.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from .. import attributes
from ..services import ENGINE_ACTIONS
from ..services.validation import ACTION_PATTERN, MAX_ITEMS, MAX_MONEY, MAX_POINTS_PER_EVENT
from .serializers import MemberIdField, StrictCharField, profile_field

# Actions the services handle themselves; any other matching ACTION_PATTERN is recorded as is.
HANDLED_ACTIONS = (
    "opt_in",
    "opt_out",
    "profile",
    "checkout",
    "refund",
    "partial_refund",
    "point_add",
    "point_spend",
    "point_sub",
)


class _EventData(serializers.Serializer):
    effective_timestamp = serializers.DateTimeField(
        required=False, help_text="When it happened (ISO 8601, not in the future); defaults to now."
    )


def _custom_fields() -> serializers.DictField:
    return serializers.DictField(
        required=False, help_text="Custom field values by key, checked against each field's type."
    )


class OptInData(_EventData):
    """Profile fields at the top level; custom field values in ``custom_fields``."""

    def get_fields(self):
        fields = super().get_fields()
        fields.update({a.name: profile_field(a) for a in attributes.ATTRIBUTES if a.writable and a.name != "status"})
        fields["custom_fields"] = _custom_fields()
        return fields


class ProfileData(_EventData):
    def get_fields(self):
        fields = super().get_fields()
        fields.update({a.name: profile_field(a) for a in attributes.ATTRIBUTES if a.writable})
        fields["custom_fields"] = _custom_fields()
        return fields


class OptOutData(_EventData):
    pass


class CheckoutItem(serializers.Serializer):
    product_id = StrictCharField(max_length=255)
    product_name = StrictCharField(max_length=255, required=False)
    price = serializers.FloatField(min_value=0, max_value=float(MAX_MONEY))
    quantity = serializers.IntegerField(min_value=1, max_value=MAX_POINTS_PER_EVENT)
    discount = serializers.FloatField(min_value=0, max_value=float(MAX_MONEY), required=False)
    subtotal = serializers.FloatField(min_value=0, max_value=float(MAX_MONEY), required=False)


class CheckoutData(_EventData):
    transaction_id = StrictCharField(max_length=128, help_text="Unique per checkout.")
    total = serializers.FloatField(min_value=0.01, max_value=float(MAX_MONEY))
    currency = serializers.RegexField(r"^[A-Z]{3}$", help_text="ISO 4217 code, e.g. EUR.")
    items = serializers.ListField(child=CheckoutItem(), required=False, max_length=MAX_ITEMS)
    points_burned = serializers.IntegerField(
        min_value=1, max_value=MAX_POINTS_PER_EVENT, required=False, help_text="Points spent with the purchase."
    )


class RefundData(_EventData):
    transaction_id = StrictCharField(max_length=128, help_text="An earlier checkout of this member.")
    amount = serializers.FloatField(
        min_value=0.01,
        max_value=float(MAX_MONEY),
        required=False,
        help_text="Defaults to what remains of the checkout.",
    )


class PointsData(_EventData):
    points = serializers.IntegerField(min_value=1, max_value=MAX_POINTS_PER_EVENT)
    reason = StrictCharField(max_length=255, required=False)


_RESERVED = sorted({*HANDLED_ACTIONS, *ENGINE_ACTIONS})


@extend_schema_field(
    {
        "type": "string",
        "pattern": ACTION_PATTERN.pattern,
        "not": {"enum": _RESERVED},
        "description": "A custom action the program declared (admin: Custom actions), not one of the above.",
    }
)
class CustomActionField(StrictCharField):
    pass


def _event(action: str | None, data: type[serializers.Serializer] | None) -> type[serializers.Serializer]:
    """The event serializer for one action (``None``: a declared custom action, data free-form)."""
    name = "".join(part.title() for part in (action or "custom").split("_")) + "Event"
    action_field = (
        serializers.ChoiceField(choices=[action]) if action else CustomActionField(max_length=64)
    )
    if data is None:
        data_field = serializers.DictField(required=False, help_text="Recorded as is.")
    else:
        # `data` may be left out when nothing in it is required (opt_out, profile).
        data_field = data(required=any(f.required for f in data().fields.values()))
    return type(
        name,
        (serializers.Serializer,),
        {"customer": MemberIdField(help_text="The member's id."), "action": action_field, "data": data_field},
    )


_DATA = {
    "opt_in": OptInData,
    "opt_out": OptOutData,
    "profile": ProfileData,
    "checkout": CheckoutData,
    "refund": RefundData,
    "partial_refund": RefundData,
    "point_add": PointsData,
    "point_spend": PointsData,
    "point_sub": PointsData,
}
EVENT_SCHEMAS = [_event(action, _DATA[action]) for action in HANDLED_ACTIONS] + [_event(None, None)]


def event_input(*, many: bool = False) -> PolymorphicProxySerializer:
    """One event as the schema documents it: ``oneOf`` the per-action schemas."""
    return PolymorphicProxySerializer(
        component_name="EventInput", serializers=EVENT_SCHEMAS, resource_type_field_name=None, many=many
    )


class BulkEventsRequestDoc(serializers.Serializer):
    events = event_input(many=True)


EVENT_EXAMPLES = [
    OpenApiExample(
        "checkout",
        value={
            "customer": "C-1001",
            "action": "checkout",
            "data": {
                "transaction_id": "T-5001",
                "total": 129.9,
                "currency": "EUR",
                "items": [{"product_id": "P-1", "product_name": "Running shoe", "price": 129.9, "quantity": 1}],
            },
        },
        request_only=True,
    ),
    OpenApiExample(
        "opt_in",
        value={
            "customer": "C-1002",
            "action": "opt_in",
            "data": {"email": "ada@example.com", "first_name": "Ada", "custom_fields": {"shoe_size": 40}},
        },
        request_only=True,
    ),
    OpenApiExample(
        "profile", value={"customer": "C-1001", "action": "profile", "data": {"last_name": "Lovelace"}},
        request_only=True,
    ),
    OpenApiExample("opt_out", value={"customer": "C-1001", "action": "opt_out", "data": {}}, request_only=True),
    OpenApiExample(
        "refund",
        value={"customer": "C-1001", "action": "refund", "data": {"transaction_id": "T-5001", "amount": 29.9}},
        request_only=True,
    ),
    OpenApiExample(
        "point_add",
        value={"customer": "C-1001", "action": "point_add", "data": {"points": 100, "reason": "Goodwill"}},
        request_only=True,
    ),
    OpenApiExample(
        "point_spend",
        value={"customer": "C-1001", "action": "point_spend", "data": {"points": 50, "reason": "Voucher"}},
        request_only=True,
    ),
    OpenApiExample(
        "custom action",
        value={"customer": "C-1001", "action": "review_written", "data": {"product_id": "P-1", "stars": 5}},
        request_only=True,
    ),
]

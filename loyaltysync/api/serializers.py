"""Serializers of the REST API: input shapes (checked before a service is called) and output shapes.

Input serializers check types and shapes only; the services check meaning (custom field
definitions, balances, duplicate transactions) and name the field of every problem.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail

from .. import attributes, services
from ..fieldtypes import FieldType
from ..models import CustomField, LoyaltyEvent, Member, PointsTransaction


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers instead of turning them into strings."""

    default_error_messages = {"invalid": "Must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class MemberIdField(StrictCharField):
    """A member id, checked by the services' own rule."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 255)
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)
        self.validators.append(_member_id_validator)


def _member_id_validator(value: str) -> None:
    problem = services.member_id_problem(value)
    if problem:
        raise serializers.ValidationError(problem[0].upper() + problem[1:])


# --- Errors (documentation of api.exceptions' shape) --------------------------------------------


class FieldProblemSerializer(serializers.Serializer):
    field = serializers.CharField(help_text="Path of the bad input, e.g. `data.total`, `status`, `body`.")
    code = serializers.CharField(
        help_text="Machine-readable: `required`, `invalid`, `invalid_choice`, `min_value`, `max_value`, "
        "`max_length`, `unknown_parameter`, `unknown_field`, or the error's own code."
    )
    message = serializers.CharField(help_text="The problem, for people.")


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(
        help_text="Stable machine-readable code, e.g. `invalid`, `member_not_found`."
    )
    message = serializers.CharField(help_text="What went wrong, for people.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Path of each bad input (e.g. `data.total`, `custom_fields.shoe_size`) -> its problems.",
    )
    details = FieldProblemSerializer(many=True, help_text="Each problem of `fields` with its own code.")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


# --- Members ---------------------------------------------------------------------------------------


class MemberSerializer(serializers.ModelSerializer):
    """A member as the API shows it: the registry's stored attributes. Points, purchases and tier are
    computed by the engine."""

    # A plain string: the address may be blank, which the "email" format would not allow.
    email = serializers.CharField(read_only=True, help_text="E-mail address (may be empty).")
    tier = serializers.CharField(
        source="tier.name", read_only=True, allow_null=True, help_text="Current tier name."
    )
    custom_fields = serializers.DictField(read_only=True, help_text="Custom field values by key.")
    last_purchase = serializers.DictField(
        read_only=True,
        allow_null=True,
        help_text='The last checkout: {"transaction_id", "total", "currency", "items", "points_earned"}.',
    )

    class Meta:
        model = Member
        fields = (*(a.name for a in attributes.ATTRIBUTES if a.stored), attributes.CUSTOM_FIELDS)
        read_only_fields = fields

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if data.get(attributes.CUSTOM_FIELDS):
            types = self._custom_types()
            data[attributes.CUSTOM_FIELDS] = {key: attributes.custom_value(types.get(key, ""), value)
                                              for key, value in data[attributes.CUSTOM_FIELDS].items()}
        return data

    def _custom_types(self) -> dict[str, str]:
        """The custom fields' types, read once per answer (a page of members shares them)."""
        root = self.root
        if not hasattr(root, "custom_types_read"):
            root.custom_types_read = dict(CustomField.objects.values_list("key", "type"))
        return root.custom_types_read


def profile_field(attribute: attributes.MemberAttribute) -> serializers.Field:
    """The input field of a profile attribute, shaped by its model field (length, choices, blank, null)."""
    model_field = Member._meta.get_field(attribute.name)
    help_text = str(model_field.help_text) or None
    if attribute.type == FieldType.DATE:
        return serializers.DateField(required=False, allow_null=model_field.null, help_text=help_text)
    if model_field.choices:
        return serializers.ChoiceField(
            choices=model_field.choices,
            required=False,
            allow_blank=model_field.blank,
            allow_null=attribute.consent,  # null: consent not given
            help_text=help_text,
        )
    return StrictCharField(
        required=False, allow_blank=model_field.blank, max_length=model_field.max_length, help_text=help_text
    )


class MemberWriteSerializer(serializers.Serializer):
    """Profile attributes (from the registry) and custom field values. Unknown and computed fields are
    refused by name, by the services' own check; the changed member's own ``member_id`` (context
    ``member``) is accepted unchanged and ignored."""

    custom_fields = serializers.DictField(
        required=False,
        help_text="Values by custom field key, checked against the field's type; null clears a value.",
    )

    def get_fields(self):
        fields = {a.name: profile_field(a) for a in attributes.ATTRIBUTES if a.writable}
        fields.update(super().get_fields())
        return fields

    def validate(self, attrs):
        refused = {}
        member = self.context.get("member")  # the member being changed, if any
        for key in self.initial_data:
            if key in self.fields:
                continue
            if key == "member_id" and member is not None and self.initial_data[key] == member.member_id:
                continue  # sent back unchanged (GET, edit, PATCH): nothing to change, so nothing to refuse
            problem = services.member_field_problem(key)
            if problem:
                known = key in attributes.BY_NAME or key in ("member_id", "id")
                refused[problem[0]] = [ErrorDetail(problem[1], code="invalid" if known else "unknown_field")]
        if refused:
            raise serializers.ValidationError(refused)
        return attrs


class MemberCreateSerializer(MemberWriteSerializer):
    member_id = MemberIdField(help_text="The shop's id of the member (becomes Braze's external_id).")


# --- Events ----------------------------------------------------------------------------------------


class LoyaltyEventSerializer(serializers.ModelSerializer):
    customer = serializers.CharField(source="member.member_id", read_only=True, help_text="The member's id.")
    data = serializers.DictField(read_only=True)

    class Meta:
        model = LoyaltyEvent
        fields = ("id", "customer", "action", "data", "occurred_at", "created_at", "source", "transaction_id")
        read_only_fields = fields


_PROFILE_NAMES = ", ".join(f"`{name}`" for name in attributes.PROFILE_FIELDS if name != "status")
EVENT_DATA_HELP = f"""Depends on `action`:
* `opt_in` (creates an unknown member), `profile`: profile fields ({_PROFILE_NAMES}; `status` for
  `profile` only) at the top level, custom field values in a nested `custom_fields` object.
* `opt_out`: nothing required.
* `checkout`: `transaction_id` (string, unique), `total` (positive number), `currency` (ISO 4217, e.g. EUR),
  `items` (list of `{{product_id, product_name, price, quantity, discount?, subtotal?}}`),
  `points_burned` (optional: points spent with the purchase).
* `refund`, `partial_refund`: `transaction_id` of an earlier checkout of this member, `amount`
  (optional: defaults to what remains of the checkout).
* `point_add`, `point_spend` / `point_sub`: `points` (positive integer), `reason` (optional).
* any other action: recorded as is.

Every action accepts `effective_timestamp` (ISO 8601, not in the future) to back-date the event."""


def _unknown_keys_refuse(data: Any, fields: Iterable[str], what: str) -> None:
    """A 400 naming each key of a body object that is none of ``fields`` (code ``unknown_field``)."""
    known = list(fields)
    if isinstance(data, dict) and (unknown := [key for key in data if key not in known]):
        message = f"is not a field of {what} ({', '.join(known)})."
        raise serializers.ValidationError({str(key): [ErrorDetail(message, code="unknown_field")] for key in unknown})


class EventInputSerializer(serializers.Serializer):
    customer = MemberIdField(help_text="The member's id.")
    action = StrictCharField(
        max_length=64,
        help_text="`opt_in`, `opt_out`, `profile`, `checkout`, `refund`, `partial_refund`, `point_add`, "
        "`point_spend`, `point_sub`, or a program-defined action matching `^[a-z][a-z0-9_]{0,63}$`.",
    )
    data = serializers.DictField(required=False, default=dict, help_text=EVENT_DATA_HELP)

    def to_internal_value(self, data):
        # A key misspelt at the top ("dta") recorded an event with no data: name it instead.
        _unknown_keys_refuse(data, self.fields, "an event")
        return super().to_internal_value(data)


class EventRecordedSerializer(serializers.Serializer):
    event = LoyaltyEventSerializer()
    member = MemberSerializer(help_text="The member's state after the event.")


class BulkEventsRequestSerializer(serializers.Serializer):
    """A bulk request. Only the shape of each event is checked here; what it means is checked per event."""

    events = serializers.ListField(
        child=EventInputSerializer(),
        allow_empty=True,
        max_length=settings.LOYALTY["BULK_EVENTS_MAX"],
        help_text=f"At most {settings.LOYALTY['BULK_EVENTS_MAX']} events, each recorded on its own.",
    )

    def to_internal_value(self, data):
        _unknown_keys_refuse(data, self.fields, "a bulk request")
        # Counted before each event is checked (a huge list is refused without looking at its items), against
        # the setting as it is now: tests and deployments may change it.
        if isinstance(data, dict) and isinstance(data.get("events"), list):
            limit = settings.LOYALTY["BULK_EVENTS_MAX"]
            if len(data["events"]) > limit:
                raise serializers.ValidationError(
                    {"events": [f"At most {limit} events per request (got {len(data['events'])})."]}
                )
        return super().to_internal_value(data)


class BulkEventResultSerializer(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the event in the request.")
    status = serializers.IntegerField(
        help_text="201 recorded; 400 invalid; 404 unknown member; 409 conflict; 500 unexpected error or 503 "
        "database busy (not recorded: send it again). Only events with 201 were recorded."
    )
    event = LoyaltyEventSerializer(required=False, help_text="The recorded event (when status is 201).")
    error = ErrorDetailSerializer(required=False, help_text="Why the event was refused (otherwise).")
    replayed = serializers.BooleanField(
        help_text="With an `Idempotency-Key`: this answer was given before (by an earlier or a concurrent request "
        "with the same key) and nothing was recorded now. Always false without the header.")


class BulkEventsResponseSerializer(serializers.Serializer):
    results = BulkEventResultSerializer(many=True)
    total = serializers.IntegerField()
    errors = serializers.IntegerField(help_text="How many events were refused.")


# --- Points ledger -----------------------------------------------------------------------------------


class LedgerEntrySerializer(serializers.ModelSerializer):
    event_id = serializers.IntegerField(read_only=True, allow_null=True, help_text="The event that made it.")

    class Meta:
        model = PointsTransaction
        fields = (
            "id", "kind", "points", "remaining", "note", "created_at", "available_at", "pending", "expires_at",
            "event_id",
        )
        read_only_fields = fields
        extra_kwargs = {
            "remaining": {"help_text": "What is left of an earning after spending and expiry."},
            "expires_at": {"help_text": "When what remains of this earning expires (null: never)."},
        }


class ExpiringLotSerializer(serializers.Serializer):
    expires_at = serializers.DateTimeField()
    points = serializers.IntegerField()


class ExpiringPointsSerializer(serializers.Serializer):
    days = serializers.IntegerField(help_text="The window looked at, in days from now.")
    until = serializers.DateTimeField(help_text="The end of the window.")
    points = serializers.IntegerField(help_text="Points that expire before `until` unless spent.")
    lots = ExpiringLotSerializer(many=True, help_text="Those points by expiry, soonest first.")


class MemberLedgerSerializer(serializers.Serializer):
    member_id = serializers.CharField()
    points_spendable = serializers.IntegerField()
    points_pending = serializers.IntegerField()
    expiring = ExpiringPointsSerializer()
    next = serializers.URLField(allow_null=True, help_text="The next page of `results` (older rows).")
    previous = serializers.URLField(allow_null=True)
    results = LedgerEntrySerializer(many=True, help_text="Ledger rows, newest first.")

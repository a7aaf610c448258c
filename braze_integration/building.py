"""Building what a claim sends: the mapping plan, one member's objects, outbox objects, the preview
of a member's next request, and Braze's data-point count.

It reads the database (members, their sync state and pending outbox items) but writes nothing and
sends nothing; the pure request shapes are in ``payloads``.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from loyaltysync.models import Member
from loyaltysync.sql_lists import one_param, value_rows

from . import payloads, standard_fields
from .fields import FieldContext, LoyaltyField, loyalty_fields
from .models import Connection, MemberSyncState, OutboxItem, OutboxKind, OutboxStatus, SendMode
from .standard_fields import NOT_SENT, STANDARD_FIELDS, SUBSCRIPTION_GROUPS

# What Braze is told of a consent that was given and is cleared since (no consent on record is no consent).
WITHDRAWN = "unsubscribed"
MAX_OUTBOX_PER_MEMBER = 40  # the rest waits for the next round; keeps one member within one request


@dataclass
class MemberWork:
    """One claimed member: what will be sent for it and what to record afterwards."""

    pk: int
    external_id: str
    version: int
    attempts: int
    last_sent: dict[str, Any]
    values: dict[str, Any] | None = None  # converted mapped values (all of them)
    sent_values: dict[str, Any] = field(default_factory=dict)  # the mapped values in this request
    outbox: list[OutboxItem] = field(default_factory=list)
    # More pending outbox items than one round carries: the member is not done after this round.
    outbox_left: bool = False
    # Mapped attributes left out because Braze cannot take their value: remote field -> why.
    unsendable: dict[str, str] = field(default_factory=dict)
    error: str = ""
    cleared: frozenset[str] = frozenset()  # attributes removed from Braze: forgotten once it accepted
    # The JSON of ``sent_values``, written once when the attributes object carries them alone: the
    # request's object is made of it, and for a member Braze was never sent anything it is also the
    # last-sent values to store.
    values_json: str | None = None

    def last_sent_after(self) -> dict[str, Any]:
        """The values Braze holds once it accepted this request."""
        merged = {**self.last_sent, **self.sent_values}
        return {name: value for name, value in merged.items() if name not in self.cleared}

    def last_sent_after_json(self) -> dict[str, Any] | str:
        """``last_sent_after()``, as JSON text when it was written already (see ``values_json``)."""
        if self.values_json is not None and not self.last_sent and not self.cleared:
            return self.values_json
        return self.last_sent_after()

    @property
    def group_key(self) -> int:
        return self.pk


@dataclass(frozen=True)
class OutboxOwner:
    item: OutboxItem
    member: MemberWork

    @property
    def group_key(self) -> int:
        return self.member.pk


@dataclass
class MappingPlan:
    """What a claim sends per member: the mapped attributes (``specs``), the subscription groups fed by
    consent fields (``groups``: loyalty field and group id), or, for ``braze_resync --clear``, the
    attributes to remove (``clear``: sent as null to the members Braze had them for)."""

    specs: list[tuple[LoyaltyField, payloads.AttributeSpec]]
    columns: list[str]
    context: FieldContext
    groups: list[tuple[LoyaltyField, str]] = field(default_factory=list)
    clear: frozenset[str] = frozenset()

    @classmethod
    def load(cls, connection: Connection, *, only: set[str] | None = None) -> MappingPlan:
        fields = loyalty_fields()
        specs, groups = [], []
        for mapping in connection.mappings.all():
            loyalty_field = fields.get(mapping.loyalty_field)
            if loyalty_field is None:
                continue
            if mapping.is_subscription_group:
                if only is None or only & {SUBSCRIPTION_GROUPS, mapping.remote_field, mapping.loyalty_field}:
                    groups.append((loyalty_field, mapping.remote_field))
            elif only is None or only & {mapping.remote_field, mapping.loyalty_field}:
                specs.append((loyalty_field, payloads.AttributeSpec(mapping.remote_field, loyalty_field.braze_type)))
        columns = sorted({c for f, _ in [*specs, *groups] for c in f.columns} | {"id", "member_id"})
        return cls(specs=specs, columns=columns, context=FieldContext.load(), groups=groups)

    @classmethod
    def clearing(cls, names: frozenset[str]) -> MappingPlan:
        """A plan that sends null for ``names`` to members whose last-sent values hold them, and nothing else."""
        return cls(specs=[], columns=["id", "member_id"], context=FieldContext(tier_thresholds=[]), clear=names)

    @property
    def empty(self) -> bool:
        return not (self.specs or self.groups or self.clear)

    def values(self, row: dict[str, Any]) -> dict[str, Any]:
        """The converted value of every mapped field; raises ``PayloadError`` naming the first bad one."""
        out, unsendable = self._converted(row)
        if unsendable:
            raise unsendable[min(unsendable)]
        return out

    def sendable_values(self, row: dict[str, Any], last_sent: dict[str, Any] | None = None,
                        maybe_sent: Collection[str] | bool | None = None) -> tuple[dict[str, Any], dict[str, str]]:
        """(what to send, remote field -> why it cannot go). One value Braze cannot take must not hold
        back the member's other attributes. Standard attributes are in Braze's format, subscription
        groups carry their states, a consent never given is left out (Braze keeps what it has), and a
        plan that clears adds null for each cleared attribute ``last_sent`` holds. ``maybe_sent``: see
        ``_converted``."""
        out, unsendable = self._converted(row, last_sent or {}, maybe_sent)
        nulls = {name: None for name in sorted(self.clear) if name in (last_sent or {})}
        return {**nulls, **out}, {name: f"{err.field}: {err.problem}" for name, err in unsendable.items()}

    def converted_value(self, loyalty_field: LoyaltyField, spec: payloads.AttributeSpec, row: dict[str, Any]) -> Any:
        """One mapped field's value as Braze takes it (a standard attribute in Braze's format), or
        ``NOT_SENT``; raises ``PayloadError`` when Braze cannot take it."""
        return _value_reader(loyalty_field, spec, self.context)(row)

    @functools.cached_property
    def _readers(self) -> list[tuple[str, Callable[[dict[str, Any]], Any]]]:
        return [(spec.remote_field, _value_reader(loyalty_field, spec, self.context))
                for loyalty_field, spec in self.specs]

    def _converted(self, row: dict[str, Any], last_sent: dict[str, Any] | None = None,
                   maybe_sent: Collection[str] | bool | None = None
                   ) -> tuple[dict[str, Any], dict[str, payloads.PayloadError]]:
        """The converted values and the unsendable ones. A consent cleared after Braze was sent a state
        for it goes as ``unsubscribed`` (``last_sent`` tells, or ``maybe_sent`` when a request that may
        have reached Braze carried one): Braze would otherwise keep the old one. (``maybe_sent`` true, a
        worker that stopped, says nothing of consents: a consent never given must not go as withdrawn.)"""
        last_sent = last_sent or {}
        maybe = maybe_sent if isinstance(maybe_sent, Collection) and not isinstance(maybe_sent, str) else ()
        out: dict[str, Any] = {}
        unsendable: dict[str, payloads.PayloadError] = {}
        for remote_field, read in self._readers:
            try:
                value = read(row)
            except payloads.PayloadError as err:
                unsendable[remote_field] = err
                continue
            if value is NOT_SENT and (last_sent.get(remote_field) is not None or remote_field in maybe):
                value = WITHDRAWN
            if value is not NOT_SENT:
                out[remote_field] = value
        groups = []
        sent_groups = {group.get("subscription_group_id") for group in last_sent.get(SUBSCRIPTION_GROUPS) or []
                       if isinstance(group, dict)}
        for loyalty_field, group_id in self.groups:
            try:
                state = standard_fields.subscription_group_state(loyalty_field.extract(row, self.context),
                                                                 f"{SUBSCRIPTION_GROUPS}[{group_id}]")
            except payloads.PayloadError as err:
                unsendable[f"{SUBSCRIPTION_GROUPS}[{group_id}]"] = err
                continue
            if state is NOT_SENT and (group_id in sent_groups or SUBSCRIPTION_GROUPS in maybe):
                state = WITHDRAWN
            if state is not NOT_SENT:
                groups.append({"subscription_group_id": group_id, "subscription_state": state})
        if groups:
            out[SUBSCRIPTION_GROUPS] = groups
        return out, unsendable


def _value_reader(loyalty_field: LoyaltyField, spec: payloads.AttributeSpec, context: FieldContext
                  ) -> Callable[[dict[str, Any]], Any]:
    """A mapped field's value from a member row, converted for Braze (see ``MappingPlan.converted_value``):
    the type's converter and the standard attribute's format looked up once per plan, not per value."""
    extract, where, max_array = loyalty_field.extract, spec.remote_field, payloads.MAX_ARRAY
    convert = payloads.converter_for(spec.braze_type)
    as_is = payloads.TAKEN_AS_IS.get(spec.braze_type)
    standard = STANDARD_FIELDS.get(where)
    formats = standard.convert if standard is not None else None

    def read(row: dict[str, Any]) -> Any:
        value = extract(row, context)
        if value is None:
            return None
        if as_is is None or not as_is(value):
            value = convert(value, where, max_array)
        return value if formats is None or value is None else formats(value, where)

    return read


def unsendable_note(unsendable: dict[str, str]) -> str:
    """What the member's sync state and Braze panel say about attributes that were not sent."""
    return "Not sent (Braze cannot take it; the other attributes were sent): " + "; ".join(
        unsendable[name] for name in sorted(unsendable))


def _same_number(sent: Any, value: Any) -> bool:
    """Whether a float was sent as ``sent``: PostgreSQL's ``jsonb`` keeps the last-sent 1e+308 as its
    309 digits, an integer that ``==`` does not take for the float (then it was sent again every time)."""
    return type(sent) is int and type(value) is float and float(sent) == value


def maybe_sent_names(stored: list[str] | bool | None, values: dict[str, Any]) -> Collection[str]:
    """The attributes ``MemberSyncState.maybe_sent`` names (``True``: every mapped one)."""
    if stored is True:
        return values.keys()
    return stored or ()


def attributes_to_send(values: dict[str, Any], last_sent: dict[str, Any], *, send_all: bool, force: bool,
                       maybe_sent: Collection[str] = ()) -> dict[str, Any]:
    """The mapped values a request carries: the changed ones (or all when ``send_all`` and any
    changed, or ``force``). A value that is empty and was never sent is left out: Braze has nothing
    to remove, and a ``null`` would cost a data point (a new member's empty fields, say).

    ``maybe_sent``: attributes a request that may have reached Braze carried, unanswered. Braze may hold
    that request's values rather than ``last_sent``'s, so they count as changed whatever their value:
    a value changed back to what was last accepted, or emptied (a ``null``), reaches Braze too."""
    changed = {k: v for k, v in values.items()
               if (k in last_sent and last_sent[k] != v and not _same_number(last_sent[k], v))
               or (k not in last_sent and v is not None) or k in maybe_sent}
    if force:
        return dict(values)
    if not changed:
        return {}
    if not send_all:
        return changed
    return {k: v for k, v in values.items() if v is not None or k in last_sent or k in maybe_sent}


def outbox_object(item: OutboxItem, external_id: str, app_id: str) -> tuple[str, dict]:
    """The request array and object of an event or purchase item."""
    data = item.payload
    if item.kind == OutboxKind.EVENT:
        return "events", payloads.event_object(external_id, name=data["name"], time=data["time"],
                                               properties=data.get("properties"), app_id=app_id)
    if item.kind == OutboxKind.PURCHASE:
        return "purchases", payloads.purchase_object(
            external_id, product_id=data["product_id"], currency=data["currency"], price=data["price"],
            quantity=data.get("quantity", 1), time=data["time"], properties=data.get("properties"), app_id=app_id)
    raise ValueError(item.kind)


FORCED_RESYNC = "resync-force"  # the trigger of a forced resync's requests


def build(connection: Connection, token: uuid.UUID, plan: MappingPlan, *, force: bool = False,
          forced_after: int | None = None) -> tuple[list[MemberWork], list[payloads.UserObjects]]:
    """Build every claimed member's objects. ``force`` sends mapped values even if Braze has them.

    ``forced_after`` (with ``force``): a member whose last request is a forced resync's request after
    this one is built as without ``force``. Braze has every value it sent, so a forced resync resumed
    after an interruption does not send again what was accepted before it stopped.

    Outbox items that cannot be built are marked failed on the returned ``MemberWork`` (not saved)."""
    claimed = MemberSyncState.objects.filter(claim_token=token)
    states = {pk: (version, attempts, last_sent, maybe_sent) for pk, version, attempts, last_sent, maybe_sent
              in claimed.values_list("pk", "version", "attempts", "last_sent_values", "maybe_sent")}
    forced_already: set[int] = set()
    if force and forced_after is not None:
        forced_already = set(claimed.filter(last_request_id__gt=forced_after, last_request__trigger=FORCED_RESYNC)
                             .values_list("pk", flat=True))
    rows = value_rows(Member.objects.filter(pk__in=one_param(states)), plan.columns)
    outbox: dict[int, list[OutboxItem]] = {}
    outbox_left: set[int] = set()
    for item in OutboxItem.objects.filter(member_id__in=one_param(states), status=OutboxStatus.PENDING).order_by("id"):
        bucket = outbox.setdefault(item.member_id, [])
        if len(bucket) < MAX_OUTBOX_PER_MEMBER:
            bucket.append(item)
        else:
            outbox_left.add(item.member_id)
    works, users = [], []
    send_all = connection.send_mode == SendMode.ALL_MAPPED_FIELDS
    for row in rows:
        version, attempts, last_sent, maybe_sent = states[row["id"]]
        work = MemberWork(pk=row["id"], external_id=row["member_id"], version=version, attempts=attempts,
                          last_sent=last_sent or {}, outbox=outbox.get(row["id"], []),
                          outbox_left=row["id"] in outbox_left)
        works.append(work)
        objects: list[tuple[str, dict, Any]] = []
        try:
            payloads.check_external_id(work.external_id)
        except payloads.PayloadError as err:
            work.error = f"Cannot send {err.field}: {err.problem}"
            work.values = None
        else:
            work.values, work.unsendable = plan.sendable_values(row, work.last_sent, maybe_sent)
            work.cleared = plan.clear
        attributes: dict[str, Any] = {}
        if work.values is not None:
            attributes = attributes_to_send(work.values, work.last_sent, send_all=send_all,
                                            force=force and work.pk not in forced_already,
                                            maybe_sent=maybe_sent_names(maybe_sent, work.values))
            work.sent_values = dict(attributes)
        merge_objects = False
        for item in work.outbox:
            if item.kind == OutboxKind.ATTRIBUTES:
                attributes.update(item.payload.get("attributes", {}))
                merge_objects = merge_objects or bool(item.payload.get("merge_objects"))
        if attributes and not work.error.startswith("Cannot send external_id"):
            objects.append(("attributes", payloads.attributes_object(work.external_id, attributes,
                                                                     merge_objects=merge_objects), work))
            if not any(item.kind == OutboxKind.ATTRIBUTES for item in work.outbox):  # the mapped values alone
                work.values_json = payloads.encode_text(work.sent_values)
        for item in work.outbox:
            if item.kind == OutboxKind.ATTRIBUTES:
                continue
            try:
                array, obj = outbox_object(item, work.external_id, connection.app_id)
            except (payloads.PayloadError, KeyError, ValueError, TypeError) as err:
                item.last_error = f"Cannot send: {err}"
                item.status = OutboxStatus.FAILED
                continue
            objects.append((array, obj, OutboxOwner(item, work)))
        users.append(payloads.UserObjects(key=work.pk, objects=objects))
    return works, users


def works_of(plan: payloads.RequestPlan) -> list[MemberWork]:
    """The members whose objects a request carries, each once."""
    seen: dict[int, MemberWork] = {}
    for owners in plan.owners.values():
        for owner in owners:
            work = owner.member if isinstance(owner, OutboxOwner) else owner
            seen.setdefault(work.pk, work)
    return list(seen.values())


def member_body_preview(connection: Connection, member: Member) -> dict[str, Any]:
    """The request body the member's next sync would send (all mapped fields and pending items)."""
    plan = MappingPlan.load(connection)
    row = Member.objects.filter(pk=member.pk).values(*plan.columns).get()
    body: dict[str, Any] = {}
    try:
        values, unsendable = plan.sendable_values(row)
        body["attributes"] = [payloads.attributes_object(member.member_id, values)]
    except payloads.PayloadError as err:
        return {"error": f"Cannot send {err.field}: {err.problem}"}
    if unsendable:
        body["unsendable"] = [unsendable[name] for name in sorted(unsendable)]
    for item in OutboxItem.objects.filter(member=member, status=OutboxStatus.PENDING):
        if item.kind == OutboxKind.ATTRIBUTES:
            body["attributes"][0].update(item.payload.get("attributes", {}))
            continue
        try:
            array, obj = outbox_object(item, member.member_id, connection.app_id)
        except (payloads.PayloadError, KeyError, ValueError) as err:
            body.setdefault("unsendable", []).append(str(err))
            continue
        body.setdefault(array, []).append(obj)
    return body


_FLAT = frozenset({str, int, float, bool})
_FREE_KEYS = payloads.RESERVED_ATTRIBUTE_KEYS | standard_fields.UNBILLED


def data_points_of(obj: dict[str, Any]) -> int:
    """Braze's billing unit: each attribute written, each key of a nested object; deletes (null), country,
    language and subscription states are free."""
    points = 0
    for key, value in obj.items():
        if value is None or key in _FREE_KEYS:
            continue
        if type(value) in _FLAT:
            points += 1
        elif isinstance(value, dict):
            points += _leaf_count(value) if value and not _has_operator(value) else 1
        elif isinstance(value, list) and value and _all_objects(value):
            for item in value:
                points += _leaf_count(item) or 1
        else:
            points += 1
    return points


def _has_operator(value: dict) -> bool:
    for key in value:
        if key.startswith("$"):
            return True
    return False


def _all_objects(values: list) -> bool:
    for value in values:
        if not isinstance(value, dict):
            return False
    return True


def _leaf_count(value: dict) -> int:
    count = 0
    for item in value.values():
        if isinstance(item, dict) and item and "$time" not in item:
            count += _leaf_count(item)
        else:
            count += 1
    return count

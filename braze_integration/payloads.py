"""Building `/users/track` payloads: pure functions, no database, no HTTP.

Mapped values in, plain dicts out. Each value is converted by the Braze type of its field, with the
loyalty domain's readers of each type (``loyaltysync.fieldtypes``) and Braze's own formatting:
dates become ISO 8601 at the top level and ``{"$time": ...}`` inside objects, decimals become
numbers, arrays and objects are checked against Braze's limits. A value that cannot be sent raises
``PayloadError`` naming the attribute and the problem, so one member's bad value never holds back
the others.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from loyaltysync import fieldtypes


class BrazeType(StrEnum):
    INTEGER = "integer"
    FLOAT = "float"
    STRING = "string"
    BOOLEAN = "boolean"
    DATE = "date"
    ARRAY = "array"
    OBJECT = "object"
    ARRAY_OF_OBJECTS = "array_of_objects"


MAX_STRING = 255
MAX_ARRAY = 500
MAX_NESTED_BYTES = 100 * 1024
MAX_EVENT_PROPERTIES_BYTES = 100 * 1024
MAX_PURCHASE_PROPERTIES_BYTES = 50 * 1024
MAX_EXTERNAL_ID_BYTES = 987
MAX_PROPERTIES = 256
MAX_INTEGER = 2**63
# Levels of objects/arrays inside one value. Braze documents no limit; the loyalty program allows 20, and
# a limit keeps every walk over a value (here, in the sandbox, in json) far from Python's recursion limit.
MAX_NESTING = 50
# Keys that make an object an update operation for Braze ({"inc": 1}, {"add": [...]}), not a value.
_OPERATION_KEYS = ({"inc"}, {"add"}, {"remove"}, {"add", "remove"})
DEFAULT_MAX_OBJECTS = 75
# Keys that belong to the attributes object itself, not to the profile.
RESERVED_ATTRIBUTE_KEYS = frozenset({"external_id", "user_alias", "braze_id", "_update_existing_only", "_merge_objects"})
RESERVED_EVENT_PROPERTY_KEYS = frozenset({"time", "event_name"})
RESERVED_PURCHASE_PROPERTY_KEYS = frozenset({"time", "product_id", "quantity", "event_name", "price", "currency"})
_NESTED_KEY = re.compile(r"^[^\s.$]{1,255}\Z")
_CURRENCY = re.compile(r"^[A-Z]{3}\Z")


class PayloadError(ValueError):
    """A value that Braze would refuse; ``field`` names where it is."""

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def remote_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a Braze custom attribute name, or ``None`` when it can."""
    if not name or not name.strip():
        return "must not be empty"
    if len(name) > MAX_STRING:
        return f"must be at most {MAX_STRING} characters"
    if name.startswith("$"):
        return "must not start with '$'"
    if name in RESERVED_ATTRIBUTE_KEYS:
        return f"'{name}' is reserved by Braze"
    return None


def format_time(value: dt.datetime | dt.date) -> str:
    """ISO 8601 in UTC with a ``Z``, as Braze documents it; a date stays a date."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return value.isoformat()


def _parse_time(value: Any, where: str) -> str:
    if isinstance(value, dt.datetime | dt.date):
        return format_time(value)
    if isinstance(value, str):
        parsed = fieldtypes.parse_moment(value)
        if parsed is None:
            raise PayloadError(where, f"{value!r} is not an ISO 8601 date")
        return format_time(parsed)
    raise PayloadError(where, f"expected a date, got {type(value).__name__}")


def _number(value: Any, where: str, *, integer: bool) -> int | float:
    if isinstance(value, bool) or value is None:
        raise PayloadError(where, f"expected a number, got {json.dumps(value)}")
    if isinstance(value, str):
        try:
            value = fieldtypes.number_from_text(value)
        except fieldtypes.TypeProblem as problem:
            raise PayloadError(
                where, f"expected a number, got {value!r}" if problem.code == "invalid" else problem.message
            ) from None
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise PayloadError(where, "expected a finite number")
        if integer:
            # Before int(): int(Decimal("1e999999999")) would take minutes and gigabytes.
            _check_integer_range(value, where)
        else:
            return _finite_float(value, where)
        if value != value.to_integral_value():
            raise PayloadError(where, f"expected an integer, got {value}")
        return int(value)
    if isinstance(value, int):
        if integer:
            _check_integer_range(value, where)
            return int(value)
        return _finite_float(value, where)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PayloadError(where, "expected a finite number")
        if integer:
            if not value.is_integer():
                raise PayloadError(where, f"expected an integer, got {value}")
            return int(value)
        return value
    raise PayloadError(where, f"expected a number, got {type(value).__name__}")


def _preview(value: Any) -> str:
    """A short repr for messages: a container is named, not printed (it may be huge or very deep)."""
    if isinstance(value, dict | list | tuple | set):
        return f"a {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_integer_range(value: Decimal | int, where: str) -> None:
    if not -MAX_INTEGER <= value < MAX_INTEGER:
        raise PayloadError(where, "is outside the 64-bit integer range")


def _finite_float(value: Decimal | int, where: str) -> float:
    try:
        number = float(value)  # an int beyond a double's range raises; a Decimal becomes inf
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise PayloadError(where, "is too large for a number")
    return number


def _string(value: Any, where: str) -> str:
    if isinstance(value, dict | list) or value is None:
        raise PayloadError(where, f"expected a string, got {type(value).__name__}")
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_STRING:
        raise PayloadError(where, f"is {len(text)} characters long; Braze keeps at most {MAX_STRING}")
    return text


class _NestedProblem(Exception):
    """Raised deep inside a nested value; each level adds its key on the way up, so the happy path
    builds no path strings."""

    def __init__(self, problem: str):
        self.problem = problem
        self.path: list[str] = []


# Every node of a nested value (a key, or a scalar) takes at most 1,534 bytes of JSON as Braze counts
# it (UTF-8): 255 characters of at most 6 bytes each (a control character's \u escape; an emoji is 4),
# quotes and a separator. So fewer nodes than this can never reach Braze's 100 KB.
_NODES_BELOW_LIMIT = MAX_NESTED_BYTES // 1534


def _nested(value: Any, where: str) -> Any:
    """A value inside an object or an array of objects: dates become ``{"$time": ...}``. A value Braze
    takes as it is (what a JSON column holds, within Braze's limits) is returned itself, not copied."""
    nodes = _as_is_nodes(value, 0)
    if nodes >= 0:
        converted = value
    else:
        try:
            converted, nodes = _nested_walk(value, 0)
        except _NestedProblem as problem:
            raise PayloadError(where + "".join(reversed(problem.path)), problem.problem) from None
    if nodes >= _NODES_BELOW_LIMIT:
        _check_size(converted, where, MAX_NESTED_BYTES)
    return converted


# Object keys already found valid: keys repeat across members (a program's objects share their shape),
# so most are checked once. Bounded, so that arbitrary keys cannot grow it without limit.
_GOOD_KEYS: set[str] = set()
_GOOD_KEYS_MAX = 10_000


def _nested_key_ok(key: Any) -> bool:
    if key in _GOOD_KEYS:
        return True
    if not isinstance(key, str) or not _NESTED_KEY.match(key):
        return False
    if len(_GOOD_KEYS) < _GOOD_KEYS_MAX:
        _GOOD_KEYS.add(key)
    return True


def _as_is_nodes(value: Any, depth: int) -> int:
    """How many nodes ``value`` has (as ``_nested_walk`` counts them) when Braze takes it exactly as it
    is: dicts, lists, strings, booleans, None, integers and finite floats, within Braze's limits. Else
    -1, and ``_nested_walk`` converts it or names the problem. It checks without building a copy:
    most objects are as a JSON column gave them."""
    kind = type(value)
    if kind is str:
        return 1 if len(value) <= MAX_STRING else -1
    if (kind is bool or value is None or (kind is int and -MAX_INTEGER <= value < MAX_INTEGER)
            or (kind is float and math.isfinite(value))):
        return 1
    if depth >= MAX_NESTING:
        return -1
    nodes = 0
    if kind is dict:
        for key, item in value.items():
            if not _nested_key_ok(key) or (count := _as_is_nodes(item, depth + 1)) < 0:
                return -1
            nodes += count + 1
        return nodes
    if kind is list:
        for item in value:
            if (count := _as_is_nodes(item, depth + 1)) < 0:
                return -1
            nodes += count + 1
        return nodes
    return -1


def _nested_walk(value: Any, depth: int) -> tuple[Any, int]:
    if isinstance(value, str):  # the common leaves first: a string, a boolean, an integer in range
        if len(value) > MAX_STRING:
            raise _NestedProblem(f"is {len(value)} characters long; Braze keeps at most {MAX_STRING}")
        return value, 1
    kind = type(value)
    if kind is bool or (kind is int and -MAX_INTEGER <= value < MAX_INTEGER):
        return value, 1
    if isinstance(value, dict | list | tuple) and depth >= MAX_NESTING:
        raise _NestedProblem(f"is nested more than {MAX_NESTING} levels deep")
    if isinstance(value, dict):
        out, nodes = {}, 0
        for key, item in value.items():
            if not _nested_key_ok(key):
                raise _NestedProblem(f"object key {key!r} must be 1-255 characters without spaces, '.' or '$'")
            try:
                out[key], count = _nested_walk(item, depth + 1)
            except _NestedProblem as problem:
                problem.path.append(f".{key}")
                raise
            nodes += count + 1
        return out, nodes
    if isinstance(value, list | tuple):
        items, nodes = [], 0
        for index, item in enumerate(value):
            try:
                converted, count = _nested_walk(item, depth + 1)
            except _NestedProblem as problem:
                problem.path.append(f"[{index}]")
                raise
            items.append(converted)
            nodes += count + 1
        return items, nodes
    if isinstance(value, dt.datetime | dt.date):
        return {"$time": format_time(value if isinstance(value, dt.datetime) else _midnight(value))}, 1
    if isinstance(value, Decimal | float):
        # A finite Decimal such as 1E+400 is still infinite as a JSON number.
        try:
            return _number(value, "", integer=False), 1
        except PayloadError as err:
            raise _NestedProblem(err.problem) from None
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            _check_integer_range(value, "")
        except PayloadError as err:
            raise _NestedProblem(err.problem) from None
    return value, 1


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _check_size(value: Any, where: str, max_bytes: int) -> None:
    size = fieldtypes.json_bytes(value)  # as Braze measures it
    if size > max_bytes:
        raise PayloadError(where, f"is {size:,} bytes of JSON; Braze takes at most {max_bytes // 1024} KB")


def _to_boolean(value: Any, where: str, max_array: int) -> bool:
    try:
        return fieldtypes.to_boolean(value)
    except fieldtypes.TypeProblem:
        raise PayloadError(where, f"expected true or false, got {_preview(value)}") from None


def _to_array(value: Any, where: str, max_array: int) -> list:
    if not isinstance(value, list | tuple | set | frozenset):
        raise PayloadError(where, f"expected an array, got {type(value).__name__}")
    items = list(value)
    if len(items) > max_array:
        raise PayloadError(where, f"has {len(items)} elements; the limit is {max_array}")
    out = []
    for index, item in enumerate(items):
        if type(item) is str and len(item) <= MAX_STRING:  # the common case, checked without the general path
            out.append(item)
        elif isinstance(item, dict | list | tuple) or item is None:
            raise PayloadError(f"{where}[{index}]", "arrays hold strings and numbers only")
        elif isinstance(item, Decimal | float):
            out.append(_number(item, f"{where}[{index}]", integer=False))
        elif isinstance(item, bool | int):
            out.append(item)
        else:
            out.append(_string(item, f"{where}[{index}]"))
    return out


def _to_object(value: Any, where: str, max_array: int) -> dict:
    if not isinstance(value, dict):
        raise PayloadError(where, f"expected an object, got {type(value).__name__}")
    if set(value) in _OPERATION_KEYS:
        raise PayloadError(
            where, f"an object with only the keys {sorted(value)} would be read by Braze as an update "
            "operation, not stored; add another key"
        )
    return _nested(value, where)


def _to_array_of_objects(value: Any, where: str, max_array: int) -> list:
    if not isinstance(value, list | tuple):
        raise PayloadError(where, f"expected an array of objects, got {type(value).__name__}")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise PayloadError(f"{where}[{index}]", "expected an object")
    return _nested(list(value), where)


Converter = Callable[[Any, str, int], Any]

# Each Braze type's conversion of a value that is not None: (value, where, max_array) -> what Braze takes.
CONVERTERS: dict[str, Converter] = {
    BrazeType.INTEGER: lambda value, where, max_array: _number(value, where, integer=True),
    BrazeType.FLOAT: lambda value, where, max_array: _number(value, where, integer=False),
    BrazeType.STRING: lambda value, where, max_array: _string(value, where),
    BrazeType.BOOLEAN: _to_boolean,
    BrazeType.DATE: lambda value, where, max_array: _parse_time(value, where),
    BrazeType.ARRAY: _to_array,
    BrazeType.OBJECT: _to_object,
    BrazeType.ARRAY_OF_OBJECTS: _to_array_of_objects,
}


# Per Braze type, a check that a value is already what Braze takes, exactly as its converter would
# return it (the common case, checked without the converter's general path).
TAKEN_AS_IS: dict[str, Callable[[Any], bool]] = {
    BrazeType.STRING: lambda value: type(value) is str and len(value) <= MAX_STRING,
    BrazeType.INTEGER: lambda value: type(value) is int and -MAX_INTEGER <= value < MAX_INTEGER,
    BrazeType.FLOAT: lambda value: type(value) is float and math.isfinite(value),
    BrazeType.BOOLEAN: lambda value: type(value) is bool,
}


def converter_for(braze_type: BrazeType | str) -> Converter:
    """The conversion of ``braze_type`` (for code that converts many values of one type)."""
    try:
        return CONVERTERS[braze_type]  # StrEnum members hash as their strings: plain strings find them too
    except KeyError:
        raise ValueError(f"Unknown Braze type {braze_type!r}") from None


def convert_value(braze_type: BrazeType | str, value: Any, *, where: str = "value", max_array: int = MAX_ARRAY) -> Any:
    """Convert one loyalty value to what Braze takes for ``braze_type``. ``None`` stays ``None``
    (Braze removes the attribute)."""
    if value is None:
        return None
    return converter_for(braze_type)(value, where, max_array)


@dataclass(frozen=True)
class AttributeSpec:
    """One attribute to send: its Braze name and type."""

    remote_field: str
    braze_type: BrazeType


def attributes_object(external_id: str, attributes: Mapping[str, Any], *, merge_objects: bool = False) -> dict[str, Any]:
    """The attributes object for one member: identifier first, then its attributes.

    ``merge_objects`` asks Braze to merge nested objects instead of replacing them (needed for
    ``$update`` on arrays of objects)."""
    check_external_id(external_id)
    obj: dict[str, Any] = {"external_id": external_id}
    obj.update(attributes)
    if merge_objects:
        obj["_merge_objects"] = True
    return obj


def check_external_id(external_id: str) -> None:
    if not external_id:
        raise PayloadError("external_id", "must not be empty")
    if len(external_id.encode()) > MAX_EXTERNAL_ID_BYTES:
        raise PayloadError("external_id", f"must be at most {MAX_EXTERNAL_ID_BYTES} bytes")


def _properties(properties: Mapping[str, Any] | None, where: str, reserved: frozenset[str], max_bytes: int
                ) -> dict[str, Any]:
    if not properties:
        return {}
    if not isinstance(properties, Mapping):
        raise PayloadError(where, "properties must be an object")
    if len(properties) > MAX_PROPERTIES:
        raise PayloadError(where, f"has {len(properties)} properties; Braze takes at most {MAX_PROPERTIES}")
    out = {}
    for key, value in properties.items():
        if not isinstance(key, str) or not key or len(key) > MAX_STRING or key.startswith("$"):
            raise PayloadError(f"{where}.{key}", "property names are 1-255 characters and do not start with '$'")
        if key in reserved:
            raise PayloadError(f"{where}.{key}", f"'{key}' is reserved by Braze")
        # Top-level datetimes are ISO strings; inside arrays/objects Braze wants plain values.
        if isinstance(value, dt.datetime | dt.date):
            out[key] = format_time(value)
        elif isinstance(value, dict | list | tuple):
            out[key] = _nested(value, f"{where}.{key}")
        elif isinstance(value, Decimal | float):
            out[key] = _number(value, f"{where}.{key}", integer=False)
        elif isinstance(value, str):
            out[key] = _string(value, f"{where}.{key}")
        elif value is None or isinstance(value, bool | int):
            out[key] = value
        else:
            raise PayloadError(f"{where}.{key}", f"cannot send a {type(value).__name__}")
    _check_size(out, where, max_bytes)  # 256 plain properties can pass 50 KB too
    return out


def event_object(external_id: str, *, name: str, time: dt.datetime | str, properties: Mapping[str, Any] | None = None,
                 app_id: str = "") -> dict[str, Any]:
    """A Braze custom event object."""
    check_external_id(external_id)
    if not isinstance(name, str) or not name or len(name) > MAX_STRING or name.startswith("$"):
        raise PayloadError("name", "event names are 1-255 characters and do not start with '$'")
    obj: dict[str, Any] = {"external_id": external_id, "name": name, "time": _parse_time(time, "time")}
    props = _properties(properties, "properties", RESERVED_EVENT_PROPERTY_KEYS, MAX_EVENT_PROPERTIES_BYTES)
    if props:
        obj["properties"] = props
    if app_id:
        obj["app_id"] = app_id
    return obj


def purchase_object(external_id: str, *, product_id: str, currency: str, price: Any, quantity: int = 1,
                    time: dt.datetime | str, properties: Mapping[str, Any] | None = None, app_id: str = "") -> dict[str, Any]:
    """A Braze purchase object."""
    check_external_id(external_id)
    product = _string(product_id, "product_id")
    if not product:
        raise PayloadError("product_id", "must not be empty")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise PayloadError("currency", f"{currency!r} is not an ISO 4217 code such as EUR")
    qty = _number(quantity, "quantity", integer=True)
    if not 1 <= qty <= 100:
        raise PayloadError("quantity", f"must be between 1 and 100, got {qty}")
    obj: dict[str, Any] = {
        "external_id": external_id, "product_id": product, "currency": currency,
        "price": _number(price, "price", integer=False), "quantity": qty, "time": _parse_time(time, "time"),
    }
    props = _properties(properties, "properties", RESERVED_PURCHASE_PROPERTY_KEYS, MAX_PURCHASE_PROPERTIES_BYTES)
    if props:
        obj["properties"] = props
    if app_id:
        obj["app_id"] = app_id
    return obj


@dataclass
class RequestPlan:
    """One `/users/track` request: the body and, per array, which item each index belongs to."""

    attributes: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    purchases: list[dict] = field(default_factory=list)
    # owners["attributes"][i] is the caller's handle for attributes[i] (e.g. a member or an outbox item)
    owners: dict[str, list[Any]] = field(default_factory=lambda: {"attributes": [], "events": [], "purchases": []})

    @property
    def object_count(self) -> int:
        return len(self.attributes) + len(self.events) + len(self.purchases)

    def body(self) -> dict[str, list[dict]]:
        return {name: objs for name, objs in (("attributes", self.attributes), ("events", self.events),
                                               ("purchases", self.purchases)) if objs}

    def add(self, array: str, obj: dict, owner: Any) -> None:
        getattr(self, array).append(obj)
        self.owners[array].append(owner)


@dataclass
class UserObjects:
    """Everything one member contributes to a request; kept together so one user's updates share a request."""

    key: Any
    objects: list[tuple[str, dict, Any]]  # (array, object, owner)


def plan_requests(users: Iterable[UserObjects], *, max_objects: int = DEFAULT_MAX_OBJECTS,
                  per_array_limit: int | None = None) -> list[RequestPlan]:
    """Pack users' objects into requests of at most ``max_objects`` objects in all (and at most
    ``per_array_limit`` per array, for accounts on the older rule). A user's objects stay in one request
    unless they alone are more than a request holds."""
    plans: list[RequestPlan] = []
    current = RequestPlan()

    def fits(plan: RequestPlan, objs: list[tuple[str, dict, Any]]) -> bool:
        if plan.object_count + len(objs) > max_objects:
            return False
        if per_array_limit is not None:
            for array in ("attributes", "events", "purchases"):
                if len(getattr(plan, array)) + sum(1 for a, _, _ in objs if a == array) > per_array_limit:
                    return False
        return True

    for user in users:
        if not user.objects:
            continue
        if not fits(current, user.objects) and current.object_count:
            plans.append(current)
            current = RequestPlan()
        for array, obj, owner in user.objects:
            if not fits(current, [(array, obj, owner)]):
                plans.append(current)
                current = RequestPlan()
            current.add(array, obj, owner)
    if current.object_count:
        plans.append(current)
    return plans


def split_plan(plan: RequestPlan) -> tuple[RequestPlan, RequestPlan] | None:
    """Halve a request by owner (a member's objects stay together), to isolate a bad object.
    ``None`` when it holds one owner only."""
    entries = [(array, obj, owner) for array in ("attributes", "events", "purchases")
               for obj, owner in zip(getattr(plan, array), plan.owners[array], strict=True)]
    groups: dict[Any, list] = {}
    for entry in entries:
        groups.setdefault(_group_key(entry[2]), []).append(entry)
    if len(groups) < 2:
        return None
    keys = list(groups)
    halves = (keys[: len(keys) // 2], keys[len(keys) // 2:])
    out = []
    for half in halves:
        part = RequestPlan()
        for key in half:
            for array, obj, owner in groups[key]:
                part.add(array, obj, owner)
        out.append(part)
    return out[0], out[1]


def _group_key(owner: Any) -> Any:
    return getattr(owner, "group_key", owner)


# One encoder for every call: json.dumps with options builds a new one each time.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_text(value: Any) -> str:
    """JSON as sent: compact, not ASCII-escaped, no NaN or infinity."""
    return _ENCODER.encode(value)


def encode(body: Mapping[str, Any]) -> bytes:
    """JSON bytes as sent: compact, UTF-8."""
    return encode_text(body).encode()


def attributes_object_json(external_id: str, values_json: str) -> str:
    """``encode_text(attributes_object(external_id, values))`` from ``values_json = encode_text(values)``."""
    head = '{"external_id":' + encode_text(external_id)
    return head + "}" if values_json == "{}" else head + "," + values_json[1:]


def encode_plan(plan: RequestPlan, written: Callable[[Any], str | None]) -> bytes:
    """``encode(plan.body())``, taking the JSON of an object whose owner has it already
    (``written(owner)``, else ``None``) instead of writing it again."""
    arrays = []
    for name, objs in (("attributes", plan.attributes), ("events", plan.events), ("purchases", plan.purchases)):
        if objs:
            texts = [written(owner) or encode_text(obj) for obj, owner in zip(objs, plan.owners[name], strict=True)]
            arrays.append(f'"{name}":[{",".join(texts)}]')
    return ("{" + ",".join(arrays) + "}").encode()

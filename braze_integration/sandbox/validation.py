"""Pure validation of one Braze `POST /users/track` request body.

No I/O and no profile state: the same body always gives the same answer. Request-level problems
(too many objects, nothing to process) raise `RequestRejected`; problems with single objects are
returned as Braze-like per-object errors so the valid objects can still be applied.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypedDict

from .standard_attributes import STANDARD_ATTRIBUTES, standard_attribute_error

InputArray = Literal["attributes", "events", "purchases"]
INPUT_ARRAYS: tuple[InputArray, ...] = ("attributes", "events", "purchases")

NO_VALID_DATA_MESSAGE = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
MAX_INPUT_LENGTH_MESSAGE = "Max Input Length Exceeded"

IDENTIFIER_KEYS = ("external_id", "user_alias", "braze_id")
# Keys of an attributes object that steer the update rather than name an attribute.
CONTROL_KEYS = frozenset({"_update_existing_only", "_merge_objects"})
NON_ATTRIBUTE_KEYS = frozenset(IDENTIFIER_KEYS) | CONTROL_KEYS

EVENT_RESERVED_PROPERTY_KEYS = frozenset({"time", "event_name"})
PURCHASE_RESERVED_PROPERTY_KEYS = frozenset(
    {"time", "product_id", "quantity", "event_name", "price", "currency"}
)
_CURRENCY_CODE = re.compile(r"[A-Z]{3}")
_FORBIDDEN_NESTED_KEY_CHARS = frozenset(" .$")
# Scalar types a JSON array of "simple" values may hold.
_SCALAR_TYPES = (str, int, float, bool)


class ObjectError(TypedDict):
    """One rejected object, shaped like an entry of Braze's `errors` array."""

    type: str
    input_array: InputArray
    index: int


@dataclass(frozen=True, slots=True)
class ValidationLimits:
    """Braze's documented limits; the defaults are the safe values of the reference notes."""

    # Newer plans: at most this many objects across the three arrays together.
    max_objects: int | None = 75
    # Older plans: at most this many objects per array. When set, it replaces `max_objects`.
    per_array_limit: int | None = None
    max_external_id_bytes: int = 987
    max_string_length: int = 255
    max_key_length: int = 255
    max_array_length: int = 500
    # Byte limits; None means "not checked" (see `for_body_size`).
    max_nested_object_bytes: int | None = 100 * 1024
    max_event_properties: int = 256
    max_event_properties_bytes: int | None = 100 * 1024
    max_purchase_properties_bytes: int | None = 50 * 1024
    max_purchase_quantity: int = 100

    def for_body_size(self, body_size: int) -> ValidationLimits:
        """These limits without the byte-size checks a body of `body_size` bytes cannot fail.

        No part of a body encodes larger than the whole body, so a 20 KB request needs no
        100 KB check on its nested objects; skipping the re-encoding keeps validation cheap.
        """
        size_fields = (
            "max_nested_object_bytes",
            "max_event_properties_bytes",
            "max_purchase_properties_bytes",
        )
        skipped = {name: None for name in size_fields if (getattr(self, name) or 0) >= body_size}
        return dataclasses.replace(self, **skipped) if skipped else self


DEFAULT_LIMITS = ValidationLimits()


class RequestRejected(Exception):
    """The whole request is refused: Braze answers 400 and writes nothing."""

    def __init__(self, message: str, errors: list[ObjectError] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors: list[ObjectError] = errors or []


@dataclass(slots=True)
class ValidatedRequest:
    """The valid objects of a request, in the order sent, plus the errors of the others."""

    attributes: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    purchases: list[dict[str, Any]] = field(default_factory=list)
    errors: list[ObjectError] = field(default_factory=list)

    @property
    def processed_count(self) -> int:
        return len(self.attributes) + len(self.events) + len(self.purchases)


def object_counts(body: Any) -> dict[InputArray, int]:
    """Count the objects a body carries per array, whatever their validity (for stats and logs)."""
    if not isinstance(body, dict):
        return {name: 0 for name in INPUT_ARRAYS}
    return {name: len(value) if isinstance(value := body.get(name), list) else 0 for name in INPUT_ARRAYS}


def validate_track_request(
    body: Any, limits: ValidationLimits = DEFAULT_LIMITS, *, body_size: int | None = None
) -> ValidatedRequest:
    """Check a decoded `/users/track` body against Braze's rules.

    Returns the valid objects and the per-object errors. Raises `RequestRejected` when the
    request as a whole is refused: not an object, an array that is not an array, too many
    objects, nothing at all, or no valid object (then with the per-object errors attached).
    `body_size`, the encoded body's length if known, lets size checks that cannot fail be skipped.
    """
    if body_size is not None:
        limits = limits.for_body_size(body_size)
    if not isinstance(body, dict):
        raise RequestRejected(NO_VALID_DATA_MESSAGE)
    arrays: dict[InputArray, list[Any]] = {}
    for name in INPUT_ARRAYS:
        value = body.get(name)
        if value is None:
            arrays[name] = []
        elif isinstance(value, list):
            arrays[name] = value
        else:
            raise RequestRejected(f"'{name}' must be an array of objects.")

    total = sum(len(objects) for objects in arrays.values())
    if limits.per_array_limit is not None:
        if any(len(objects) > limits.per_array_limit for objects in arrays.values()):
            raise RequestRejected(MAX_INPUT_LENGTH_MESSAGE)
    elif limits.max_objects is not None and total > limits.max_objects:
        raise RequestRejected(MAX_INPUT_LENGTH_MESSAGE)
    if total == 0:
        raise RequestRejected(NO_VALID_DATA_MESSAGE)

    result = ValidatedRequest()
    checks = (
        ("attributes", attributes_object_error, result.attributes),
        ("events", event_object_error, result.events),
        ("purchases", purchase_object_error, result.purchases),
    )
    for name, check, valid in checks:
        for index, obj in enumerate(arrays[name]):
            try:
                problem = check(obj, limits)
            except RecursionError:  # json.loads decodes deeper than the recursive checks can walk
                problem = f"The object is nested too deeply to be processed (index {index})."
            if problem is None:
                valid.append(obj)
            else:
                result.errors.append({"type": problem, "input_array": name, "index": index})
    if result.processed_count == 0:
        raise RequestRejected(NO_VALID_DATA_MESSAGE, result.errors)
    return result


def parse_iso8601(text: str) -> datetime | None:
    """Parse an ISO 8601 date or datetime (trailing `Z` allowed); None if it is not one."""
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


# --- identifiers -------------------------------------------------------------------------


def identifier_error(obj: dict[str, Any], limits: ValidationLimits = DEFAULT_LIMITS) -> str | None:
    """Exactly one of external_id, user_alias, braze_id, each well formed."""
    present = [key for key in IDENTIFIER_KEYS if key in obj]
    if len(present) != 1:
        return (
            "Exactly one of 'external_id', 'user_alias' or 'braze_id' must be provided, "
            f"received {len(present)}."
        )
    key = present[0]
    value = obj[key]
    if key == "external_id":
        if not isinstance(value, str) or not value:
            return f"Received {_preview(value)} as an external_id, expected a non-empty string."
        # At most 4 bytes a character: short ids need no encoding to be measured.
        too_long_possible = len(value) * 4 > limits.max_external_id_bytes
        if too_long_possible and len(value.encode("utf-8")) > limits.max_external_id_bytes:
            return (
                f"The external_id is longer than {limits.max_external_id_bytes} bytes "
                f"({len(value.encode('utf-8'))} bytes)."
            )
    elif key == "braze_id":
        if not isinstance(value, str) or not value:
            return f"Received {_preview(value)} as a braze_id, expected a non-empty string."
    else:
        if not isinstance(value, dict) or set(value) != {"alias_name", "alias_label"}:
            return "The user_alias must be an object with exactly 'alias_name' and 'alias_label'."
        if not all(isinstance(part, str) and part for part in value.values()):
            return "The user_alias 'alias_name' and 'alias_label' must be non-empty strings."
    update_existing_only = obj.get("_update_existing_only")
    if update_existing_only is not None and not isinstance(update_existing_only, bool):
        return "'_update_existing_only' must be a boolean."
    return None


# --- attributes --------------------------------------------------------------------------


def attributes_object_error(obj: Any, limits: ValidationLimits = DEFAULT_LIMITS) -> str | None:
    """Validate one attributes object; the first problem found, or None."""
    if not isinstance(obj, dict):
        return "Attributes object must be a JSON object."
    if (problem := identifier_error(obj, limits)) is not None:
        return problem
    merge_objects = obj.get("_merge_objects", False)
    if not isinstance(merge_objects, bool):
        return "'_merge_objects' must be a boolean."
    max_key_length = limits.max_key_length
    max_string_length = limits.max_string_length
    for name, value in obj.items():
        if name in NON_ATTRIBUTE_KEYS:
            continue
        # Inline checks for the common case (a sane name, a scalar value): this loop runs for
        # every attribute of every object, and the sandbox must not be the bottleneck.
        if not name or len(name) > max_key_length or name[0] == "$":
            return _attribute_name_error(name, limits)
        if name in STANDARD_ATTRIBUTES:
            if (problem := standard_attribute_error(name, value)) is not None:
                return problem
            continue
        kind = type(value)
        if kind is str:
            if len(value) <= max_string_length:
                continue
        elif value is None or kind is int or kind is float or kind is bool:
            continue
        if (problem := _attribute_value_error(name, value, merge_objects, limits)) is not None:
            return problem
    return None


def _attribute_name_error(name: str, limits: ValidationLimits) -> str:
    if not name:
        return "Attribute names must not be empty."
    if len(name) > limits.max_key_length:
        return f"Attribute name '{name[:40]}...' is longer than {limits.max_key_length} characters."
    return f"Attribute name '{name}' must not start with '$'."


def _attribute_value_error(
    name: str, value: Any, merge_objects: bool, limits: ValidationLimits
) -> str | None:
    kind = type(value)
    # Fast path first: most attributes are scalars.
    if value is None or kind is bool or kind is int or kind is float:
        return None
    if kind is str:
        if len(value) > limits.max_string_length:
            return (
                f"Attribute '{name}' value is longer than {limits.max_string_length} characters "
                f"({len(value)})."
            )
        return None
    if kind is list:
        return _array_value_error(name, value, limits)
    if kind is dict:
        return _attribute_operation_error(name, value, merge_objects, limits)
    return f"Attribute '{name}' has an unsupported value type {kind.__name__}."


def _array_value_error(name: str, values: list[Any], limits: ValidationLimits) -> str | None:
    """A set of scalars, or a set of objects (array of objects)."""
    if not values:
        return None
    if all(type(item) is dict for item in values):
        for position, item in enumerate(values):
            if (problem := _nested_object_error(item, f"{name}[{position}]", limits)) is not None:
                return problem
        return _size_error(name, values, limits.max_nested_object_bytes)
    return _scalar_array_error(name, values, limits)


def _scalar_array_error(name: str, values: Any, limits: ValidationLimits) -> str | None:
    if not isinstance(values, list):
        return f"Attribute '{name}' array operation expects an array."
    if len(values) > limits.max_array_length:
        return (
            f"Attribute '{name}' array has {len(values)} elements, "
            f"more than the maximum of {limits.max_array_length}."
        )
    for item in values:
        if not isinstance(item, _SCALAR_TYPES):
            return f"Attribute '{name}' array must hold only strings, numbers and booleans, or only objects."
        if type(item) is str and len(item) > limits.max_string_length:
            return f"Attribute '{name}' array element is longer than {limits.max_string_length} characters."
    return None


def _attribute_operation_error(
    name: str, value: dict[str, Any], merge_objects: bool, limits: ValidationLimits
) -> str | None:
    """Operator objects (inc, add/remove, $add/$remove/$update) or a nested object."""
    keys = value.keys()
    if keys == {"inc"}:
        amount = value["inc"]
        if type(amount) not in (int, float):
            return f"Attribute '{name}' 'inc' expects a number, received {_preview(amount)}."
        return None
    if keys and keys <= {"add", "remove"}:
        for operation in keys:
            if (problem := _scalar_array_error(name, value[operation], limits)) is not None:
                return problem
        return None
    if keys == {"$add"}:
        return _object_list_error(name, "$add", value["$add"], limits)
    if keys == {"$remove"}:
        return _identifier_list_error(name, "$remove", value["$remove"], limits, new_object=False)
    if keys == {"$update"}:
        if not merge_objects:
            return (
                f"Attribute '{name}' uses '$update', which requires '_merge_objects': true "
                "on the attributes object."
            )
        return _identifier_list_error(name, "$update", value["$update"], limits, new_object=True)
    if any(key.startswith("$") for key in keys):
        if "$time" in keys:
            return f"Attribute '{name}': '$time' is only supported inside nested objects."
        return f"Attribute '{name}' uses an unknown operator or a key starting with '$'."
    if (problem := _nested_object_error(value, name, limits)) is not None:
        return problem
    return _size_error(name, value, limits.max_nested_object_bytes)


def _object_list_error(name: str, operation: str, items: Any, limits: ValidationLimits) -> str | None:
    if not isinstance(items, list) or not all(type(item) is dict for item in items):
        return f"Attribute '{name}' '{operation}' expects an array of objects."
    for position, item in enumerate(items):
        path = f"{name}.{operation}[{position}]"
        if (problem := _nested_object_error(item, path, limits)) is not None:
            return problem
    return _size_error(name, items, limits.max_nested_object_bytes)


def _identifier_list_error(
    name: str, operation: str, items: Any, limits: ValidationLimits, *, new_object: bool
) -> str | None:
    """`$remove` / `$update` entries: which array elements to touch (and how, for $update)."""
    expected = {"$identifier_key", "$identifier_value"}
    if new_object:
        expected.add("$new_object")
    if not isinstance(items, list):
        return f"Attribute '{name}' '{operation}' expects an array."
    for position, item in enumerate(items):
        path = f"{name}.{operation}[{position}]"
        if not isinstance(item, dict) or set(item) != expected:
            return f"Attribute '{path}' must have exactly the keys {sorted(expected)}."
        identifier_key = item["$identifier_key"]
        if not isinstance(identifier_key, str) or not identifier_key:
            return f"Attribute '{path}' '$identifier_key' must be a non-empty string."
        if not isinstance(item["$identifier_value"], _SCALAR_TYPES):
            return f"Attribute '{path}' '$identifier_value' must be a string, number or boolean."
        if new_object:
            replacement = item["$new_object"]
            if not isinstance(replacement, dict):
                return f"Attribute '{path}' '$new_object' must be an object."
            problem = _nested_object_error(replacement, f"{path}.$new_object", limits)
            if problem is not None:
                return problem
    return _size_error(name, items, limits.max_nested_object_bytes)


def _nested_object_error(obj: dict[str, Any], path: str, limits: ValidationLimits) -> str | None:
    """Keys without spaces, '.' or '$'; dates only as a well-formed {"$time": ...}."""
    for key, value in obj.items():
        if not isinstance(key, str) or not key:
            return f"Nested attribute '{path}' has an empty key."
        if len(key) > limits.max_key_length:
            return f"Nested attribute key in '{path}' is longer than {limits.max_key_length}."
        if not _FORBIDDEN_NESTED_KEY_CHARS.isdisjoint(key):
            return f"Nested attribute key '{path}.{key}' must not contain spaces, '.' or '$'."
        if (problem := _nested_value_error(value, f"{path}.{key}", limits)) is not None:
            return problem
    return None


def _nested_value_error(value: Any, path: str, limits: ValidationLimits) -> str | None:
    if type(value) is dict:
        if "$time" in value:
            return _time_object_error(value, path)
        return _nested_object_error(value, path, limits)
    if type(value) is list:
        for position, item in enumerate(value):
            problem = _nested_value_error(item, f"{path}[{position}]", limits)
            if problem is not None:
                return problem
    return None


def _time_object_error(value: dict[str, Any], path: str) -> str | None:
    moment = value["$time"]
    if len(value) != 1:
        return f"Nested attribute '{path}': a '$time' object must have no other keys."
    if not isinstance(moment, str) or parse_iso8601(moment) is None:
        return f"Nested attribute '{path}' has an invalid '$time' value {_preview(moment)}."
    return None


# --- events and purchases -----------------------------------------------------------------


def event_object_error(obj: Any, limits: ValidationLimits = DEFAULT_LIMITS) -> str | None:
    """Validate one event object; the first problem found, or None."""
    if not isinstance(obj, dict):
        return "Event object must be a JSON object."
    if (problem := identifier_error(obj, limits)) is not None:
        return problem
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        return "Event 'name' is required and must be a non-empty string."
    if len(name) > limits.max_string_length:
        return f"Event 'name' is longer than {limits.max_string_length} characters."
    if name.startswith("$"):
        return f"Event name '{name}' must not start with '$'."
    if (problem := _time_field_error(obj, "Event")) is not None:
        return problem
    if (problem := _app_id_error(obj, "Event")) is not None:
        return problem
    properties = obj.get("properties")
    if properties is None:
        return None
    if not isinstance(properties, dict):
        return "Event 'properties' must be an object."
    if len(properties) > limits.max_event_properties:
        return (
            f"Event has {len(properties)} properties, more than the maximum of {limits.max_event_properties}."
        )
    return _properties_error(
        properties,
        owner="Event",
        reserved=EVENT_RESERVED_PROPERTY_KEYS,
        max_bytes=limits.max_event_properties_bytes,
        limits=limits,
    )


def purchase_object_error(obj: Any, limits: ValidationLimits = DEFAULT_LIMITS) -> str | None:
    """Validate one purchase object; the first problem found, or None."""
    if not isinstance(obj, dict):
        return "Purchase object must be a JSON object."
    if (problem := identifier_error(obj, limits)) is not None:
        return problem
    product_id = obj.get("product_id")
    if not isinstance(product_id, str) or not product_id:
        return "Purchase 'product_id' is required and must be a non-empty string."
    if len(product_id) > limits.max_string_length:
        return f"Purchase 'product_id' is longer than {limits.max_string_length} characters."
    currency = obj.get("currency")
    if not isinstance(currency, str) or not _CURRENCY_CODE.fullmatch(currency):
        return (
            f"Purchase 'currency' must be a three-letter uppercase ISO 4217 code, "
            f"received {_preview(currency)}."
        )
    price = obj.get("price")
    if type(price) not in (int, float):
        return f"Purchase 'price' is required and must be a number, received {_preview(price)}."
    quantity = obj.get("quantity", 1)
    if type(quantity) is not int or not 1 <= quantity <= limits.max_purchase_quantity:
        return (
            f"Purchase 'quantity' must be an integer from 1 to {limits.max_purchase_quantity}, "
            f"received {_preview(quantity)}."
        )
    if (problem := _time_field_error(obj, "Purchase")) is not None:
        return problem
    if (problem := _app_id_error(obj, "Purchase")) is not None:
        return problem
    properties = obj.get("properties")
    if properties is None:
        return None
    if not isinstance(properties, dict):
        return "Purchase 'properties' must be an object."
    return _properties_error(
        properties,
        owner="Purchase",
        reserved=PURCHASE_RESERVED_PROPERTY_KEYS,
        max_bytes=limits.max_purchase_properties_bytes,
        limits=limits,
    )


def _time_field_error(obj: dict[str, Any], owner: str) -> str | None:
    moment = obj.get("time")
    if not isinstance(moment, str) or parse_iso8601(moment) is None:
        return f"{owner} 'time' is required and must be an ISO 8601 string, got {_preview(moment)}."
    return None


def _app_id_error(obj: dict[str, Any], owner: str) -> str | None:
    app_id = obj.get("app_id")
    if app_id is not None and not isinstance(app_id, str):
        return f"{owner} 'app_id' must be a string."
    return None


def _properties_error(
    properties: dict[str, Any],
    *,
    owner: str,
    reserved: frozenset[str],
    max_bytes: int | None,
    limits: ValidationLimits,
) -> str | None:
    for key, value in properties.items():
        if not key:
            return f"{owner} property keys must not be empty."
        if len(key) > limits.max_key_length:
            return f"{owner} property key is longer than {limits.max_key_length} characters."
        if key.startswith("$"):
            return f"{owner} property key '{key}' must not start with '$'."
        if key in reserved:
            return f"{owner} property key '{key}' is reserved."
        if type(value) is str and len(value) > limits.max_string_length:
            return f"{owner} property '{key}' is longer than {limits.max_string_length} characters."
    return _size_error(f"{owner.lower()} properties", properties, max_bytes)


# --- helpers ------------------------------------------------------------------------------


def _size_error(name: str, value: Any, max_bytes: int | None) -> str | None:
    if max_bytes is None:
        return None
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > max_bytes:
        return f"'{name}' is {size} bytes, larger than the maximum of {max_bytes} bytes."
    return None


def _preview(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."

"""The workflows' rules engine: pure Python, no database, no Django models.

Typed text (numbers, true/false, dates) is read with the loyalty domain's readers of each type
(``loyaltysync.fieldtypes``), so a value means the same here as in the API and in Braze's payloads.

Modelled on NetBox's ``extras/conditions.py``: a ``Condition`` checks its operator and value when
it is built, a ``ConditionSet`` combines conditions (and nested sets) with AND / OR, and both
evaluate against a plain dict addressed by dotted paths (``member.tier``, ``event.data.total``,
``previous.points_earned``). Every problem with a rule raises one exception, ``ConditionError``,
naming the part of the rule that is wrong (``attribute``, ``operator`` or ``value``), so the
models' ``clean()`` can show it next to the field. Evaluation itself never raises for data it did
not expect: a missing attribute or a value of another type simply does not match.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from loyaltysync import fieldtypes


class ConditionError(ValueError):
    """A rule that cannot be built. ``field`` is ``attribute``, ``operator`` or ``value``."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class AttrType(StrEnum):
    """What kind of value an attribute holds; decides which operators and values fit."""

    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    LIST = "list"
    OBJECT = "object"
    ANY = "any"  # free-form data, e.g. a loyalty event's ``data``


class Operator(StrEnum):
    EQUALS = "equals"
    NOT_EQUALS = "not_equals"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    IN = "in"
    NOT_IN = "not_in"
    CONTAINS = "contains"
    EXISTS = "exists"
    CHANGED = "changed"


class Logic(StrEnum):
    AND = "and"
    OR = "or"


_ORDERED = {AttrType.NUMBER, AttrType.DATE, AttrType.DATETIME, AttrType.ANY}
_SCALAR = {AttrType.STRING, AttrType.NUMBER, AttrType.BOOLEAN, AttrType.DATE, AttrType.DATETIME, AttrType.ANY}
OPERATORS_FOR_TYPE: dict[AttrType, frozenset[Operator]] = {
    attr_type: frozenset(
        {Operator.EQUALS, Operator.NOT_EQUALS, Operator.EXISTS, Operator.CHANGED}
        | ({Operator.GT, Operator.GTE, Operator.LT, Operator.LTE} if attr_type in _ORDERED else set())
        | ({Operator.IN, Operator.NOT_IN} if attr_type in _SCALAR else set())
        | ({Operator.CONTAINS} if attr_type in {AttrType.STRING, AttrType.LIST, AttrType.OBJECT, AttrType.ANY} else set())
    )
    for attr_type in AttrType
}
# ``changed`` compares ``member.<x>`` with ``previous.<x>``: only member attributes have a previous value.
CHANGED_PREFIX = "member."
PREVIOUS_PREFIX = "previous."

_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*\Z")
MISSING = object()


# --- paths and the attribute catalogue ------------------------------------------------------------


def path_problem(path: Any) -> str | None:
    """Why ``path`` is not a dotted path such as ``event.data.total``; ``None`` when it is one."""
    if not isinstance(path, str) or not path:
        return "must not be empty"
    if not _PATH.match(path):
        return f'"{path}" is not a dotted path of letters, digits and underscores (e.g. member.tier)'
    return None


def lookup(data: Mapping[str, Any], path: str) -> Any:
    """The value at dotted ``path`` in ``data`` (list elements by index), or ``MISSING``."""
    current: Any = data
    for part in path.split("."):
        if isinstance(current, Mapping):
            if part not in current:
                return MISSING
            current = current[part]
        elif isinstance(current, list | tuple) and part.isdigit():
            index = int(part)
            if index >= len(current):
                return MISSING
            current = current[index]
        else:
            return MISSING
    return current


@dataclass(frozen=True)
class AttributeSchema:
    """The attributes a rule may name: exact paths with their type, and open prefixes whose keys
    are free (``event.data.`` -> any key, of any type). Paths below an object, list or free-form
    attribute (``member.last_purchase.total``) are allowed and untyped."""

    known: Mapping[str, AttrType]
    open_prefixes: Mapping[str, AttrType] = field(default_factory=dict)

    def type_of(self, path: str) -> AttrType | None:
        if path in self.known:
            return self.known[path]
        for prefix in sorted(self.open_prefixes, key=len, reverse=True):
            if path.startswith(prefix) and len(path) > len(prefix):
                return self.open_prefixes[prefix]
        parts = path.split(".")
        for end in range(len(parts) - 1, 0, -1):
            parent = self.known.get(".".join(parts[:end]))
            if parent in (AttrType.OBJECT, AttrType.LIST, AttrType.ANY):
                return AttrType.ANY
            if parent is not None:
                return None
        return None

    def names(self) -> list[str]:
        return sorted(self.known)


# --- values ----------------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _json_kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if _is_number(value):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def parse_date(value: Any) -> dt.date | dt.datetime | None:
    """A date or an aware datetime (UTC when no zone is given) from an ISO string or a date; else ``None``."""
    return fieldtypes.parse_moment(value)


def _check_scalar(attr_type: AttrType, value: Any, where: str = "value") -> Any:
    """``value`` as the type of the attribute, or ``ConditionError``."""
    match attr_type:
        case AttrType.STRING:
            if not isinstance(value, str):
                raise ConditionError(where, f"expected text, got {_json_kind(value)}")
        case AttrType.NUMBER:
            if not _is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
                raise ConditionError(where, f"expected a number, got {_json_kind(value)}")
        case AttrType.BOOLEAN:
            if not isinstance(value, bool):
                raise ConditionError(where, f"expected true or false, got {_json_kind(value)}")
        case AttrType.DATE | AttrType.DATETIME:
            if not isinstance(value, str) or parse_date(value) is None:
                raise ConditionError(where, "expected a date as YYYY-MM-DD or an ISO 8601 date and time")
            if attr_type == AttrType.DATE and isinstance(parse_date(value), dt.datetime):
                raise ConditionError(where, "expected a date as YYYY-MM-DD (without a time)")
        case AttrType.ANY:
            if isinstance(value, Mapping | list | tuple):
                raise ConditionError(where, f"expected a single value, got {_json_kind(value)}")
    return value


def _check_value(attr_type: AttrType, operator: Operator, value: Any) -> Any:
    if operator in (Operator.EXISTS, Operator.CHANGED):
        if value is None:
            return True
        if not isinstance(value, bool):
            raise ConditionError("value", f'"{operator}" takes true, false or nothing, got {_json_kind(value)}')
        return value
    if operator in (Operator.IN, Operator.NOT_IN):
        if not isinstance(value, list | tuple) or not value:
            raise ConditionError("value", f'"{operator}" needs a non-empty list of values')
        return [_check_scalar(attr_type, item, "value") for item in value]
    if operator in (Operator.GT, Operator.GTE, Operator.LT, Operator.LTE):
        if attr_type == AttrType.ANY:
            if not _is_number(value) and parse_date(value) is None:
                raise ConditionError("value", f'"{operator}" compares with a number or a date, got {_json_kind(value)}')
            return value
        return _check_scalar(attr_type, value)
    if operator == Operator.CONTAINS:
        if attr_type in (AttrType.STRING, AttrType.OBJECT):
            if not isinstance(value, str) or not value:
                what = "text to look for" if attr_type == AttrType.STRING else "the key to look for"
                raise ConditionError("value", f'"contains" needs {what}')
            return value
        return _check_scalar(AttrType.ANY, value)
    # equals / not_equals
    if attr_type == AttrType.LIST:
        if not isinstance(value, list | tuple):
            raise ConditionError("value", f"expected a list, got {_json_kind(value)}")
        return list(value)
    if attr_type == AttrType.OBJECT:
        if not isinstance(value, Mapping):
            raise ConditionError("value", f"expected an object, got {_json_kind(value)}")
        return dict(value)
    if value is None:
        return None  # equals nothing: the attribute is empty
    return _check_scalar(attr_type, value)


def parse_text(attr_type: AttrType | str, operator: Operator | str, text: str) -> Any:
    """The typed value of a condition from what a person typed in a form.

    Numbers, ``true``/``false`` and dates are read by the attribute's type; ``in`` / ``not_in``
    take a JSON list or comma-separated values; objects and lists are JSON; free-form attributes
    read JSON when the text is JSON (``100``, ``true``, ``"100"``) and plain text otherwise.
    """
    attr_type, operator = AttrType(attr_type), _operator(operator)
    text = text if isinstance(text, str) else ""
    stripped = text.strip()
    if operator in (Operator.EXISTS, Operator.CHANGED):
        if not stripped:
            return None
        return _parse_scalar_text(AttrType.BOOLEAN, stripped)
    if operator in (Operator.IN, Operator.NOT_IN):
        if stripped.startswith("["):
            try:
                items = json.loads(stripped)
            except ValueError:
                raise ConditionError("value", "is not a valid JSON list") from None
            if not isinstance(items, list):
                raise ConditionError("value", "is not a list")
            return [item if not isinstance(item, str) else _parse_scalar_text(attr_type, item) for item in items]
        parts = [part.strip() for part in stripped.split(",")] if stripped else []
        return [_parse_scalar_text(attr_type, part) for part in parts if part]
    if attr_type in (AttrType.LIST, AttrType.OBJECT):
        try:
            return json.loads(stripped)
        except ValueError:
            raise ConditionError("value", f"expected JSON ({'a list' if attr_type == AttrType.LIST else 'an object'})") from None
    if operator == Operator.CONTAINS and attr_type == AttrType.STRING:
        return text
    return _parse_scalar_text(attr_type, text)


def _parse_scalar_text(attr_type: AttrType, text: str) -> Any:
    stripped = text.strip()
    match attr_type:
        case AttrType.STRING:
            return text
        case AttrType.NUMBER:
            try:
                number = fieldtypes.number_from_text(stripped)
            except fieldtypes.TypeProblem as problem:
                message = f'"{text}" is not a number' if problem.code == "invalid" else problem.message
                raise ConditionError("value", message) from None
            return int(number) if number == number.to_integral_value() and "." not in stripped else float(number)
        case AttrType.BOOLEAN:
            try:
                return fieldtypes.to_boolean(stripped)
            except fieldtypes.TypeProblem:
                raise ConditionError("value", f'expected true or false, got "{text}"') from None
        case AttrType.DATE | AttrType.DATETIME:
            return stripped
        case _:
            if not stripped:
                return ""
            try:
                value = json.loads(stripped)
            except ValueError:
                return text
            return value if not isinstance(value, dict | list) else text


def _operator(operator: Operator | str) -> Operator:
    try:
        return Operator(operator)
    except ValueError:
        raise ConditionError("operator", f'"{operator}" is not an operator; use one of: {", ".join(Operator)}') from None


# --- conditions -----------------------------------------------------------------------------------


def _compare(actual: Any, expected: Any) -> int | None:
    """-1, 0 or 1 comparing ``actual`` with ``expected`` (numbers, or dates); ``None`` when they do not compare."""
    if _is_number(actual) and _is_number(expected):
        a, b = Decimal(str(actual)), Decimal(str(expected))
        return (a > b) - (a < b)
    left, right = parse_date(actual), parse_date(expected)
    if left is None or right is None:
        return None
    if isinstance(left, dt.datetime) != isinstance(right, dt.datetime):
        # A date against a date and time: compare the days.
        left = left.date() if isinstance(left, dt.datetime) else left
        right = right.date() if isinstance(right, dt.datetime) else right
    return (left > right) - (left < right)


def _same(actual: Any, expected: Any, attr_type: AttrType) -> bool:
    if _is_number(actual) and _is_number(expected):
        return Decimal(str(actual)) == Decimal(str(expected))
    if attr_type in (AttrType.DATE, AttrType.DATETIME) and expected is not None:
        return _compare(actual, expected) == 0
    if isinstance(actual, bool) != isinstance(expected, bool):
        return False
    return actual == expected


@dataclass(frozen=True)
class Condition:
    """``<attribute> <operator> <value>``, checked when built; ``negate`` turns the result round."""

    attribute: str
    operator: Operator
    value: Any = None
    attr_type: AttrType = AttrType.ANY
    negate: bool = False

    def __post_init__(self) -> None:
        problem = path_problem(self.attribute)
        if problem:
            raise ConditionError("attribute", f"The attribute {problem}.")
        object.__setattr__(self, "operator", _operator(self.operator))
        try:
            object.__setattr__(self, "attr_type", AttrType(self.attr_type))
        except ValueError:
            raise ConditionError("attribute", f'"{self.attr_type}" is not an attribute type') from None
        check_operator(self.attribute, self.attr_type, self.operator)
        try:
            object.__setattr__(self, "value", _check_value(self.attr_type, self.operator, self.value))
        except ConditionError as err:
            raise ConditionError("value", f"{self.attribute} {self.operator}: {err.message}") from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Condition:
        if not isinstance(data, Mapping) or "attr" not in data or "op" not in data:
            raise ConditionError("attribute", "A condition needs 'attr' and 'op'")
        return cls(data["attr"], data["op"], data.get("value"), data.get("type", AttrType.ANY), bool(data.get("negate")))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"attr": self.attribute, "op": str(self.operator), "value": self.value,
                               "type": str(self.attr_type)}
        if self.negate:
            out["negate"] = True
        return out

    def evaluate(self, data: Mapping[str, Any]) -> bool:
        result = self._test(data)
        return not result if self.negate else result

    def describe(self) -> str:
        value = "" if self.operator in (Operator.EXISTS, Operator.CHANGED) and self.value is True else f" {json.dumps(self.value, default=str)}"
        return f"{'not ' if self.negate else ''}{self.attribute} {self.operator}{value}"

    def _test(self, data: Mapping[str, Any]) -> bool:
        actual = lookup(data, self.attribute)
        op, expected = self.operator, self.value
        if op == Operator.EXISTS:
            return (actual is not MISSING and actual is not None) == expected
        if op == Operator.CHANGED:
            if PREVIOUS_PREFIX.rstrip(".") not in data:
                return not expected  # not a field change: nothing changed
            before = lookup(data, PREVIOUS_PREFIX + self.attribute[len(CHANGED_PREFIX):])
            differs = not _same(None if actual is MISSING else actual, None if before is MISSING else before,
                                self.attr_type)
            return differs == expected
        if op == Operator.NOT_EQUALS:
            return not self._equals(actual)
        if op == Operator.NOT_IN:
            return not self._in(actual)
        if actual is MISSING:
            return op == Operator.EQUALS and expected is None
        if op == Operator.EQUALS:
            return self._equals(actual)
        if op == Operator.IN:
            return self._in(actual)
        if op == Operator.CONTAINS:
            if isinstance(actual, str):
                return isinstance(expected, str) and expected in actual
            if isinstance(actual, list | tuple):
                return any(_same(item, expected, AttrType.ANY) for item in actual)
            if isinstance(actual, Mapping):
                return isinstance(expected, str) and expected in actual
            return False
        order = _compare(actual, expected)
        if order is None:
            return False
        return {Operator.GT: order > 0, Operator.GTE: order >= 0, Operator.LT: order < 0, Operator.LTE: order <= 0}[op]

    def _equals(self, actual: Any) -> bool:
        if actual is MISSING:
            return self.value is None
        return _same(actual, self.value, self.attr_type)

    def _in(self, actual: Any) -> bool:
        if actual is MISSING or actual is None:
            return False
        return any(_same(actual, item, self.attr_type) for item in self.value)


@dataclass(frozen=True)
class ConditionSet:
    """Conditions and nested sets combined with AND (every one) or OR (at least one).

    An empty set matches everything: a workflow without conditions runs for every trigger.
    """

    items: tuple[Condition | ConditionSet, ...] = ()
    logic: Logic = Logic.AND

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "logic", Logic(self.logic))
        except ValueError:
            raise ConditionError("logic", f'"{self.logic}" is not "and" or "or"') from None
        object.__setattr__(self, "items", tuple(self.items))
        for item in self.items:
            if not isinstance(item, Condition | ConditionSet):
                raise ConditionError("attribute", f"Not a condition: {item!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConditionSet:
        """``{"and": [...]}`` or ``{"or": [...]}``; items are conditions or nested sets."""
        if not isinstance(data, Mapping) or len(data) != 1:
            raise ConditionError("logic", 'A condition set is {"and": [...]} or {"or": [...]}')
        (logic, items), = data.items()
        if not isinstance(items, list):
            raise ConditionError("logic", f'"{logic}" must hold a list')
        return cls(tuple(cls._item(item) for item in items), logic)

    @classmethod
    def _item(cls, item: Any) -> Condition | ConditionSet:
        if isinstance(item, Mapping) and ("and" in item or "or" in item):
            return cls.from_dict(item)
        return Condition.from_dict(item)

    def to_dict(self) -> dict[str, Any]:
        return {str(self.logic): [item.to_dict() for item in self.items]}

    def evaluate(self, data: Mapping[str, Any]) -> bool:
        results = (item.evaluate(data) for item in self.items)
        if not self.items:
            return True
        return all(results) if self.logic == Logic.AND else any(results)

    def explain(self, data: Mapping[str, Any]) -> str:
        """Why the set does not match ``data``, in words (empty when it matches)."""
        if self.evaluate(data):
            return ""
        failing = [item for item in self.items if not item.evaluate(data)]
        if self.logic == Logic.AND:
            failing = failing[:1]
        parts = [_describe_failure(item, data) for item in failing]
        return (" and " if self.logic == Logic.OR else "; ").join(parts)


def _describe_failure(item: Condition | ConditionSet, data: Mapping[str, Any]) -> str:
    if isinstance(item, ConditionSet):
        text = item.explain(data)
        return text if len(item.items) == 1 or item.logic == Logic.AND else f"({text})"
    actual = lookup(data, item.attribute)
    shown = "missing" if actual is MISSING else json.dumps(actual, default=str)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{item.describe()} is false ({item.attribute} is {shown})"


def check_operator(attribute: str, attr_type: AttrType, operator: Operator) -> None:
    """Raise ``ConditionError("operator", ...)`` when ``operator`` does not fit the attribute."""
    if operator not in OPERATORS_FOR_TYPE[attr_type]:
        allowed = ", ".join(sorted(OPERATORS_FOR_TYPE[attr_type]))
        raise ConditionError("operator", f'"{operator}" does not fit {attribute} ({attr_type}); use one of: {allowed}')
    if operator == Operator.CHANGED and not attribute.startswith(CHANGED_PREFIX):
        raise ConditionError("operator", '"changed" applies to member attributes (member.<field>) only')


def build_condition(schema: AttributeSchema, attribute: str, operator: str, value: Any = None, *,
                    text: str | None = None) -> Condition:
    """A condition on a catalogued attribute, its value given typed or as ``text`` typed in a form.

    Problems are reported in the order a person fixes them: the attribute (unknown), then the
    operator (does not fit the attribute's type), then the value.
    """
    problem = path_problem(attribute)
    if problem:
        raise ConditionError("attribute", f"The attribute {problem}.")
    attr_type = schema.type_of(attribute)
    if attr_type is None:
        raise ConditionError("attribute", f'Unknown attribute "{attribute}".{_suggest(schema, attribute)}')
    op = _operator(operator)
    check_operator(attribute, attr_type, op)
    if text is not None:
        value = parse_text(attr_type, op, text)
    return Condition(attribute, op, value, attr_type)


def _suggest(schema: AttributeSchema, attribute: str) -> str:
    root = attribute.split(".", 1)[0] + "."
    names = [name for name in schema.names() if name.startswith(root)]
    names += [prefix + "<key>" for prefix in schema.open_prefixes if prefix.startswith(root)]
    if not names:
        roots = sorted({name.split(".", 1)[0] for name in schema.names()})
        return f" Attributes start with: {', '.join(roots)}."
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return f" Known: {shown}."


"""Value specs: how a workflow action gets one Braze attribute or property value. Pure: no database.

A spec names where the value comes from (the loyalty event, the member, a checkout item, a
constant, or a small Django template) and the Braze type it is sent as. Building a spec checks it
(the path is a dotted path, the constant converts to the type, the template compiles), so the
admin shows problems when the workflow is saved; resolving it against a run's context dict
converts the value with ``braze_integration.payloads.convert_value``. Every problem raises
``ValueSpecError`` naming the spec's field.

Templates run in a restricted engine: no ``{% load %}``, ``{% include %}``, ``{% extends %}``,
``{% url %}`` or ``{% debug %}``; only plain data (dicts frozen read-only, lists as tuples) is
in the context, so a template can read values and format them but cannot change or reach anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from django.template import Context, Engine, Library, TemplateSyntaxError, defaultfilters, defaulttags

from braze_integration.payloads import (
    RESERVED_EVENT_PROPERTY_KEYS,
    RESERVED_PURCHASE_PROPERTY_KEYS,
    BrazeType,
    PayloadError,
    convert_value,
    remote_name_problem,
)

from .conditions import MISSING, lookup, path_problem

MAX_TEMPLATE_LENGTH = 2000
MAX_RENDERED_LENGTH = 100 * 1024


class SourceKind(StrEnum):
    EVENT = "event"  # a path in the loyalty event: total, items, occurred_at, data.total
    MEMBER = "member"  # a member attribute: tier, points_spendable, custom_fields.shoe_size
    ITEM = "item"  # a path in the checkout item a purchase is built from: product_name
    CONSTANT = "constant"
    TEMPLATE = "template"


PATH_SOURCES = (SourceKind.EVENT, SourceKind.MEMBER, SourceKind.ITEM)
_JSON_TYPES = (BrazeType.ARRAY, BrazeType.OBJECT, BrazeType.ARRAY_OF_OBJECTS)


class Usage(StrEnum):
    """What a spec's name is: a custom attribute, or an event's or purchase's property."""

    ATTRIBUTE = "attribute"
    EVENT_PROPERTY = "event_property"
    PURCHASE_PROPERTY = "purchase_property"


class ValueSpecError(ValueError):
    """A spec that cannot be built or resolved; ``field`` names the spec's field (``path``, ``template``...)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


# --- the restricted template engine -----------------------------------------------------------------

# Tags that only read and format the context. Left out: load, include, extends, block, url, debug,
# csrf_token, autoescape, lorem, resetcycle, partial tags.
SAFE_TAGS = (
    "if", "for", "with", "firstof", "comment", "spaceless", "now", "cycle", "filter", "ifchanged",
    "verbatim", "templatetag", "widthratio", "regroup",
)


class _RestrictedEngine(Engine):
    default_builtins: list[str] = []

    def __init__(self) -> None:
        super().__init__(dirs=[], app_dirs=False, loaders=[], libraries={}, autoescape=False,
                         string_if_invalid="", debug=False)
        library = Library()
        library.tags.update({name: defaulttags.register.tags[name] for name in SAFE_TAGS})
        library.filters.update(defaultfilters.register.filters)
        self.template_builtins = [library]


@lru_cache(maxsize=1)
def _engine() -> _RestrictedEngine:
    return _RestrictedEngine()


@lru_cache(maxsize=512)
def compile_template(source: str):
    """The compiled template, or ``ValueSpecError("template", ...)``."""
    if len(source) > MAX_TEMPLATE_LENGTH:
        raise ValueSpecError("template", f"is {len(source)} characters long; at most {MAX_TEMPLATE_LENGTH}.")
    try:
        return _engine().from_string(source)
    except TemplateSyntaxError as err:
        raise ValueSpecError("template", f"does not compile: {err}") from None


def freeze(value: Any) -> Any:
    """A read-only copy for a template: mappings become ``MappingProxyType``, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    return value


def render_template(source: str, context: Mapping[str, Any]) -> str:
    """Render ``source`` with ``context`` (plain data) in the restricted engine."""
    template = compile_template(source)
    try:
        text = template.render(Context({key: freeze(item) for key, item in context.items()}, autoescape=False))
    except Exception as err:  # a filter given data it cannot handle: the run reports it, it does not crash
        raise ValueSpecError("template", f"could not be rendered: {err}") from None
    if len(text) > MAX_RENDERED_LENGTH:
        raise ValueSpecError("template", f"rendered {len(text)} characters; at most {MAX_RENDERED_LENGTH}.")
    return text


# --- specs -----------------------------------------------------------------------------------------


def _from_text(braze_type: BrazeType, text: str, where: str) -> Any:
    """Text typed by a person (or rendered by a template) as a value for ``convert_value``."""
    if braze_type in _JSON_TYPES:
        try:
            return json.loads(text)
        except ValueError:
            kind = {BrazeType.ARRAY: "a list", BrazeType.OBJECT: "an object"}.get(braze_type, "a list of objects")
            raise ValueSpecError(where, f"must be JSON ({kind}), e.g. " + (
                '["a", "b"]' if braze_type == BrazeType.ARRAY else
                '{"key": "value"}' if braze_type == BrazeType.OBJECT else '[{"key": "value"}]')) from None
    if braze_type == BrazeType.STRING:
        return text
    return text.strip()


def _convert(braze_type: BrazeType, value: Any, name: str, where: str) -> Any:
    try:
        return convert_value(braze_type, value, where=name)
    except PayloadError as err:
        raise ValueSpecError(where, f"{err.field}: {err.problem}") from None


@dataclass(frozen=True)
class ValueSpec:
    """One named value: where it comes from and the Braze type it is sent as."""

    name: str
    braze_type: BrazeType
    source: SourceKind
    path: str = ""
    constant: str = ""
    template: str = ""
    required: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueSpecError("name", "must not be empty.")
        try:
            object.__setattr__(self, "braze_type", BrazeType(self.braze_type))
        except ValueError:
            raise ValueSpecError("braze_type", f'"{self.braze_type}" is not a Braze type.') from None
        try:
            object.__setattr__(self, "source", SourceKind(self.source))
        except ValueError:
            raise ValueSpecError("source", f'"{self.source}" is not a value source.') from None
        if self.source in PATH_SOURCES:
            problem = path_problem(self.path)
            if problem:
                raise ValueSpecError("path", f"The path {problem}.")
        elif self.source == SourceKind.CONSTANT:
            if self.constant == "" and self.braze_type != BrazeType.STRING:
                raise ValueSpecError("constant", "must not be empty.")
            self.constant_value  # noqa: B018  (converts, so a bad constant fails now)
        elif self.source == SourceKind.TEMPLATE:
            if not self.template.strip():
                raise ValueSpecError("template", "must not be empty.")
            compile_template(self.template)

    @property
    def constant_value(self) -> Any:
        return _convert(self.braze_type, _from_text(self.braze_type, self.constant, "constant"), self.name, "constant")

    def check_name(self, usage: Usage | str) -> None:
        """Raise ``ValueSpecError("name", ...)`` when the name cannot be used as ``usage``."""
        usage = Usage(usage)
        if usage == Usage.ATTRIBUTE:
            problem = remote_name_problem(self.name)
            if problem:
                raise ValueSpecError("name", f"The Braze attribute name {problem}.")
            return
        reserved = RESERVED_EVENT_PROPERTY_KEYS if usage == Usage.EVENT_PROPERTY else RESERVED_PURCHASE_PROPERTY_KEYS
        if len(self.name) > 255 or self.name.startswith("$"):
            raise ValueSpecError("name", "Property names are 1-255 characters and do not start with '$'.")
        if self.name in reserved:
            raise ValueSpecError("name", f'"{self.name}" is reserved by Braze; reserved: {", ".join(sorted(reserved))}.')

    def resolve(self, context: Mapping[str, Any]) -> Any:
        """The Braze-ready value from a run's context, or ``MISSING`` when there is none (and it is
        not required). Raises ``ValueSpecError`` when the value cannot be sent as the spec's type."""
        where = self.source.value if self.source in (SourceKind.CONSTANT, SourceKind.TEMPLATE) else "path"
        if self.source == SourceKind.CONSTANT:
            value: Any = self.constant_value
        elif self.source == SourceKind.TEMPLATE:
            text = render_template(self.template, context)
            value = MISSING if not text.strip() else _from_text(self.braze_type, text, "template")
        else:
            root = context.get(self.source.value)
            value = MISSING if not isinstance(root, Mapping) else lookup(root, self.path)
        if value is MISSING or value is None:
            if self.required:
                origin = f"{self.source}.{self.path}" if self.source in PATH_SOURCES else f"the {self.source}"
                raise ValueSpecError(where, f"{self.name} has no value ({origin} is empty or missing).")
            return MISSING
        return _convert(self.braze_type, value, self.name, where)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": str(self.braze_type), "source": str(self.source)}
        if self.source in PATH_SOURCES:
            out["path"] = self.path
        elif self.source == SourceKind.CONSTANT:
            out["constant"] = self.constant
        else:
            out["template"] = self.template
        if self.required:
            out["required"] = True
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValueSpec:
        return cls(name=data.get("name", ""), braze_type=data.get("type", ""), source=data.get("source", ""),
                   path=data.get("path", ""), constant=data.get("constant", ""), template=data.get("template", ""),
                   required=bool(data.get("required")))


def resolve_values(specs: Iterable[ValueSpec], context: Mapping[str, Any]) -> dict[str, Any]:
    """Name -> Braze value for every spec that has a value (specs without one are left out)."""
    out: dict[str, Any] = {}
    for spec in specs:
        value = spec.resolve(context)
        if value is not MISSING:
            out[spec.name] = value
    return out

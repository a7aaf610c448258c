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
Only filters whose output is bounded are there, and every render is bounded in time, loop iterations
and output (``MAX_*`` below): what can be known from the text (a width of 50,000,000, loops three
deep) is refused when the spec is built, the rest raises ``TemplateLimitExceeded`` when it renders.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache, wraps
from types import MappingProxyType
from typing import Any, NoReturn

from django.template import (
    Context,
    Engine,
    Library,
    Template,
    TemplateSyntaxError,
    defaultfilters,
    defaulttags,
)
from django.template.base import Lexer, Parser, TextNode, VariableNode

from braze_integration.payloads import (
    RESERVED_EVENT_PROPERTY_KEYS,
    RESERVED_PURCHASE_PROPERTY_KEYS,
    BrazeType,
    PayloadError,
    convert_value,
    remote_name_problem,
)
from braze_integration.standard_fields import STANDARD_FIELDS, SUBSCRIPTION_GROUPS

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
    "if", "with", "firstof", "comment", "spaceless", "now", "cycle", "filter", "ifchanged",
    "verbatim", "templatetag", "widthratio", "regroup",
)
# Filters whose output is bounded by their input (or, for those in WIDTH_FILTERS, by a checked
# argument). Left out: stringformat (any width), urlize (slow on long text), pprint, random,
# striptags and the *_html filters (HTML parsing), unordered_list (recursive), json_script.
SAFE_FILTERS = (
    "add", "addslashes", "capfirst", "center", "cut", "date", "default", "default_if_none", "dictsort",
    "dictsortreversed", "divisibleby", "escape", "escapejs", "filesizeformat", "first", "floatformat",
    "force_escape", "get_digit", "iriencode", "join", "last", "length", "linebreaksbr", "ljust", "lower",
    "make_list", "phone2numeric", "pluralize", "rjust", "safe", "slice", "slugify", "time", "timesince",
    "timeuntil", "title", "truncatechars", "truncatewords", "upper", "urlencode", "wordcount", "wordwrap",
    "yesno",
)
# The limits of one render. A template runs in the worker for every member a workflow matches, so
# none may hold it for long or fill its memory, whatever the manager typed or the data holds.
MAX_FILTER_WIDTH = 1000  # ljust, rjust, center
MAX_DECIMAL_PLACES = 20  # floatformat
MAX_LOOP_DEPTH = 2  # for loops inside for loops
MAX_LOOP_ITERATIONS = 10_000  # all loops of one render together
MAX_RENDER_SECONDS = 0.5
WIDTH_FILTERS = ("ljust", "rjust", "center")


class TemplateLimitExceeded(ValueSpecError):
    """A template that goes (or would go) over one of the limits above."""

    def __init__(self, message: str):
        super().__init__("template", message)


def _filter_arg_problem(name: str, arg: Any) -> str | None:
    """Why ``arg`` is too large for the filter ``name``, or ``None``."""
    if name in WIDTH_FILTERS:
        limit, what = MAX_FILTER_WIDTH, "a width"
        text = str(arg).strip()
    elif name == "floatformat":
        limit, what = MAX_DECIMAL_PLACES, "decimal places"
        text = str(arg).strip().rstrip("gu").rstrip("gu").lstrip("-")
    else:
        return None
    try:
        number = int(text)
    except ValueError:
        return None  # not a number: the filter itself refuses it
    if number > limit:
        return f'The filter "{name}:{arg}" asks for {what} of {number:,}; at most {limit:,}.'
    return None


@dataclass
class _Budget:
    """What one render has used so far; every check raises once a limit is passed (and goes on raising,
    since Django's ``{% if %}`` swallows errors in its conditions)."""

    deadline: float
    iterations: int = 0
    output: int = 0
    exceeded: TemplateLimitExceeded | None = None

    def _fail(self, message: str) -> NoReturn:
        self.exceeded = self.exceeded or TemplateLimitExceeded(message)
        raise self.exceeded

    def check(self) -> None:
        if self.exceeded:
            raise self.exceeded
        if time.monotonic() > self.deadline:
            self._fail(f"The template took longer than the limit of {MAX_RENDER_SECONDS:g} s to render.")

    def loop(self, count: int) -> None:
        self.check()
        self.iterations += count
        if self.iterations > MAX_LOOP_ITERATIONS:
            self._fail(f"The template went over the limit of {MAX_LOOP_ITERATIONS:,} loop iterations.")

    def text(self, length: int) -> None:
        self.check()
        self.output += length
        if self.output > MAX_RENDERED_LENGTH:
            self._fail(f"The template rendered more than the limit of {MAX_RENDERED_LENGTH:,} characters.")

    def value(self, name: str, value: Any) -> None:
        if isinstance(value, str | list | tuple) and len(value) > MAX_RENDERED_LENGTH:
            self._fail(f'The filter "{name}" made a value of {len(value):,} characters or items; '
                       f"at most {MAX_RENDERED_LENGTH:,}.")


_budget: ContextVar[_Budget | None] = ContextVar("workflow_template_budget", default=None)


def _bounded_filter(name: str, func):
    """``func`` with its argument checked before it runs and its result's size after."""

    @wraps(func)
    def bounded(value, *args, **kwargs):
        budget = _budget.get()
        if budget is not None:
            budget.check()
            problem = _filter_arg_problem(name, args[0]) if args else None
            if problem:
                budget._fail(problem)
        result = func(value, *args, **kwargs)
        if budget is not None:
            budget.value(name, result)
        return result

    bounded.filter_name = name
    return bounded


class _BoundedForNode(defaulttags.ForNode):
    def render(self, context):
        budget = _budget.get()
        if budget is not None:
            values = self.sequence.resolve(context, ignore_failures=True)
            budget.loop(len(values) if hasattr(values, "__len__") else len(list(values or ())))
        return super().render(context)


class _BoundedTextNode(TextNode):
    def render_annotated(self, context):
        budget = _budget.get()
        if budget is not None:
            budget.text(len(self.s))
        return self.s


class _BoundedVariableNode(VariableNode):
    def render(self, context):
        text = super().render(context)
        budget = _budget.get()
        if budget is not None:
            budget.text(len(text))
        return text


def _do_for(parser: _BoundedParser, token):
    parser.loop_depth += 1
    try:
        if parser.loop_depth > MAX_LOOP_DEPTH:
            raise TemplateLimitExceeded(f"Loops nest at most {MAX_LOOP_DEPTH} deep (a for inside a for).")
        node = defaulttags.do_for(parser, token)
    finally:
        parser.loop_depth -= 1
    return _BoundedForNode(node.loopvars, node.sequence, node.is_reversed, node.nodelist_loop, node.nodelist_empty)


class _BoundedParser(Parser):
    """Django's parser with every output node charged to the render's budget, and the constant
    arguments of filters checked when the template is compiled."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loop_depth = 0

    def find_filter(self, filter_name):
        if filter_name not in self.filters:
            raise TemplateSyntaxError(f'The filter "{filter_name}" cannot be used in value templates; use one of: '
                                      f"{', '.join(SAFE_FILTERS)}.")
        return super().find_filter(filter_name)

    def compile_filter(self, token):
        expression = super().compile_filter(token)
        for func, args in expression.filters:
            for is_variable, arg in args:
                problem = None if is_variable else _filter_arg_problem(func.filter_name, arg)
                if problem:
                    raise TemplateLimitExceeded(problem)
        return expression

    def extend_nodelist(self, nodelist, node, token):
        if type(node) is TextNode:
            node = _BoundedTextNode(node.s)
        elif type(node) is VariableNode:
            node = _BoundedVariableNode(node.filter_expression)
        super().extend_nodelist(nodelist, node, token)


class _BoundedTemplate(Template):
    def compile_nodelist(self):
        parser = _BoundedParser(Lexer(self.source).tokenize(), self.engine.template_libraries,
                                self.engine.template_builtins, self.origin)
        nodelist = parser.parse()
        self.extra_data = parser.extra_data
        return nodelist


class _RestrictedEngine(Engine):
    default_builtins: list[str] = []

    def __init__(self) -> None:
        super().__init__(dirs=[], app_dirs=False, loaders=[], libraries={}, autoescape=False,
                         string_if_invalid="", debug=False)
        library = Library()
        library.tags.update({name: defaulttags.register.tags[name] for name in SAFE_TAGS})
        library.tags["for"] = _do_for
        for name in SAFE_FILTERS:
            library.filters[name] = _bounded_filter(name, defaultfilters.register.filters[name])
        self.template_builtins = [library]


@lru_cache(maxsize=1)
def _engine() -> _RestrictedEngine:
    return _RestrictedEngine()


@lru_cache(maxsize=512)
def compile_template(source: str):
    """The compiled template, or ``ValueSpecError("template", ...)`` (``TemplateLimitExceeded`` when
    the template asks for more than the limits allow, e.g. ``ljust:"50000000"``)."""
    if len(source) > MAX_TEMPLATE_LENGTH:
        raise ValueSpecError("template", f"is {len(source)} characters long; at most {MAX_TEMPLATE_LENGTH}.")
    try:
        return _BoundedTemplate(source, engine=_engine())
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
    """Render ``source`` with ``context`` (plain data) in the restricted engine, within the limits
    (time, loop iterations, output and value sizes); ``TemplateLimitExceeded`` when it goes over one."""
    template = compile_template(source)
    budget = _Budget(deadline=time.monotonic() + MAX_RENDER_SECONDS)
    token = _budget.set(budget)
    try:
        text = template.render(Context({key: freeze(item) for key, item in context.items()}, autoescape=False))
    except TemplateLimitExceeded:
        raise
    except Exception as err:  # a filter given data it cannot handle: the run reports it, it does not crash
        raise ValueSpecError("template", f"could not be rendered: {err}") from None
    finally:
        _budget.reset(token)
    if budget.exceeded:  # raised inside an {% if %} condition, which Django turns into "false"
        raise budget.exceeded
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
        """Raise ``ValueSpecError("name", ...)`` when the name cannot be used as ``usage`` (and
        ``ValueSpecError("constant", ...)`` when the name is a standard attribute that would refuse the
        spec's constant)."""
        usage = Usage(usage)
        if usage == Usage.ATTRIBUTE:
            problem = remote_name_problem(self.name)
            if problem:
                raise ValueSpecError("name", f"The Braze attribute name {problem}.")
            standard = STANDARD_FIELDS.get(self.name)
            if self.name in (SUBSCRIPTION_GROUPS, "push_tokens"):
                raise ValueSpecError("name", f'"{self.name}" {standard.rule_words}; a workflow cannot send it.')
            if standard is not None:
                # Braze writes the profile field, and drops a value of another type; the value is put in
                # Braze's format (codes, YYYY-MM-DD, gender letters) as a mapping's would be.
                expected = standard.braze_type
                if self.braze_type != expected:
                    raise ValueSpecError("name", f'"{self.name}" is a Braze standard profile field that takes '
                                                 f"{expected.value.replace('_', ' ')} values, not "
                                                 f"{self.braze_type.value.replace('_', ' ')}: change the type, or "
                                                 "use a custom attribute name.")
                if self.source == SourceKind.CONSTANT:
                    # A constant Braze would refuse (country XX, phone "call me") fails every run: say so now.
                    try:
                        standard.value(self.constant_value, self.name)
                    except PayloadError as err:
                        raise ValueSpecError("constant", f"Braze would refuse it as {self.name}: {err.problem}"
                                             ) from None
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
            try:
                text = render_template(self.template, context)
            except TemplateLimitExceeded as err:
                raise TemplateLimitExceeded(f"{self.name}: {err.message}") from None
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

"""Configuration as code, Braze side: the connection and its field mappings as plain data, and back.

``braze_config`` (in ``workflows``, the app that knows the whole file) exports and imports with
this module's ``braze_config_export`` / ``braze_config_read`` / ``braze_config_apply``, and with the
pieces every section of the file shares: JSON parsed with line and column in its errors, written
byte-stable, and objects read key by key so that a typo is an error and every problem is reported
with its place in the file (``field_mappings[3].loyalty_field: ...``). The rules themselves stay
on the models: each object goes through ``full_clean()``, as in the admin.

The API key never goes into a file. The file names an environment variable (``api_key_env``);
the import reads the key from it, or keeps the stored key when it is not set.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models

from .models import Connection, FieldMapping, RemoteKind, api_key_problem
from .standard_fields import SUBSCRIPTION_GROUPS

API_KEY_ENV_DEFAULT = "BRAZE_API_KEY"
WORKSPACE_CHANGED = ("The instance URL or the API key changed: this may be another Braze workspace, which has none "
                     "of the values sent before, so the sync has forgotten them. Until a full resync, Braze gets "
                     "each member's values only when they change.")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
# The connection's settings in the file (everything but the key and its state), in the model's names.
CONNECTION_FIELDS = ("name", "instance_url", "app_id", "active", "send_mode", "batch_size", "per_array_limit",
                     "rate_limit_requests", "rate_limit_seconds", "max_attempts")


# --- what every section of the file shares -------------------------------------------------------

class ConfigInvalid(Exception):
    """The file cannot be applied; ``problems`` lists each one as ``place: message``."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class Problems:
    """Collects every problem of a file with its place, so one run reports them all."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, place: str, message: str) -> None:
        self.items.append(f"{place}: {message}" if place else message)

    def __bool__(self) -> bool:
        return bool(self.items)


def place_key(place: str, key: str) -> str:
    return f"{place}.{key}" if place else key


def place_index(place: str, index: int) -> str:
    return f"{place}[{index}]"


class _JSONObject(dict):
    """A parsed JSON object that remembers keys it held twice (the later value would win silently)."""

    duplicates: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, Any]]) -> _JSONObject:
    obj = _JSONObject(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        obj.duplicates = tuple(sorted({key for key, _ in pairs if key in seen or seen.add(key)}))
    return obj


def config_parse(text: str) -> Any:
    """The file's JSON; bad JSON raises ``ConfigInvalid`` naming the line and column."""
    try:
        return json.loads(text, object_pairs_hook=_object_pairs)
    except json.JSONDecodeError as err:
        raise ConfigInvalid([f"line {err.lineno}, column {err.colno}: {err.msg} (not valid JSON)"]) from None


def config_dump(data: Any) -> str:
    """The file's text: sorted keys, two-space indents, a final newline (equal configurations, equal bytes)."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


REQUIRED = object()
_TYPE_WORDS = {str: "a string", int: "an integer", bool: "true or false", list: "a list", dict: "an object"}


@dataclass(frozen=True)
class Key:
    """One key of an object in the file: its JSON type, and its default when left out."""

    kind: type
    default: Any = REQUIRED
    nullable: bool = False

    def problem(self, value: Any) -> str | None:
        if self.kind is object:  # any JSON value: its reader checks it
            return None
        if value is None:
            return None if self.nullable else f"expected {_TYPE_WORDS[self.kind]}, not null"
        ok = isinstance(value, self.kind) and not (self.kind is int and isinstance(value, bool))
        if not ok:
            return f"expected {_TYPE_WORDS[self.kind]}, not {_json_type(value)}"
        if isinstance(value, str) and "\x00" in value:  # as the admin's forms: databases refuse it in text
            return "must not contain the NUL character"
        return None


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    for kind, words in ((str, "a string"), (int, "a number"), (float, "a number"), (list, "a list"),
                        (dict, "an object")):
        if isinstance(value, kind):
            return words
    return "null" if value is None else type(value).__name__


@dataclass
class Read:
    """An object read from the file: its values (defaults filled in) and the keys that were wrong."""

    values: dict[str, Any]
    bad: set[str] = field(default_factory=set)


def read_object(value: Any, place: str, keys: Mapping[str, Key], problems: Problems) -> Read | None:
    """Check ``value`` is an object with only ``keys``, each of its type; ``None`` if it is not an object.

    Every problem goes to ``problems``: unknown keys (with the nearest known one), keys given twice,
    required keys left out, values of the wrong JSON type. Wrong values are left out of the result.
    """
    if not isinstance(value, dict):
        problems.add(place, f"expected an object, not {_json_type(value)}")
        return None
    read = Read({})
    for key in getattr(value, "duplicates", ()):
        problems.add(place_key(place, key), "given twice")
    for key in value:
        if key not in keys:
            near = difflib.get_close_matches(key, list(keys), n=1)
            hint = f' (did you mean "{near[0]}"?)' if near else f" (known keys: {', '.join(sorted(keys))})"
            problems.add(place_key(place, key), f"unknown key{hint}")
    for key, spec in keys.items():
        if key not in value:
            if spec.default is REQUIRED:
                problems.add(place_key(place, key), "required")
                read.bad.add(key)
            else:
                read.values[key] = spec.default
            continue
        problem = spec.problem(value[key])
        if problem:
            problems.add(place_key(place, key), problem)
            read.bad.add(key)
        else:
            read.values[key] = value[key]
    return read


def read_list(value: Any, place: str, problems: Problems) -> list[Any]:
    if not isinstance(value, list):
        problems.add(place, f"expected a list, not {_json_type(value)}")
        return []
    return value


def model_problems(instance: models.Model, place: str, problems: Problems, *,
                   keys: Mapping[str, str] | None = None, skip: set[str] = frozenset(),
                   exclude: list[str] | None = None) -> bool:
    """Validate ``instance`` as the admin does (``full_clean()``) and report each error at its place.

    ``keys`` maps model field names to the file's keys where they differ; errors of file keys in
    ``skip`` (already reported as the wrong type) are not repeated. Uniqueness is the caller's to
    check within the file: the rows in the database are the ones being replaced. Returns whether it passed.
    """
    try:
        instance.full_clean(exclude=exclude, validate_unique=False)
    except ValidationError as err:
        for name, messages in err.message_dict.items():
            key = (keys or {}).get(name, name)
            if key in skip:
                continue
            for message in messages:
                problems.add(place if name == NON_FIELD_ERRORS else place_key(place, key), message)
        return False
    return True


def show(value: Any) -> str:
    """A value in a change line, as it is written in the file."""
    return json.dumps(value, sort_keys=True)


# --- the connection and its mappings ------------------------------------------------------------

def connection_configured() -> Connection | None:
    """The connection a configuration file describes: the active one, else the newest."""
    return Connection.objects.filter(active=True).first() or Connection.objects.order_by("-pk").first()


def _connection_values(connection: Connection) -> dict[str, Any]:
    return {name: getattr(connection, name) for name in CONNECTION_FIELDS}


def _mapping_rows(connection: Connection | None) -> list[tuple[str, str, str]]:
    if connection is None or connection.pk is None:
        return []
    return list(connection.mappings.order_by("position", "id").values_list("loyalty_field", "remote_field",
                                                                           "remote_kind"))


def _mapping_data(loyalty_field: str, remote_field: str, kind: str) -> dict[str, str]:
    """A mapping as the file holds it; ``kind`` only when it is not an attribute (as files before kinds)."""
    data = {"loyalty_field": loyalty_field, "remote_field": remote_field}
    if kind != RemoteKind.ATTRIBUTE:
        data["kind"] = kind
    return data


def _mapping_words(loyalty_field: str, remote_field: str, kind: str) -> str:
    target = f"subscription group {remote_field}" if kind == RemoteKind.SUBSCRIPTION_GROUP else remote_field
    return f"{loyalty_field} -> {target}"


def braze_config_export(*, api_key_env: str = API_KEY_ENV_DEFAULT) -> dict[str, Any]:
    """The file's ``connection`` (without the key: ``api_key_env`` names where the key comes from)
    and ``field_mappings`` in their order. ``connection`` is ``None`` when there is none."""
    connection = connection_configured()
    if connection is None:
        return {"connection": None, "field_mappings": []}
    return {
        "connection": {**_connection_values(connection), "api_key_env": api_key_env},
        "field_mappings": [_mapping_data(*row) for row in _mapping_rows(connection)],
    }


def _connection_keys() -> dict[str, Key]:
    keys: dict[str, Key] = {}
    for name in CONNECTION_FIELDS:
        model_field = Connection._meta.get_field(name)
        kind = {models.BooleanField: bool, models.CharField: str}.get(type(model_field), int)
        keys[name] = Key(kind, REQUIRED if name == "instance_url" else model_field.get_default())
    keys["api_key_env"] = Key(str, None, nullable=True)
    return keys


MAPPING_KEYS = {"loyalty_field": Key(str), "remote_field": Key(str), "kind": Key(str, RemoteKind.ATTRIBUTE.value)}


@dataclass
class BrazeImport:
    """What importing the file's Braze part does: checked, not yet applied."""

    connection: Connection | None = None  # the file's values set on it (a new, unsaved one if none exists)
    api_key: str | None = None  # the key to store; None keeps the stored one
    connection_changed: bool = False
    mappings: list[FieldMapping] = field(default_factory=list)
    mappings_changed: bool = False
    workspace_changed: bool = False  # the active connection's URL or key changes: what was sent is forgotten
    remote_fields_to_resync: list[str] = field(default_factory=list)
    remote_fields_to_clear: list[str] = field(default_factory=list)  # attributes no mapping sends any more
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def braze_config_read(*, connection_data: Any, mappings_data: Any, problems: Problems,
                      environ: Mapping[str, str], connection_given: bool = True) -> BrazeImport:
    """Check the file's ``connection`` and ``field_mappings`` as the admin would, and work out what
    would change. Problems go to ``problems``; nothing is written.

    ``connection_data`` ``None`` (the file's ``null``) is accepted only where there is no connection
    either, so an export of an empty configuration imports into an empty one."""
    plan = BrazeImport()
    existing = connection_configured()
    if connection_given and connection_data is None and existing is not None:
        problems.add("connection", "the file has no connection, but this database has one (to stop the sync, "
                                   'import the connection with "active": false)')
    elif connection_given and connection_data is not None:
        plan.connection = _connection_read(connection_data, existing, problems, environ, plan)
    rows = read_list(mappings_data, "field_mappings", problems)
    if connection_given and connection_data is None and rows:
        problems.add("field_mappings", "mappings need a connection")
    _mappings_read(rows, plan, problems)
    if not problems and plan.connection is not None:
        _changes(plan, existing)
    return plan


def _connection_read(data: Any, existing: Connection | None, problems: Problems, environ: Mapping[str, str],
                     plan: BrazeImport) -> Connection:
    connection = Connection() if existing is None else Connection.objects.get(pk=existing.pk)
    read = read_object(data, "connection", _connection_keys(), problems)
    if read is not None:
        for name in CONNECTION_FIELDS:
            if name in read.values:
                setattr(connection, name, read.values[name])
        model_problems(connection, "connection", problems, skip=read.bad,
                       exclude=[name for name in CONNECTION_FIELDS if name in read.bad])
        plan.api_key = _api_key_read(read, connection, environ, problems, plan)
    return connection


def _api_key_read(read: Read, connection: Connection, environ: Mapping[str, str], problems: Problems,
                  plan: BrazeImport) -> str | None:
    env_name = read.values.get("api_key_env")
    if env_name is not None and not ENV_NAME.match(env_name):
        problems.add("connection.api_key_env", f"{show(env_name)} is not an environment variable name")
        return None
    key = (environ.get(env_name) or "").strip() if env_name else ""
    if key and (problem := api_key_problem(key)):
        problems.add("connection.api_key_env", f"the REST API key in {env_name} {problem}")
        return None
    if key:
        return key
    if not connection.api_key:
        where = (f"set {env_name} and import again" if env_name
                 else 'name its variable in "api_key_env" and import again')
        plan.warnings.append(f"connection: no API key is stored and none is given: {where}, or enter the key in "
                             "the admin. Nothing is sent to Braze until then.")
    return None


def _mappings_read(rows: list[Any], plan: BrazeImport, problems: Problems) -> None:
    seen: dict[str, str] = {}
    for index, row in enumerate(rows):
        place = place_index("field_mappings", index)
        read = read_object(row, place, MAPPING_KEYS, problems)
        if read is None:
            continue
        mapping = FieldMapping(loyalty_field=read.values.get("loyalty_field", ""),
                               remote_field=read.values.get("remote_field", ""),
                               remote_kind=read.values.get("kind", RemoteKind.ATTRIBUTE), position=index)
        if not model_problems(mapping, place, problems, keys={"remote_kind": "kind"}, skip=read.bad,
                              exclude=["connection", *(("remote_kind",) if "kind" in read.bad else ()), *read.bad]):
            continue
        if mapping.remote_field in seen:
            problems.add(place_key(place, "remote_field"),
                         f"{show(mapping.remote_field)} is mapped twice (also in {seen[mapping.remote_field]})")
        seen.setdefault(mapping.remote_field, place)
        plan.mappings.append(mapping)


def _changes(plan: BrazeImport, existing: Connection | None) -> None:
    connection = plan.connection
    if existing is None:
        plan.connection_changed = True
        plan.changes.append(f"connection: added {show(connection.name)} at {connection.instance_url}")
    else:
        before, after = _connection_values(existing), _connection_values(connection)
        for name in CONNECTION_FIELDS:
            if before[name] != after[name]:
                plan.connection_changed = True
                plan.changes.append(f"connection.{name}: {show(before[name])} -> {show(after[name])}")
    if existing is not None and connection.active and (
            existing.instance_url != connection.instance_url
            or (existing.api_key and plan.api_key is not None and plan.api_key != existing.api_key)):
        plan.workspace_changed = True
    if plan.api_key is not None and plan.api_key != (existing.api_key if existing else ""):
        plan.connection_changed = True
        verb = "replaced" if existing is not None and existing.api_key else "set"
        plan.changes.append(f"connection.api_key: {verb} from the environment")
    old = _mapping_rows(existing)
    new = [(m.loyalty_field, m.remote_field, m.remote_kind) for m in plan.mappings]
    plan.mappings_changed = old != new
    # A mapping is identified by what it writes: the attribute, or the subscription group.
    old_by_remote = {(kind, remote): loyalty for loyalty, remote, kind in old}
    new_by_remote = {(kind, remote): loyalty for loyalty, remote, kind in new}
    for loyalty, remote, kind in new:
        resync_name = SUBSCRIPTION_GROUPS if kind == RemoteKind.SUBSCRIPTION_GROUP else remote
        if (kind, remote) not in old_by_remote:
            plan.changes.append(f"field_mappings: added {_mapping_words(loyalty, remote, kind)}")
        elif old_by_remote[kind, remote] != loyalty:
            target = f"subscription group {remote}" if kind == RemoteKind.SUBSCRIPTION_GROUP else remote
            plan.changes.append(f"field_mappings: changed {target}: {old_by_remote[kind, remote]} -> {loyalty}")
        else:
            continue
        if resync_name not in plan.remote_fields_to_resync:
            plan.remote_fields_to_resync.append(resync_name)
    for loyalty, remote, kind in old:
        if (kind, remote) not in new_by_remote:
            plan.changes.append(f"field_mappings: removed {_mapping_words(loyalty, remote, kind)}")
            if kind == RemoteKind.ATTRIBUTE and remote not in plan.remote_fields_to_resync:
                plan.remote_fields_to_clear.append(remote)
    kept = [key for key in ((kind, remote) for _, remote, kind in new) if key in old_by_remote]
    if kept != [key for key in ((kind, remote) for _, remote, kind in old) if key in new_by_remote]:
        plan.changes.append("field_mappings: order changed")


def full_resync_cost() -> str:
    """What ``braze_resync --all`` would send with nothing remembered as sent, in words (the full
    resync a workspace change calls for), or why it cannot run."""
    from . import resync  # the resync needs the whole sync machinery; the file's other uses do not

    try:
        report = resync.resync_dry_run(selection=resync.Selection(all=True), force=True)
    except resync.ResyncError as err:
        return str(err)
    return (f"{report.would_send:,} members in {report.requests:,} requests, {report.data_points:,} data points"
            + (f"; {report.unsendable:,} cannot be sent" if report.unsendable else ""))


def braze_config_apply(*, plan: BrazeImport) -> None:
    """Write what ``braze_config_read`` checked, in the caller's transaction."""
    connection = plan.connection
    if connection is None:
        return
    if plan.connection_changed:
        if plan.api_key is not None:
            connection.set_api_key(plan.api_key)
        connection.save()
    if plan.mappings_changed:
        connection.mappings.all().delete()
        for mapping in plan.mappings:
            mapping.connection = connection
            mapping.save()

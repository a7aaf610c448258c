"""Thread-safe in-memory Braze profiles, the sandbox's statistics and its request log.

`ProfileStore.apply` takes a request that `validation.validate_track_request` accepted and
writes it with Braze's semantics: attributes, then events, then purchases, all under one lock.
Standard attributes are kept as `standard_attributes` cleans them. `ProfileStore.delete` removes
profiles as `/users/delete` does.
Objects from the decoded request body are stored without copying: a body is decoded afresh for
every request and nothing else holds on to it.
"""

from __future__ import annotations

import copy
import threading
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from .config import DELETE_PATH, TRACK_PATH
from .standard_attributes import STANDARD_ATTRIBUTES, UNBILLED_ATTRIBUTES, clean_standard_value
from .validation import INPUT_ARRAYS, NON_ATTRIBUTE_KEYS, ValidatedRequest

DEFAULT_REQUEST_LOG_SIZE = 1000
NO_ANSWER = "no_answer"

FaultKind = Literal["error", "timeout", "ack_lost"]


def profile_key(obj: Mapping[str, Any]) -> str:
    """The store key of the profile an object addresses.

    external_id as is; a user alias as `alias:<alias_label>:<alias_name>`; a braze_id as
    `braze_id:<id>`. (An external_id that happens to look like those prefixes would collide;
    the sandbox accepts that.)
    """
    external_id = obj.get("external_id")
    if external_id is not None:
        return external_id
    alias = obj.get("user_alias")
    if alias is not None:
        return f"alias:{alias['alias_label']}:{alias['alias_name']}"
    return f"braze_id:{obj['braze_id']}"


def utc_now_iso() -> str:
    """Current UTC time as ISO 8601 with a `Z`, millisecond precision."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Profile:
    """One Braze user profile as the sandbox keeps it."""

    key: str
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    purchases: list[dict[str, Any]] = field(default_factory=list)

    def snapshot(self) -> dict[str, Any]:
        """A deep copy, safe to hand out while later requests keep changing the profile."""
        return {
            "external_id": self.key,
            "attributes": copy.deepcopy(self.attributes),
            "events": copy.deepcopy(self.events),
            "purchases": copy.deepcopy(self.purchases),
        }


@dataclass(frozen=True, slots=True)
class ProfileSummary:
    """One line of the HTML overview."""

    key: str
    attribute_count: int
    event_count: int
    purchase_count: int


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What one request wrote, for the 201 answer."""

    attributes_processed: int
    events_processed: int
    purchases_processed: int
    data_points: int


@dataclass(slots=True)
class _Stats:
    requests: int = 0
    requests_by_status: Counter[str] = field(default_factory=Counter)
    requests_by_endpoint: Counter[str] = field(default_factory=Counter)
    objects: Counter[str] = field(default_factory=Counter)
    data_points: int = 0
    events_stored: int = 0
    purchases_stored: int = 0
    errors: int = 0
    max_objects_in_request: int = 0
    rate_limited: int = 0
    faults_injected: int = 0
    timeouts: int = 0
    ack_lost: int = 0
    users_deleted: int = 0


class ProfileStore:
    """Profiles keyed by `profile_key`, plus statistics and a ring buffer of recent requests.

    Every public method takes the one lock, so it can be called from many handler threads.
    """

    def __init__(
        self, *, max_array_length: int = 500, request_log_size: int = DEFAULT_REQUEST_LOG_SIZE
    ) -> None:
        self.max_array_length = max_array_length
        self._lock = threading.Lock()
        self._profiles: dict[str, Profile] = {}
        self._stats = _Stats()
        self._request_log: deque[dict[str, Any]] = deque(maxlen=request_log_size)

    # --- writes ---------------------------------------------------------------------------

    def apply(self, request: ValidatedRequest, *, received_at: str | None = None) -> ApplyResult:
        """Write the valid objects of one request: attributes, then events, then purchases.

        Objects flagged `_update_existing_only` for a profile that does not exist are skipped
        silently (they still count as processed, as in Braze). Per-object errors are counted by
        `record_request`, which also sees requests whose every object was invalid.
        """
        received_at = received_at or utc_now_iso()
        data_points = events_stored = purchases_stored = 0
        with self._lock:
            for obj in request.attributes:
                profile = self._profile_for(obj)
                if profile is not None:
                    data_points += self._write_attributes(profile.attributes, obj)
            for obj in request.events:
                profile = self._profile_for(obj)
                if profile is not None:
                    stored = dict(obj)
                    stored["received_at"] = received_at
                    profile.events.append(stored)
                    events_stored += 1
            for obj in request.purchases:
                profile = self._profile_for(obj)
                if profile is not None:
                    stored = dict(obj)
                    stored.setdefault("quantity", 1)
                    stored["received_at"] = received_at
                    profile.purchases.append(stored)
                    purchases_stored += 1

            stats = self._stats
            stats.objects["attributes"] += len(request.attributes)
            stats.objects["events"] += len(request.events)
            stats.objects["purchases"] += len(request.purchases)
            stats.data_points += data_points
            stats.events_stored += events_stored
            stats.purchases_stored += purchases_stored
        return ApplyResult(
            attributes_processed=len(request.attributes),
            events_processed=len(request.events),
            purchases_processed=len(request.purchases),
            data_points=data_points,
        )

    def delete(self, keys: Iterable[str]) -> int:
        """Remove the profiles with these keys (as `profile_key` names them); returns how many
        existed. A later write to the same key starts a new, empty profile."""
        with self._lock:
            deleted = sum(self._profiles.pop(key, None) is not None for key in set(keys))
            self._stats.users_deleted += deleted
            return deleted

    def record_request(
        self,
        *,
        status: int | None,
        object_counts: Mapping[str, int],
        fault: FaultKind | None = None,
        errors: int = 0,
    ) -> None:
        """Count one `/users/track` request and log it; `status` None means no answer was sent.

        `errors` is the number of per-object errors the request produced.

        `faults_injected` counts every injected fault; `timeouts` and `ack_lost` are its parts.
        """
        entry = {
            "endpoint": TRACK_PATH,
            "status": status,
            "attributes": object_counts.get("attributes", 0),
            "events": object_counts.get("events", 0),
            "purchases": object_counts.get("purchases", 0),
            "errors": errors,
            "at": utc_now_iso(),
        }
        total = entry["attributes"] + entry["events"] + entry["purchases"]
        with self._lock:
            stats = self._stats
            stats.max_objects_in_request = max(stats.max_objects_in_request, total)
            stats.errors += errors
            self._count_request(entry, fault)

    def record_delete_request(
        self, *, status: int | None, identifiers: int, deleted: int = 0, fault: FaultKind | None = None
    ) -> None:
        """Count one `/users/delete` request and log it, like `record_request`.

        `identifiers` is how many the body named (whatever their validity); `deleted` how many
        profiles it removed.
        """
        entry = {
            "endpoint": DELETE_PATH,
            "status": status,
            "attributes": 0,
            "events": 0,
            "purchases": 0,
            "identifiers": identifiers,
            "deleted": deleted,
            "errors": 0,
            "at": utc_now_iso(),
        }
        with self._lock:
            self._count_request(entry, fault)

    def _count_request(self, entry: dict[str, Any], fault: FaultKind | None) -> None:
        """The counters every request moves; called with the lock held."""
        status = entry["status"]
        stats = self._stats
        stats.requests += 1
        stats.requests_by_status[NO_ANSWER if status is None else str(status)] += 1
        stats.requests_by_endpoint[entry["endpoint"]] += 1
        if status == 429:
            stats.rate_limited += 1
        if fault is not None:
            stats.faults_injected += 1
            if fault == "timeout":
                stats.timeouts += 1
            elif fault == "ack_lost":
                stats.ack_lost += 1
        self._request_log.append(entry)

    def reset(self) -> None:
        """Forget all profiles, statistics and logged requests."""
        with self._lock:
            self._profiles.clear()
            self._stats = _Stats()
            self._request_log.clear()

    # --- reads ----------------------------------------------------------------------------

    def profile(self, key: str) -> dict[str, Any] | None:
        """A snapshot of one profile (`external_id`, `attributes`, `events`, `purchases`)."""
        with self._lock:
            profile = self._profiles.get(key)
            return None if profile is None else profile.snapshot()

    def profile_keys(self) -> list[str]:
        """All profile keys, sorted."""
        with self._lock:
            return sorted(self._profiles)

    def profile_summaries(self, *, limit: int | None = None) -> list[ProfileSummary]:
        """Sorted one-line summaries (for the HTML overview)."""
        with self._lock:
            keys = sorted(self._profiles)[:limit]
            return [
                ProfileSummary(
                    key=key,
                    attribute_count=len(profile.attributes),
                    event_count=len(profile.events),
                    purchase_count=len(profile.purchases),
                )
                for key in keys
                for profile in (self._profiles[key],)
            ]

    def stats(self) -> dict[str, Any]:
        """Counters since the last reset, as plain JSON-ready values."""
        with self._lock:
            stats = self._stats
            return {
                "requests": stats.requests,
                "requests_by_status": dict(stats.requests_by_status),
                "requests_by_endpoint": dict(stats.requests_by_endpoint),
                "objects": {name: stats.objects[name] for name in INPUT_ARRAYS},
                "data_points": stats.data_points,
                "events_stored": stats.events_stored,
                "purchases_stored": stats.purchases_stored,
                "errors": stats.errors,
                "users": len(self._profiles),
                "max_objects_in_request": stats.max_objects_in_request,
                "rate_limited": stats.rate_limited,
                "faults_injected": stats.faults_injected,
                "timeouts": stats.timeouts,
                "ack_lost": stats.ack_lost,
                "users_deleted": stats.users_deleted,
            }

    def recent_requests(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The last `limit` logged requests (all kept ones if None), oldest first."""
        with self._lock:
            entries = list(self._request_log)
        if limit is not None:
            entries = entries[-limit:] if limit > 0 else []
        return [dict(entry) for entry in entries]

    # --- attribute semantics (called with the lock held) ----------------------------------

    def _profile_for(self, obj: dict[str, Any]) -> Profile | None:
        key = profile_key(obj)
        profile = self._profiles.get(key)
        if profile is None and not obj.get("_update_existing_only", False):
            profile = self._profiles[key] = Profile(key)
        return profile

    def _write_attributes(self, attributes: dict[str, Any], obj: dict[str, Any]) -> int:
        """Apply one attributes object; returns the data points it cost."""
        merge_objects = obj.get("_merge_objects", False)
        data_points = 0
        for name, value in obj.items():
            if name in NON_ATTRIBUTE_KEYS:
                continue
            if name in STANDARD_ATTRIBUTES:
                points = _write_standard_attribute(attributes, name, value)
                if name not in UNBILLED_ATTRIBUTES:
                    data_points += points
                continue
            kind = type(value)
            if kind is str or kind is int or kind is float or kind is bool:
                attributes[name] = value  # the common case, without a call
                points = 1
            else:
                points = self._write_attribute(attributes, name, value, merge_objects)
            data_points += points
        return data_points

    def _write_attribute(self, attributes: dict[str, Any], name: str, value: Any, merge_objects: bool) -> int:
        kind = type(value)
        if value is None:
            attributes.pop(name, None)
            return 0  # deletes are not billed
        if kind is list:
            if value and type(value[0]) is dict:
                attributes[name] = value
                return sum(len(item) for item in value)
            attributes[name] = _dedupe(value)
            return 1
        if kind is not dict:
            attributes[name] = value
            return 1
        current = attributes.get(name)
        if "inc" in value and len(value) == 1:
            if current is None:
                current = 0
            elif type(current) not in (int, float):
                return 0  # Braze rejects a type change silently; so does the sandbox
            attributes[name] = current + value["inc"]
            return 1
        if ("add" in value or "remove" in value) and value.keys() <= {"add", "remove"}:
            items = current if type(current) is list else []
            removed = {(type(item), item) for item in value.get("remove", ())}
            items = [item for item in items if (type(item), item) not in removed]
            items = _dedupe(items + value.get("add", []))
            # Braze keeps the newest elements once an array is full.
            attributes[name] = items[-self.max_array_length :]
            return 1
        if "$add" in value:
            items = current if type(current) is list else []
            attributes[name] = items + value["$add"]
            return sum(len(item) for item in value["$add"])
        if "$remove" in value:
            if type(current) is list:
                for rule in value["$remove"]:
                    current = [item for item in current if not _matches(item, rule)]
                attributes[name] = current
            return 0
        if "$update" in value:
            return _update_objects(current, value["$update"])
        # A nested object: replaced whole unless the request asked for a merge.
        if merge_objects and type(current) is dict:
            _deep_merge(current, value)
        else:
            attributes[name] = value
        return max(1, _leaf_count(value))


def _write_standard_attribute(attributes: dict[str, Any], name: str, value: Any) -> int:
    """Keep a validated standard attribute as Braze does; returns the data points it costs."""
    cleaned = clean_standard_value(name, value)
    if cleaned is None:
        attributes.pop(name, None)
        return 0  # deletes are not billed
    if name == "subscription_groups":
        # A request names only the groups it changes; the others keep their state.
        groups = attributes.get(name)
        attributes[name] = {**(groups if type(groups) is dict else {}), **cleaned}
    else:
        attributes[name] = cleaned
    return 1


def _dedupe(values: list[Any]) -> list[Any]:
    """Set semantics, first occurrence wins; 1 and True stay distinct as in JSON."""
    if len({type(item) for item in values}) <= 1:
        return list(dict.fromkeys(values))  # one type: plain equality is right, and faster
    seen: set[tuple[type, Any]] = set()
    unique = []
    for item in values:
        marker = (type(item), item)
        if marker not in seen:
            seen.add(marker)
            unique.append(item)
    return unique


def _matches(item: Any, rule: Mapping[str, Any]) -> bool:
    return type(item) is dict and item.get(rule["$identifier_key"]) == rule["$identifier_value"]


def _update_objects(current: Any, updates: list[dict[str, Any]]) -> int:
    """`$update`: deep-merge `$new_object` into every matching element; returns data points."""
    if type(current) is not list:
        return 0
    data_points = 0
    for update in updates:
        for item in current:
            if _matches(item, update):
                # A copy per element, so two elements never share one nested dict.
                _deep_merge(item, copy.deepcopy(update["$new_object"]))
                data_points += len(update["$new_object"])
    return data_points


def _deep_merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        current = target.get(key)
        if type(value) is dict and type(current) is dict and "$time" not in value:
            _deep_merge(current, value)
        else:
            target[key] = value


def _leaf_count(obj: Mapping[str, Any]) -> int:
    count = 0
    for value in obj.values():
        if type(value) is dict and "$time" not in value:
            count += _leaf_count(value)
        else:
            count += 1
    return count

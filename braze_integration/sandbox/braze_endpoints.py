"""Braze's REST endpoints as the sandbox answers them: `POST /users/track` and `POST /users/delete`.

Both pass the same gate, in Braze's order: the endpoint's own rate limit (429, with
`X-RateLimit-*` headers on every answer while a limit is set), injected faults (hangs, 500/503),
the key and its permission (401/403), then the body (415, 413, 411, invalid JSON). Each request
is counted and logged in the store, answered or not.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .config import DELETE_PATH, TRACK_PATH
from .deletion import delete_identifier_count, validate_delete_request
from .faults import InjectedFault
from .keys import USERS_DELETE, USERS_TRACK, Permission
from .store import FaultKind
from .validation import RequestRejected, object_counts, validate_track_request

if TYPE_CHECKING:
    from .httpd import SandboxRequestHandler

_ERROR_MESSAGES = {500: "Internal Server Error", 503: "Service Unavailable"}


def reject_json_constant(name: str) -> Any:
    """`parse_constant` for `json.loads`: NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not valid JSON")


class _Call:
    """One request to a Braze endpoint: its decoded body, its headers, and how to answer it.

    A subclass per endpoint names its path and permission and says how its requests are
    recorded in the store.
    """

    path: str
    permission: Permission

    def __init__(self, request: SandboxRequestHandler) -> None:
        self.request = request
        self.sandbox = request.sandbox
        self.body, self.too_large = request.read_body(self.sandbox.config.max_body_bytes)
        self.is_json = request.content_type_is_json()
        # Decode early so even refused requests are logged with what they carried.
        self.decoded: Any = None
        self.json_error: str | None = None
        if self.body is not None and self.is_json:
            try:
                self.decoded = json.loads(self.body, parse_constant=reject_json_constant)
            except (ValueError, RecursionError) as err:
                self.json_error = str(err)
        self.headers: dict[str, str] = {}

    def record(self, *, status: int | None, fault: FaultKind | None = None, **outcome: Any) -> None:
        """Count and log the request in the store (`status` None: no answer was sent)."""
        raise NotImplementedError

    def admitted(self) -> bool:
        """Pass the gate; False when it has already answered (or dropped) the request."""
        sandbox = self.sandbox
        decision = sandbox.check_rate_limit(self.path)
        if decision is not None:
            self.headers = decision.headers()
            if not decision.allowed:
                self.answer(429, {"message": "Rate limit exceeded"})
                return False

        fault = sandbox.fault_injector.before_processing()
        if fault is not None and fault.kind == "timeout":
            sandbox.pause(sandbox.fault_injector.hang_seconds)
            self.request.drop_without_answer()
            self.record(status=None, fault="timeout")
            return False
        if fault is None and sandbox.fault_injector.fails_for(self.external_ids()):
            fault = InjectedFault(kind="error", status=500)
        if fault is not None:
            status = fault.status or 500
            self.answer(status, {"message": _ERROR_MESSAGES.get(status, "Server Error")}, fault="error")
            return False

        access = sandbox.key_access(self.request.bearer_key(), self.permission)
        if access == "invalid":
            self.answer(401, {"message": "Invalid API Key"})
        elif access == "no_permission":
            detail = f"The API key does not have the {self.permission} permission."
            self.answer(403, {"message": "Access Denied", "detail": detail})
        elif not self.is_json:
            self.answer(415, {"message": "Unsupported Media Type: Content-Type must be application/json"})
        elif self.too_large:
            limit = sandbox.config.max_body_bytes
            self.answer(413, {"message": f"Payload Too Large: the body must be at most {limit} bytes"})
        elif self.body is None:
            self.answer(411, {"message": "Length Required: send the body with a Content-Length"})
        elif self.json_error is not None:
            self.answer(400, {"message": f"Invalid JSON: {self.json_error}"})
        else:
            return True
        return False

    def external_ids(self) -> set[str]:
        """The users the request names, for `fail_external_ids`."""
        return set()

    def answer_lost(self, **outcome: Any) -> bool:
        """True (and the connection closed unanswered) if the fault settings drop this answer."""
        if not self.sandbox.fault_injector.take_ack_lost():
            return False
        self.request.drop_without_answer()
        self.record(status=None, fault="ack_lost", **outcome)
        return True

    def answer(self, status: int, payload: dict[str, Any], *, fault: FaultKind | None = None, **outcome: Any) -> None:
        self.sandbox.pause(self.sandbox.fault_injector.latency_seconds)
        self.request.send_json(status, payload, self.headers)
        self.record(status=status, fault=fault, **outcome)


class _TrackCall(_Call):
    path = TRACK_PATH
    permission = USERS_TRACK

    def __init__(self, request: SandboxRequestHandler) -> None:
        super().__init__(request)
        self.counts = object_counts(self.decoded)

    def external_ids(self) -> set[str]:
        if not isinstance(self.decoded, dict):
            return set()
        return {obj["external_id"] for name in ("attributes", "events", "purchases")
                for obj in (self.decoded.get(name) if isinstance(self.decoded.get(name), list) else [])
                if isinstance(obj, dict) and isinstance(obj.get("external_id"), str)}

    def record(self, *, status: int | None, fault: FaultKind | None = None, errors: int = 0) -> None:
        self.sandbox.store.record_request(status=status, object_counts=self.counts, fault=fault, errors=errors)


class _DeleteCall(_Call):
    path = DELETE_PATH
    permission = USERS_DELETE

    def __init__(self, request: SandboxRequestHandler) -> None:
        super().__init__(request)
        self.identifiers = delete_identifier_count(self.decoded)

    def record(self, *, status: int | None, fault: FaultKind | None = None, deleted: int = 0) -> None:
        self.sandbox.store.record_delete_request(
            status=status, identifiers=self.identifiers, deleted=deleted, fault=fault
        )


def users_track(request: SandboxRequestHandler) -> None:
    """`POST /users/track`: validate, write the valid objects, list the invalid ones."""
    call = _TrackCall(request)
    store = call.sandbox.store
    if not call.admitted():
        return
    try:
        validated = validate_track_request(call.decoded, call.sandbox.limits, body_size=len(call.body or b""))
    except RequestRejected as rejection:
        payload: dict[str, Any] = {"message": rejection.message}
        if rejection.errors:
            payload["errors"] = rejection.errors
        call.answer(400, payload, errors=len(rejection.errors))
        return

    result = store.apply(validated)
    errors = len(validated.errors)
    if call.answer_lost(errors=errors):
        return
    payload = {
        "message": "success",
        "attributes_processed": result.attributes_processed,
        "events_processed": result.events_processed,
        "purchases_processed": result.purchases_processed,
    }
    if validated.errors:
        payload["errors"] = validated.errors
    call.answer(201, payload, errors=errors)


def users_delete(request: SandboxRequestHandler) -> None:
    """`POST /users/delete`: remove the named profiles; answers how many were deleted.

    `deleted` counts the profiles that existed (Braze counts the ids it queued; the sandbox
    deletes at once). Answered 201, like Braze's other REST writes.
    """
    call = _DeleteCall(request)
    store = call.sandbox.store
    if not call.admitted():
        return
    try:
        deletion = validate_delete_request(call.decoded)
    except RequestRejected as rejection:
        call.answer(400, {"message": rejection.message})
        return
    deleted = store.delete(deletion.profile_keys)
    if call.answer_lost(deleted=deleted):
        return
    call.answer(201, {"deleted": deleted, "message": "success"}, deleted=deleted)


ENDPOINTS: dict[str, Callable[[SandboxRequestHandler], None]] = {
    TRACK_PATH: users_track,
    DELETE_PATH: users_delete,
}
"""The Braze endpoints the sandbox serves, by path (POST only)."""

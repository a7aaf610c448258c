"""One exception tree for everything that can go wrong talking to Braze, and the one place that
decides what happens on each of Braze's answers.

``outcome_of(answer)`` turns a 2xx answer or a ``BrazeError`` into an ``Outcome``: what to do
next (send on, fail only the objects Braze named, retry with backoff, wait for the rate-limit
reset, pause the connection, split the request, or fail the objects), how to log the request and
why. ``braze_integration.delivery`` carries the outcome out and decides nothing itself.
Configuration errors are a separate class so retry code can never swallow them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import TrackResult


class Action(StrEnum):
    SENT = "sent"  # 2xx: every object was processed
    FAIL_INDEXED = "fail_indexed"  # 2xx naming refused objects: only those fail, the rest went through
    RETRY = "retry"  # transient: back off and send again
    WAIT = "wait"  # rate limited: nobody sends before the reset time
    PAUSE = "pause"  # credentials, permission or URL: keep the data, stop sending until fixed
    SPLIT = "split"  # the request as a whole was refused: halve it to isolate the bad objects
    DROP = "drop"  # the data itself is wrong: mark the objects failed, never resend as is


@dataclass(frozen=True)
class Outcome:
    """What one answer of Braze means for the request and everything in it.

    ``log_as`` is the ``SyncRequest.outcome`` recorded (the values of ``models.RequestOutcome``);
    ``kind`` is the error kind counted in reports (empty for a 2xx). ``object_errors`` are Braze's
    per-object errors (``input_array`` and ``index``); ``message`` is what failed objects are told,
    or for a pause what the connection page says.
    """

    action: Action
    log_as: str
    kind: str = ""
    object_errors: list[dict] = field(default_factory=list)
    message: str = ""
    wait: float = 0.0  # seconds before anyone may send again (rate limit)
    maybe_delivered: bool = False  # the request may have reached Braze: its events may be recorded twice


def outcome_of(answer: TrackResult | BrazeError) -> Outcome:
    """The outcome of a 2xx answer (``TrackResult``) or of a failed request (``BrazeError``)."""
    if isinstance(answer, BrazeError):
        return answer.outcome()
    if answer.errors:
        return Outcome(Action.FAIL_INDEXED, "partial", object_errors=list(answer.errors), message=answer.message)
    return Outcome(Action.SENT, "success", message=answer.message)


def refused_message(err: BrazeError) -> str:
    return f"Braze refused the request ({err.status}): {err.message}"


def auth_message(err: BrazeError) -> str:
    """What the connection page says when Braze refuses the credentials or the URL."""
    hint = {
        401: "Braze does not accept this API key (invalid key, another workspace's key, or the wrong instance URL).",
        403: "The API key lacks the users.track permission, or the account is inactive.",
        404: "The instance URL does not answer /users/track; check the REST endpoint.",
    }.get(err.status or 0, "Braze refused the credentials.")
    return f"{hint} Braze said: {err.message} (HTTP {err.status}). Sending is paused; fix it and press Connect."


class BrazeConfigurationError(Exception):
    """The connection is not usable as configured (no key, a refused URL). Never retried."""


class BrazeError(Exception):
    """A request to Braze did not succeed. ``message`` is Braze's own words when it gave any."""

    action: Action = Action.RETRY
    kind: str = "error"

    def __init__(self, message: str, *, status: int | None = None, body: Any = None, duration_ms: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body
        self.duration_ms = duration_ms

    @property
    def retryable(self) -> bool:
        return self.action in (Action.RETRY, Action.WAIT)

    def outcome(self) -> Outcome:
        return Outcome(Action.RETRY, "server_error", kind=self.kind, message=self.message)


class BrazeTransportError(BrazeError):
    """No answer: connection refused, reset, or timed out.

    ``maybe_delivered`` is true when the request may have reached Braze before the answer was lost
    (a read timeout or a dropped connection after sending): Braze has no idempotency key, so events
    in such a request can be recorded twice if it is sent again.
    """

    kind = "transport"

    def __init__(self, message: str, *, maybe_delivered: bool, **kwargs):
        super().__init__(message, **kwargs)
        self.maybe_delivered = maybe_delivered

    def outcome(self) -> Outcome:
        return Outcome(Action.RETRY, "transport", kind=self.kind, message=self.message,
                       maybe_delivered=self.maybe_delivered)


class BrazeServerError(BrazeError):
    kind = "server_error"


class BrazeRateLimited(BrazeError):
    action = Action.WAIT
    kind = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after

    def outcome(self) -> Outcome:
        return Outcome(Action.WAIT, "rate_limited", kind=self.kind, wait=self.retry_after,
                       message=f"Rate limited by Braze: {self.message}")


class BrazeAuthError(BrazeError):
    """401 (invalid key or wrong instance), 403 (missing permission) or 404 (wrong URL)."""

    action = Action.PAUSE
    kind = "auth"

    def outcome(self) -> Outcome:
        return Outcome(Action.PAUSE, "auth", kind=self.kind, message=auth_message(self))


class BrazeRequestRejected(BrazeError):
    """400 or 413 for the whole request. ``errors`` lists per-object problems when Braze gave them."""

    action = Action.SPLIT
    kind = "rejected"

    def __init__(self, message: str, *, errors: list[dict] | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.errors = errors or []

    def outcome(self) -> Outcome:
        if self.errors and self.status == 400:
            # Braze named the bad objects but processed none: all fail, the named ones with their reason.
            return Outcome(Action.DROP, "rejected", kind=self.kind, object_errors=list(self.errors),
                           message=self.message)
        # Refused as a whole without saying which object: halve it to isolate the bad ones.
        return Outcome(Action.SPLIT, "rejected", kind=self.kind, message=refused_message(self))


class BrazeClientBug(BrazeError):
    """415 and other 4xx that mean our request is malformed: dropping is safer than looping."""

    action = Action.DROP
    kind = "client_error"

    def outcome(self) -> Outcome:
        return Outcome(Action.DROP, "client_error", kind=self.kind, message=refused_message(self))

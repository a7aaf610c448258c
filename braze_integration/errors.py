"""One exception tree for everything that can go wrong talking to Braze.

Each error says what should happen next (``action``): retry later, wait for the rate limit, pause the
connection, split the request, or give up on the objects. ``braze_integration.delivery`` is the one
place that acts on it. Configuration errors are a separate class so retry code can never swallow them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Action(StrEnum):
    RETRY = "retry"  # transient: back off and send again
    WAIT = "wait"  # rate limited: nobody sends before the reset time
    PAUSE = "pause"  # credentials, permission or URL: keep the data, stop sending until fixed
    SPLIT = "split"  # the request as a whole was refused: halve it to isolate the bad objects
    DROP = "drop"  # the data itself is wrong: mark the objects failed, never resend as is


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


class BrazeServerError(BrazeError):
    kind = "server_error"


class BrazeRateLimited(BrazeError):
    action = Action.WAIT
    kind = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class BrazeAuthError(BrazeError):
    """401 (invalid key or wrong instance), 403 (missing permission) or 404 (wrong URL)."""

    action = Action.PAUSE
    kind = "auth"


class BrazeRequestRejected(BrazeError):
    """400 or 413 for the whole request. ``errors`` lists per-object problems when Braze gave them."""

    action = Action.SPLIT
    kind = "rejected"

    def __init__(self, message: str, *, errors: list[dict] | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.errors = errors or []


class BrazeClientBug(BrazeError):
    """415 and other 4xx that mean our request is malformed: dropping is safer than looping."""

    action = Action.DROP
    kind = "client_error"

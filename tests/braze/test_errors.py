"""Every answer Braze can give, through the real client over a fake HTTP session, and the outcome
``errors.outcome_of`` decides for it. No network, no database."""

from __future__ import annotations

import email.utils
import http.client
import io
import json
import time

import pytest
import urllib3
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ProtocolError, ReadTimeoutError

from braze_integration import errors
from braze_integration.client import BrazeClient
from braze_integration.errors import Action

OBJECT_ERROR = {"type": "'loyalty_points' must be a number", "input_array": "attributes", "index": 0}


class FakeBraze:
    """A connection pool that answers every request with one canned response, or raises what urllib3 raises."""

    def __init__(self, status: int = 201, body: dict | None = None, headers: dict | None = None,
                 raises: Exception | None = None):
        self.status, self.body, self.headers, self.raises = status, body or {}, headers or {}, raises

    def request(self, method, url, **kwargs):
        if self.raises is not None:
            raise self.raises
        return urllib3.HTTPResponse(body=io.BytesIO(json.dumps(self.body).encode()), headers=self.headers,
                                    status=self.status, reason=http.client.responses.get(self.status, ""),
                                    preload_content=False)


def answer_of(pool: FakeBraze) -> object:
    client = BrazeClient("https://rest.fra-01.braze.eu", "key-0123456789", pool=pool)
    try:
        return client.post_bytes(b'{"attributes": []}')
    except errors.BrazeError as err:
        return err


# answer -> (action, request log outcome, error kind counted, maybe delivered)
CASES = {
    "201 success": (FakeBraze(201, {"message": "success", "attributes_processed": 1}),
                    Action.SENT, "success", "", False),
    "201 with per-object errors": (FakeBraze(201, {"message": "success", "errors": [OBJECT_ERROR]}),
                                   Action.FAIL_INDEXED, "partial", "", False),
    "400 with per-object errors": (FakeBraze(400, {"message": "Valid data must be provided", "errors": [OBJECT_ERROR]}),
                                   Action.DROP, "rejected", "rejected", False),
    "400 without per-object errors": (FakeBraze(400, {"message": "Max Input Length Exceeded"}),
                                      Action.SPLIT, "rejected", "rejected", False),
    "401": (FakeBraze(401, {"message": "Invalid API Key"}), Action.PAUSE, "auth", "auth", False),
    "403": (FakeBraze(403, {"message": "Access Denied"}), Action.PAUSE, "auth", "auth", False),
    "404": (FakeBraze(404, {"message": "Not Found"}), Action.PAUSE, "auth", "auth", False),
    "3xx redirect": (FakeBraze(301, {}, {"Location": "https://elsewhere.example"}), Action.PAUSE, "auth", "auth", False),
    "413": (FakeBraze(413, {"message": "Payload Too Large"}), Action.SPLIT, "rejected", "rejected", False),
    "415": (FakeBraze(415, {"message": "Unsupported Media Type"}), Action.DROP, "client_error", "client_error", False),
    "429": (FakeBraze(429, {"message": "Rate limit exceeded"}, {"Retry-After": "7"}),
            Action.WAIT, "rate_limited", "rate_limited", False),
    "500": (FakeBraze(500, {"message": "Internal Server Error"}), Action.RETRY, "server_error", "server_error", False),
    "503": (FakeBraze(503, {"message": "Service Unavailable"}), Action.RETRY, "server_error", "server_error", False),
    "connect timeout": (FakeBraze(raises=ConnectTimeoutError("connect timed out")),
                        Action.RETRY, "transport", "transport", False),
    "read timeout": (FakeBraze(raises=ReadTimeoutError(None, "/users/track", "read timed out")),
                     Action.RETRY, "transport", "transport", True),
    "connection refused": (FakeBraze(raises=NewConnectionError(None, "[Errno 111] Connection refused")),
                           Action.RETRY, "transport", "transport", False),
    "lost answer (connection dropped after sending)": (
        FakeBraze(raises=ProtocolError("Connection aborted.", http.client.RemoteDisconnected("closed"))),
        Action.RETRY, "transport", "transport", True),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_given_an_answer_then_its_outcome_is_decided_in_one_place(case):
    adapter, action, log_as, kind, maybe_delivered = CASES[case]

    outcome = errors.outcome_of(answer_of(adapter))

    assert (outcome.action, outcome.log_as, outcome.kind, outcome.maybe_delivered) == (
        action, log_as, kind, maybe_delivered)


def test_given_per_object_errors_then_the_outcome_names_the_refused_objects():
    for status in (201, 400):
        outcome = errors.outcome_of(answer_of(FakeBraze(status, {"message": "m", "errors": [OBJECT_ERROR]})))
        assert outcome.object_errors == [OBJECT_ERROR]


def test_given_a_request_refused_as_a_whole_then_the_message_says_so_in_brazes_words():
    outcome = errors.outcome_of(answer_of(FakeBraze(415, {"message": "Unsupported Media Type"})))

    assert outcome.message == "Braze refused the request (415): Unsupported Media Type"


def test_given_a_401_then_the_pause_message_explains_the_key_and_quotes_braze():
    outcome = errors.outcome_of(answer_of(FakeBraze(401, {"message": "Invalid API Key"})))

    assert outcome.message.startswith("Braze does not accept this API key")
    assert "Braze said: Invalid API Key (HTTP 401)" in outcome.message


@pytest.mark.parametrize(("headers", "wait"), [
    (lambda now: {"X-RateLimit-Retry-After": "12"}, 12.0),
    (lambda now: {"Retry-After": "7"}, 7.0),
    (lambda now: {"Retry-After": email.utils.formatdate(now + 30, usegmt=True)}, 30.0),
    (lambda now: {"X-RateLimit-Reset": str(int(now + 45))}, 45.0),  # UTC epoch seconds
    (lambda now: {"X-RateLimit-Reset": "20"}, 20.0),  # seconds left
    (lambda now: {}, 1.0),  # no header: wait a second
], ids=["x-ratelimit-retry-after", "retry-after seconds", "retry-after http date", "x-ratelimit-reset epoch",
        "x-ratelimit-reset seconds left", "no header"])
def test_given_a_429_then_the_outcome_waits_until_the_reset_in_every_header_form(headers, wait):
    outcome = errors.outcome_of(answer_of(FakeBraze(429, {"message": "Rate limit exceeded"}, headers(time.time()))))

    assert outcome.action == Action.WAIT
    assert outcome.wait == pytest.approx(wait, abs=2.0)
    assert outcome.message == "Rate limited by Braze: Rate limit exceeded"

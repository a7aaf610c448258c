"""The ``Idempotency-Key`` header of ``POST /events`` and ``POST /events/bulk`` (see ``loyaltysync.idempotency``).

A client that sends a request again with the same key (per token's user, for 24 hours) and the same body
gets the first answer again, with ``Idempotent-Replayed: true``, and nothing is recorded twice. The same key
with another body (or on the other endpoint) is refused with 422 naming the header. A bad key is a 400.
Refusals of the request as a whole (400 invalid body, 401, 403, 413, 415, 429) are not remembered: the
client may fix the request and send it again with the same key.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from ..errors import LoyaltyError
from ..idempotency import Answer, idempotency_key_claim
from ..models import IdempotencyKey
from .exceptions import loyalty_error_body, loyalty_error_status

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Printable ASCII without spaces: UUIDs, ULIDs and the like; anything a header can carry unchanged.
KEY_PATTERN = r"^[!-~]{1,255}$"
_KEY = re.compile(KEY_PATTERN)

IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    HEADER,
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": KEY_PATTERN},
    OpenApiParameter.HEADER,
    required=False,
    description="Makes a retry safe: a request sent again with the same key (per API user, for 24 hours) and "
    "the same body is not recorded again; the first answer is returned with `Idempotent-Replayed: true`. "
    "The same key with a different body is refused with 422. 1-255 printable ASCII characters without "
    "spaces, e.g. a UUID.",
)


def idempotency_key_of(request: Request) -> str | None:
    """The request's key, ``None`` without the header; a malformed key is a 400 naming the header."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not _KEY.match(key):
        raise serializers.ValidationError({HEADER: ["must be 1-255 printable ASCII characters without spaces."]})
    return key


def idempotency_key_for(request: Request, key: str | None, *, operation: str) -> IdempotencyKey | None:
    """The stored key for this request (``None`` without one); 422 when it came with another request."""
    if key is None:
        return None
    return idempotency_key_claim(user=request.user, key=key, request_digest=_digest(operation, request.data))


def _digest(operation: str, data: Any) -> str:
    canonical = json.dumps([operation, data], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8", "backslashreplace")).hexdigest()


def as_json(body: Any) -> Any:
    """``body`` as the client receives it (so a replay answers exactly the same)."""
    return json.loads(JSONRenderer().render(body))


def answer_of_error(error: Exception) -> Answer | None:
    """A domain refusal is remembered as the answer; anything else is raised (the client may retry it)."""
    if isinstance(error, LoyaltyError):
        return loyalty_error_status(error), {"error": loyalty_error_body(error)}
    return None


def replayable_response(answer: Answer, *, replayed: bool) -> Response:
    status, body = answer
    response = Response(body, status=status)
    if replayed:
        response[REPLAYED_HEADER] = "true"
    return response

"""One error shape for every API answer that is not a success.

    {"error": {"code": "invalid", "message": "data.total: must be a positive number.",
               "fields": {"data.total": ["must be a positive number."]}}}

``code`` is stable and machine-readable, ``message`` is for people, ``fields`` maps the path of each
bad input (``member_id``, ``custom_fields.shoe_size``, ``data.items[0].price``, ``events[3]``) to its
problems and is empty when the error is not about an input field. ``details`` has one entry per
problem with its own code, for machines: ``[{"field": "data.total", "code": "min_value", "message":
"..."}]`` (codes such as ``required``, ``invalid``, ``invalid_choice``, ``min_value``, ``max_value``,
``max_length``, ``unknown_parameter``, ``unknown_field``).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from ..errors import (
    DuplicateTransaction,
    IdempotencyKeyReused,
    InsufficientPoints,
    InvalidData,
    LoyaltyError,
    MemberAlreadyExists,
    MemberErased,
    MemberInactive,
    MemberNotFound,
)
from ..transient import is_transient

# Most specific first. InsufficientPoints is a 409: the request is valid, the balance refuses it.
_STATUS = (
    (MemberNotFound, status.HTTP_404_NOT_FOUND),
    (MemberAlreadyExists, status.HTTP_409_CONFLICT),
    (MemberErased, status.HTTP_409_CONFLICT),
    (MemberInactive, status.HTTP_409_CONFLICT),
    (DuplicateTransaction, status.HTTP_409_CONFLICT),
    (InsufficientPoints, status.HTTP_409_CONFLICT),
    (IdempotencyKeyReused, status.HTTP_422_UNPROCESSABLE_ENTITY),
    (InvalidData, status.HTTP_400_BAD_REQUEST),
    (LoyaltyError, status.HTTP_400_BAD_REQUEST),
)

logger = logging.getLogger(__name__)

# The key that names the request body as a whole (DRF's non-field errors).
BODY = "body"


class RequestBodyTooLarge(exceptions.APIException):
    """413: the body is larger than ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (refused before it is read)."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"
    default_detail = "The request body is too large."

    def __init__(self, *, length: int | None, limit: int):
        size = f"{length} bytes" if length is not None else "too large"
        super().__init__(f"The request body is {size}; the API accepts at most {limit} bytes.")


def loyalty_error_status(error: LoyaltyError) -> int:
    """The HTTP status for a domain error."""
    for error_class, code in _STATUS:
        if isinstance(error, error_class):
            return code
    return status.HTTP_400_BAD_REQUEST


def error_body(
    code: str,
    message: str,
    fields: dict[str, list[str]] | None = None,
    field_codes: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """The inner ``{"code", "message", "fields", "details"}`` object (also used per event by the bulk
    endpoint). ``field_codes`` gives a code per message of ``fields`` (``code`` where it gives none).

    Messages may quote the client's input (DRF's "X is not a valid choice"): text that is not valid
    UTF-8 (a lone surrogate from a ``\\ud800`` escape) is escaped, so the answer can always be encoded.
    """
    fields = fields or {}
    field_codes = field_codes or {}
    details = []
    for path, problems in fields.items():
        codes = field_codes.get(path, [])
        for index, problem in enumerate(problems):
            details.append(
                {
                    "field": _printable(path),
                    "code": codes[index] if index < len(codes) else code,
                    "message": _printable(problem),
                }
            )
    return {
        "code": code,
        "message": _printable(message),
        "fields": {
            _printable(path): [_printable(problem) for problem in problems] for path, problems in fields.items()
        },
        "details": details,
    }


def _printable(text: Any) -> str:
    text = str(text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def loyalty_error_body(error: LoyaltyError) -> dict[str, Any]:
    return error_body(error.code, error.message, error.errors, error.error_codes)


def validation_error_body(detail: Any, *, prefix: str = "") -> dict[str, Any]:
    """The error body for DRF validation ``detail`` (nested dicts/lists), paths flattened; each
    ``ErrorDetail``'s code (``required``, ``invalid_choice``, ``min_value``...) goes with its message."""
    fields: dict[str, list[str]] = {}
    codes: dict[str, list[str]] = {}
    _flatten(detail, prefix, fields, codes)
    return error_body("invalid", _summary(fields), fields, codes)


def _summary(fields: dict[str, list[str]]) -> str:
    parts = [f"{path}: {' '.join(problems)}" for path, problems in list(fields.items())[:3]]
    more = len(fields) - len(parts)
    return "Invalid input. " + "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if key == api_settings.NON_FIELD_ERRORS_KEY:
        return path or BODY
    return f"{path}.{key}" if path else str(key)


def _flatten(detail: Any, path: str, fields: dict[str, list[str]], codes: dict[str, list[str]]) -> None:
    if isinstance(detail, dict):
        for key, value in detail.items():
            _flatten(value, _join(path, key), fields, codes)
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            for item in detail:
                _add(item, path, fields, codes)
        else:
            for index, item in enumerate(detail):
                if item:  # DRF reports valid list items as empty dicts
                    _flatten(item, _join(path, index), fields, codes)
    else:
        _add(detail, path, fields, codes)


def _add(item: Any, path: str, fields: dict[str, list[str]], codes: dict[str, list[str]]) -> None:
    fields.setdefault(path or BODY, []).append(str(item))
    codes.setdefault(path or BODY, []).append(getattr(item, "code", None) or "invalid")


def _django_validation_fields(error: DjangoValidationError) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(path -> messages, path -> codes) of a Django ``ValidationError``."""
    by_field = error.error_dict if hasattr(error, "error_dict") else {BODY: error.error_list}
    fields: dict[str, list[str]] = {}
    codes: dict[str, list[str]] = {}
    for key, errors in by_field.items():
        path = BODY if key == "__all__" else key
        for item in errors:
            for message in item.messages:
                fields.setdefault(path, []).append(message)
                codes.setdefault(path, []).append(item.code or "invalid")
    return fields, codes


class TemporarilyUnavailable(exceptions.APIException):
    """503: the database refused the work for a passing reason (a deadlock, a lock held too long) after
    retries; nothing of it was written, so the client may send it again."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "unavailable"
    default_detail = "The database is busy; nothing was recorded. Please retry."


def unexpected_error_result(error: Exception, *, where: str) -> dict[str, Any]:
    """``status`` and ``error`` for one part of a request that failed unexpectedly (its transaction was
    rolled back): 503 for a transient database error, 500 otherwise. The error is logged with its traceback;
    the answer does not quote it (it may hold data)."""
    if is_transient(error):
        unavailable = TemporarilyUnavailable()
        return {"status": unavailable.status_code, "error": error_body(unavailable.default_code, str(unavailable.detail))}
    logger.error("Unexpected error in %s; it was not recorded.", where, exc_info=error)
    return {
        "status": status.HTTP_500_INTERNAL_SERVER_ERROR,
        "error": error_body("server_error", "An unexpected error occurred; this was not recorded. Please retry."),
    }


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's ``EXCEPTION_HANDLER``: every error as ``{"error": {"code", "message", "fields", "details"}}``."""
    if is_transient(exc):
        exc = TemporarilyUnavailable()
        exc.wait = 1  # DRF's handler turns it into Retry-After
    if isinstance(exc, LoyaltyError):
        return Response({"error": loyalty_error_body(exc)}, status=loyalty_error_status(exc))
    if isinstance(exc, DjangoValidationError):
        fields, codes = _django_validation_fields(exc)
        return Response({"error": error_body("invalid", _summary(fields), fields, codes)}, status=400)
    if isinstance(exc, RequestDataTooBig):  # Django read a body (request.body, a form) over the limit
        exc = RequestBodyTooLarge(length=None, limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    # DRF's own handler sets WWW-Authenticate / Retry-After and rolls back the transaction.
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    assert isinstance(exc, exceptions.APIException)
    if isinstance(exc, exceptions.ValidationError):
        body = validation_error_body(exc.detail)
    else:
        code = exc.get_codes()
        code = code if isinstance(code, str) else exc.default_code
        message = str(exc.detail) if not isinstance(exc.detail, list | dict) else str(exc.default_detail)
        fields = {BODY: [message]} if isinstance(exc, exceptions.ParseError | RequestBodyTooLarge) else {}
        body = error_body(code, message, fields)
    response.data = {"error": body}
    return response

"""Cursor pagination for every list of the API.

A cursor names a position in the ordering (e.g. "after member_id M-17"), not a page number, so rows
inserted while a client pages never shift a row onto the next page twice or make one disappear.
``?page_size=`` may be set up to ``API_MAX_PAGE_SIZE``; a bad value or cursor is a 400 naming it.
"""

from __future__ import annotations

from base64 import b64decode, b64encode
from urllib import parse

from django.conf import settings
from django.core.exceptions import FieldDoesNotExist, ValidationError
from rest_framework import exceptions, serializers
from rest_framework.pagination import CursorPagination
from rest_framework.settings import api_settings
from rest_framework.utils.urls import replace_query_param

from loyaltysync.fieldtypes import string_problem

PAGE_SIZE_PARAMETER = "page_size"
CURSOR_PARAMETER = "cursor"
_NO_LINK = "Invalid cursor: use the `next` or `previous` link."


class CursorPage(CursorPagination):
    """``{"next": url|null, "previous": url|null, "results": [...]}``.

    The order is the queryset's (a selector's, or the ``ordering`` filter's), with the primary key added
    as a tie-breaker so that rows with equal values (the same ``updated_at``) keep one order.
    """

    page_size_query_param = PAGE_SIZE_PARAMETER
    cursor_query_param = CURSOR_PARAMETER
    ordering = ("-id",)

    @property
    def max_page_size(self) -> int:
        # Read per request, so a changed setting (tests, reloads) applies.
        return settings.API_MAX_PAGE_SIZE

    def get_page_size(self, request) -> int:
        raw = request.query_params.get(PAGE_SIZE_PARAMETER)
        if raw is None:
            return api_settings.PAGE_SIZE
        try:
            size = int(raw)
        except ValueError:
            raise _invalid(PAGE_SIZE_PARAMETER, "A whole number is required.", "invalid") from None
        if size < 1:
            raise _invalid(PAGE_SIZE_PARAMETER, "Must be at least 1.", "min_value")
        if size > self.max_page_size:
            raise _invalid(PAGE_SIZE_PARAMETER, f"Must be at most {self.max_page_size}.", "max_value")
        return size

    def get_ordering(self, request, queryset, view) -> tuple[str, ...]:
        self._model = queryset.model  # the cursor's position is a value of its ordering field (``decode_cursor``)
        ordering = tuple(str(field) for field in queryset.query.order_by) or self.ordering
        if not _is_unique(queryset.model, ordering[0]) and not any(
            field.lstrip("-") in ("id", "pk") for field in ordering
        ):
            ordering = (*ordering, "-id" if ordering[0].startswith("-") else "id")
        return ordering

    def encode_cursor(self, cursor):
        """DRF's cursor, plus the ordering it is a position in (``x``): a position read in another
        ordering would silently skip or repeat rows, or fail in the database."""
        tokens = {"x": ",".join(self.ordering)}
        if cursor.offset != 0:
            tokens["o"] = str(cursor.offset)
        if cursor.reverse:
            tokens["r"] = "1"
        if cursor.position is not None:
            tokens["p"] = cursor.position
        encoded = b64encode(parse.urlencode(tokens, doseq=True).encode("ascii")).decode("ascii")
        return replace_query_param(self.base_url, self.cursor_query_param, encoded)

    def decode_cursor(self, request):
        """DRF's decoding, and what it lets through refused too: a cursor no link gave (no ordering in it:
        "AAAA" read as the first page), one made for another ordering, and a position that is no value of
        the ordering's field (a NUL in it failed in PostgreSQL, a bad date answered with Django's words)."""
        try:
            cursor = super().decode_cursor(request)
        except exceptions.NotFound:
            raise _invalid(CURSOR_PARAMETER, _NO_LINK, "invalid") from None
        if cursor is None:
            return None
        tokens = parse.parse_qs(b64decode(request.query_params[self.cursor_query_param].encode("ascii")).decode("ascii"))
        made_for = tokens.get("x", [None])[0]
        if made_for is None:
            raise _invalid(CURSOR_PARAMETER, _NO_LINK, "invalid")
        if made_for != ",".join(self.ordering):
            raise _invalid(CURSOR_PARAMETER, "This cursor is a position in another ordering: use the `next` or "
                                             "`previous` link with the ordering it came from.", "invalid")
        if cursor.position is not None and not self._position_valid(cursor.position):
            raise _invalid(CURSOR_PARAMETER, _NO_LINK, "invalid")
        return cursor

    def _position_valid(self, position: str) -> bool:
        if string_problem(position):
            return False
        try:
            self._model._meta.get_field(self.ordering[0].lstrip("-")).to_python(position)
        except FieldDoesNotExist:
            return True  # an annotation: the database compares it
        except (ValidationError, ValueError, TypeError, OverflowError):
            return False
        return True

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == PAGE_SIZE_PARAMETER:
                parameter["schema"].update({"minimum": 1, "maximum": self.max_page_size})
                parameter["description"] = (
                    f"Rows per page, 1-{self.max_page_size} (default {api_settings.PAGE_SIZE})."
                )
            elif parameter["name"] == CURSOR_PARAMETER:
                parameter["description"] = "Where the page starts: copy it from a `next` or `previous` link."
        return parameters


def _is_unique(model, ordering_field: str) -> bool:
    try:
        field = model._meta.get_field(ordering_field.lstrip("-"))
    except FieldDoesNotExist:
        return False
    return bool(field.unique or field.primary_key)


def _invalid(parameter: str, message: str, code: str) -> serializers.ValidationError:
    return serializers.ValidationError({parameter: [serializers.ErrorDetail(message, code=code)]})

"""Request guards that apply to every page outside the API (which names each bad parameter itself)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

API_PREFIX = "/api/"


def query_nul_refused(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """A NUL character in the query string is a 400, not a 500: the admin's list filters pass their
    values to the database as they are, and PostgreSQL refuses NUL in text (``?status__exact=%00``)."""

    def middleware(request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(API_PREFIX):
            for name, values in request.GET.lists():
                if "\x00" in name or any("\x00" in value for value in values):
                    return HttpResponseBadRequest(
                        f"The address's parameter {name.replace(chr(0), '%00')!r} holds a NUL character (%00).",
                        content_type="text/plain; charset=utf-8")
        return get_response(request)

    return middleware

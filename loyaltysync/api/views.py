"""REST API views: parse the request, call one service or selector, serialize the answer.

Errors are raised as exceptions and shaped by ``api.exceptions.api_exception_handler``.
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors, services
from ..errors import LoyaltyError
from ..idempotency import Answer, idempotent_answers, idempotent_run
from ..models import EventSource, IdempotencyKey, LoyaltyEvent, PointsTransaction
from .event_schemas import EVENT_EXAMPLES, BulkEventsRequestDoc, event_input
from .exceptions import unexpected_error_result
from .filters import KnownQueryParameters, MemberFilter
from .idempotency import (
    IDEMPOTENCY_KEY_PARAMETER,
    answer_of_error,
    as_json,
    idempotency_key_for,
    idempotency_key_of,
    replayable_response,
)
from .pagination import CURSOR_PARAMETER, PAGE_SIZE_PARAMETER
from .parsers import StrictJSONParser
from .permissions import BodyWithinLimit, EraseScope, EventsScope, IsApiUser, MembersScope
from .serializers import (
    BulkEventsRequestSerializer,
    BulkEventsResponseSerializer,
    ErrorSerializer,
    EventInputSerializer,
    EventRecordedSerializer,
    ExpiringPointsSerializer,
    LedgerEntrySerializer,
    LoyaltyEventSerializer,
    MemberCreateSerializer,
    MemberLedgerSerializer,
    MemberSerializer,
    MemberWriteSerializer,
)
from .throttling import RateLimitHeadersMixin

_ERROR_DESCRIPTIONS = {
    400: "Invalid input: `error.fields` names each bad field (query parameter, body field) and its problem; "
    "`error.details` gives each problem a machine-readable code.",
    401: "No or invalid credentials: send `Authorization: Token <key>`.",
    403: "The credentials do not allow this.",
    404: "Unknown member.",
    409: "Conflict: duplicate transaction id, a member that exists already (or was erased), not enough "
    "spendable points, or points for an opted-out member.",
    413: "The body is larger than the API accepts (`DATA_UPLOAD_MAX_MEMORY_SIZE`, 1 MiB by default).",
    415: "The body is not JSON.",
    422: "The `Idempotency-Key` was sent before with a different request: `error.fields` names the header.",
    429: "Too many requests: wait for `Retry-After` seconds.",
    503: "The database was busy (after retries); nothing was recorded: retry after `Retry-After` seconds.",
}


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    """Documented error answers; every one has the ``{"error": {...}}`` shape. Every endpoint may answer
    401, 403, 429 and 503 (the database busy after retries); every endpoint that takes a body may answer
    400, 413 and 415."""
    return {
        code: OpenApiResponse(ErrorSerializer, description=_ERROR_DESCRIPTIONS[code])
        for code in sorted({*codes, 401, 403, 429, 503})
    }


def _body_errors(*codes: int) -> dict[int, OpenApiResponse]:
    return _errors(400, 413, 415, *codes)


_MEMBER_ID_PARAMETER = OpenApiParameter(
    "member_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The member's id."
)


class TokenAuthSchema(AutoSchema):
    """Documents token authentication only: sessions serve the browsable API, not API clients."""

    def get_auth(self):
        return [requirement for requirement in super().get_auth() if "cookieAuth" not in requirement]


class _ApiView(RateLimitHeadersMixin, APIView):
    permission_classes = (IsApiUser, BodyWithinLimit)
    parser_classes = (StrictJSONParser,)
    schema = TokenAuthSchema()


class _ListView(RateLimitHeadersMixin, generics.ListAPIView):
    """A list: cursor-paginated (``api.pagination``), unknown query parameters refused (``api.filters``)."""

    parser_classes = (StrictJSONParser,)
    schema = TokenAuthSchema()
    filter_backends = (KnownQueryParameters, DjangoFilterBackend)


class MemberListCreateView(_ListView):
    """Members: list (filters, ordering) and create."""

    permission_classes = (IsApiUser, MembersScope, BodyWithinLimit)
    serializer_class = MemberSerializer
    filterset_class = MemberFilter

    def get_queryset(self):
        return selectors.member_list()

    @extend_schema(
        operation_id="members_list",
        summary="List members",
        description="Ordered by `member_id` unless `ordering` says otherwise; cursor-paginated: follow `next`. "
        "For an incremental sync, ask for `?updated_since=<the time of your last run>&ordering=updated_at`. "
        "An unknown query parameter is a 400 naming it.",
        responses={200: MemberSerializer(many=True), **_errors(400)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="members_create",
        summary="Create a member",
        description="An active new member is enrolled: an `opt_in` event is recorded.",
        request=MemberCreateSerializer,
        responses={201: MemberSerializer, **_body_errors(409)},
    )
    def post(self, request: Request) -> Response:
        serializer = MemberCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = dict(serializer.validated_data)
        member = services.member_create(
            member_id=values.pop("member_id"),
            custom_fields=values.pop("custom_fields", None),
            source=EventSource.API,
            **values,
        )
        return Response(MemberSerializer(member).data, status=status.HTTP_201_CREATED)


class MemberDetailView(_ApiView):
    """One member: read, change profile and custom fields, erase."""

    permission_classes = (IsApiUser, MembersScope, BodyWithinLimit)

    def get_permissions(self):
        if self.request.method == "DELETE":
            return [IsApiUser(), EraseScope()]
        return super().get_permissions()

    @extend_schema(
        operation_id="members_retrieve",
        summary="Get a member",
        parameters=[_MEMBER_ID_PARAMETER],
        responses={200: MemberSerializer, **_errors(404)},
    )
    def get(self, request: Request, member_id: str) -> Response:
        return Response(MemberSerializer(selectors.member_get(member_id=member_id)).data)

    @extend_schema(
        operation_id="members_partial_update",
        summary="Change a member's profile and custom fields",
        description="Computed fields (points, purchases, tier, timestamps) cannot be written: "
        "sending one answers 400 naming it. Custom fields are merged; null clears one.",
        parameters=[_MEMBER_ID_PARAMETER],
        request=MemberWriteSerializer,
        responses={200: MemberSerializer, **_body_errors(404)},
    )
    def patch(self, request: Request, member_id: str) -> Response:
        member = selectors.member_get(member_id=member_id)
        serializer = MemberWriteSerializer(data=request.data, partial=True, context={"member": member})
        serializer.is_valid(raise_exception=True)
        profile = dict(serializer.validated_data)
        member = services.member_update(
            member=member,
            profile=profile,
            custom_fields=profile.pop("custom_fields", None),
            source=EventSource.API,
        )
        return Response(MemberSerializer(member).data)

    @extend_schema(
        operation_id="members_erase",
        summary="Erase a member (right to be forgotten)",
        description="Deletes the member's personal data and history by the erasure policy (README: "
        "\"Members' data and consent\") and deletes its Braze profile. Needs the `loyaltysync.erase_members` "
        "permission. The id can never be enrolled again; nothing about it is sent to Braze again.",
        parameters=[_MEMBER_ID_PARAMETER],
        responses={204: None, **_errors(404)},
    )
    def delete(self, request: Request, member_id: str) -> Response:
        services.member_erase(member_id=member_id, erased_by=request.user.get_username(), source=EventSource.API)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberEventsView(_ListView):
    """A member's loyalty events, newest first."""

    permission_classes = (IsApiUser, MembersScope)
    serializer_class = LoyaltyEventSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no member
            return LoyaltyEvent.objects.none()
        member = selectors.member_get(member_id=self.kwargs["member_id"])
        return selectors.member_events(member=member)

    @extend_schema(
        operation_id="members_events_list",
        summary="List a member's events",
        parameters=[_MEMBER_ID_PARAMETER],
        responses={200: LoyaltyEventSerializer(many=True), **_errors(400, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class _LedgerSchema(TokenAuthSchema):
    """The ledger answers an object (the member's balances, ``expiring``) around a page of rows: documented
    as that object, with the pagination's query parameters."""

    def _is_list_view(self, serializer=None) -> bool:
        return False

    def get_override_parameters(self):
        return [
            *super().get_override_parameters(),
            OpenApiParameter(
                CURSOR_PARAMETER, OpenApiTypes.STR, description="Where the page starts: from a `next` link."
            ),
            OpenApiParameter(
                PAGE_SIZE_PARAMETER,
                {"type": "integer", "minimum": 1, "maximum": settings.API_MAX_PAGE_SIZE},
                description="Rows per page.",
            ),
        ]


class MemberLedgerView(_ListView):
    """A member's points ledger, newest first, with the points that expire soon."""

    permission_classes = (IsApiUser, MembersScope)
    serializer_class = LedgerEntrySerializer
    schema = _LedgerSchema()

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return PointsTransaction.objects.none()
        self.member = selectors.member_get(member_id=self.kwargs["member_id"])
        return selectors.member_ledger(member=self.member)

    @extend_schema(
        operation_id="members_ledger",
        summary="Get a member's points ledger",
        description="Every change of points (earn, spend, expire, adjust, refund), newest first and "
        "cursor-paginated, with when earned points become spendable and when they expire; `expiring` sums "
        f"what expires in the next {selectors.EXPIRING_SOON_DAYS} days unless spent first.",
        parameters=[_MEMBER_ID_PARAMETER],
        responses={200: MemberLedgerSerializer, **_errors(400, 404)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        expiring = selectors.member_points_expiring(member=self.member)
        body = {
            "member_id": self.member.member_id,
            "points_spendable": self.member.points_spendable,
            "points_pending": self.member.points_pending,
            "expiring": ExpiringPointsSerializer(expiring).data,
            **self.get_paginated_response(self.get_serializer(page, many=True).data).data,
        }
        return Response(body)


def _record(values: dict[str, Any]) -> tuple[Any, Any]:
    return services.event_record(
        member_id=values["customer"], action=values["action"], data=values["data"], source=EventSource.API
    )


def _event_answer(values: dict[str, Any]) -> Answer:
    member, event = _record(values)
    body = {"event": LoyaltyEventSerializer(event).data, "member": MemberSerializer(member).data}
    return status.HTTP_201_CREATED, as_json(body)


def _bulk_event_answer(values: dict[str, Any]) -> Answer:
    _, event = _record(values)
    return status.HTTP_201_CREATED, as_json({"event": LoyaltyEventSerializer(event).data})


class EventCreateView(_ApiView):
    """Record one loyalty event (Antavo's shape)."""

    permission_classes = (IsApiUser, EventsScope, BodyWithinLimit)

    @extend_schema(
        operation_id="events_create",
        summary="Record a loyalty event",
        description="One schema per `action` (`oneOf`): the actions the engine handles have typed `data`; "
        "a custom action the program declared (admin: Custom actions) is recorded as is.\n\n"
        "With an `Idempotency-Key` header, sending the same request again records nothing new and "
        "answers as the first time (also a refusal such as 409), with `Idempotent-Replayed: true`.",
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        request=event_input(),
        examples=EVENT_EXAMPLES,
        responses={201: EventRecordedSerializer, **_body_errors(404, 409, 422)},
    )
    def post(self, request: Request) -> Response:
        key = idempotency_key_of(request)
        serializer = EventInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        values = serializer.validated_data
        stored_key = idempotency_key_for(request, key, operation="events_create")
        if stored_key is None:
            return replayable_response(_event_answer(values), replayed=False)
        answer, replayed = idempotent_run(
            idempotency_key=stored_key,
            part=0,
            work=functools.partial(_event_answer, values),
            answer_of_error=answer_of_error,
        )
        return replayable_response(answer, replayed=replayed)


class EventBulkView(_ApiView):
    """Record many events; each one on its own, answered in order."""

    permission_classes = (IsApiUser, EventsScope, BodyWithinLimit)

    @extend_schema(
        operation_id="events_bulk_create",
        summary="Record loyalty events in bulk",
        description="Each event is recorded in its own transaction and answered in `results`, in order: one "
        "refused event (unknown member, invalid data, duplicate transaction, not enough points) does not stop "
        "the others, and exactly the events answered 201 were recorded (an event that failed unexpectedly is "
        'answered 500 or 503 and was not recorded). The request fails as a whole (400) when it is not `{"events": '
        "[...]}`, has too many events, or an event does not have the documented shape (e.g. `data` not an "
        "object): then `error.fields` names it as `events[<index>].<field>` and nothing is recorded.\n\n"
        "With an `Idempotency-Key` header, sending the same request again records no event twice: events "
        "answered before are answered the same (`Idempotent-Replayed: true` when all were), events not "
        "recorded before (500, 503, or a request cut off half way) are recorded now.",
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        request=BulkEventsRequestDoc,
        responses={200: BulkEventsResponseSerializer, **_body_errors(422)},
    )
    def post(self, request: Request) -> Response:
        key = idempotency_key_of(request)
        serializer = BulkEventsRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        stored_key = idempotency_key_for(request, key, operation="events_bulk_create")
        stored = idempotent_answers(idempotency_key=stored_key) if stored_key else {}
        results, replayed_all = [], stored_key is not None
        for index, values in enumerate(serializer.validated_data["events"]):
            if index in stored:
                answer, replayed = stored[index], True
            else:
                answer, replayed = self._one(index, values, stored_key)
            results.append({"index": index, "status": answer[0], **answer[1], "replayed": replayed})
            replayed_all = replayed_all and replayed
        errors = sum(1 for result in results if result["status"] != status.HTTP_201_CREATED)
        return replayable_response(
            (status.HTTP_200_OK, {"results": results, "total": len(results), "errors": errors}), replayed=replayed_all
        )

    @staticmethod
    def _one(index: int, values: dict[str, Any], stored_key: IdempotencyKey | None) -> tuple[Answer, bool]:
        """One event in its own transaction; whatever goes wrong with it is its own answer, so the response
        always says exactly which events were recorded."""
        try:
            if stored_key is None:
                try:
                    return _bulk_event_answer(values), False
                except LoyaltyError as error:
                    return answer_of_error(error), False
            return idempotent_run(
                idempotency_key=stored_key,
                part=index,
                work=functools.partial(_bulk_event_answer, values),
                answer_of_error=answer_of_error,
            )
        except Exception as error:
            result = unexpected_error_result(error, where=f"events[{index}]")
            return (result["status"], {"error": result["error"]}), False

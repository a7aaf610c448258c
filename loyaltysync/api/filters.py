"""Query parameters of the API's lists: django-filter FilterSets, and a backend that refuses the unknown.

A FilterSet validates each parameter with a form field (``updated_since`` must be an ISO 8601 date and
time, ``status`` one of the statuses), answers 400 naming the parameter and its problem, and documents
itself in the OpenAPI schema. Parameters a list does not know are refused, so a typo such as
``?updated_sinse=`` is a 400 rather than every member.
"""

from __future__ import annotations

import datetime as dt

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from rest_framework import serializers
from rest_framework.filters import BaseFilterBackend

from .. import selectors
from ..models import Member, MemberStatus
from ..services import path_key
from .pagination import CURSOR_PARAMETER, PAGE_SIZE_PARAMETER

# Accepted by every list: pagination, and DRF's format override for the browsable API.
COMMON_PARAMETERS = frozenset({CURSOR_PARAMETER, PAGE_SIZE_PARAMETER, "format"})


def _no_nul(value: str) -> None:
    # Some databases refuse NUL characters in queries.
    if "\x00" in value:
        raise ValidationError("Must not contain NUL characters.", code="invalid")


class _MomentField(django_filters.fields.IsoDateTimeField):
    """An ISO 8601 moment that exists in UTC too: ``9999-12-31T23:59:59-01:00`` does not (the year
    10000), and comparing with it would fail in the database rather than in the form."""

    def to_python(self, value):
        moment = super().to_python(value)
        if moment is not None and moment.tzinfo is not None:
            try:
                moment.astimezone(dt.UTC)
            except OverflowError:
                raise forms.ValidationError("Must be between 0001-01-01 and 9999-12-31 in UTC.",
                                            code="invalid") from None
        return moment


class _MomentFilter(django_filters.IsoDateTimeFilter):
    field_class = _MomentField


class _MemberFilterForm(forms.Form):
    def clean_ordering(self) -> list[str] | None:
        # The list's cursor is a position in one field's order; "updated_at,member_id" would page by the first.
        ordering = self.cleaned_data["ordering"]
        if ordering and len(ordering) > 1:
            raise ValidationError("Give one field to sort by, not a list.", code="one_field")
        return ordering


class MemberFilter(django_filters.FilterSet):
    """Filters of ``GET /members/``."""

    updated_since = _MomentFilter(
        field_name="updated_at",
        lookup_expr="gte",
        label="Only members changed at or after this moment (ISO 8601, e.g. 2026-01-31T00:00:00Z).",
    )
    status = django_filters.ChoiceFilter(choices=MemberStatus.choices, label="Only members with this status.")
    tier = django_filters.CharFilter(
        field_name="tier__name",
        lookup_expr="iexact",
        max_length=64,
        validators=[_no_nul],
        label="Only members of this tier (name, any case).",
    )
    search = django_filters.CharFilter(
        method="filter_search",
        max_length=255,
        validators=[_no_nul],
        label="Text in member id, e-mail, first or last name.",
    )
    ordering = django_filters.OrderingFilter(
        fields=("member_id", "updated_at", "created_at"),
        label="Sort by `member_id` (the default), `updated_at` or `created_at`; `-` first for descending.",
    )

    class Meta:
        model = Member
        form = _MemberFilterForm
        fields = ("updated_since", "status", "tier", "search", "ordering")

    def filter_search(self, queryset: QuerySet[Member], name: str, value: str) -> QuerySet[Member]:
        return selectors.member_search(members=queryset, term=value)


class KnownQueryParameters(BaseFilterBackend):
    """Refuses query parameters the list does not know (400, each named) before anything is filtered."""

    def filter_queryset(self, request, queryset, view):
        known = set(COMMON_PARAMETERS)
        filterset_class = getattr(view, "filterset_class", None)
        if filterset_class is not None:
            known.update(filterset_class.base_filters)
        unknown = sorted(name for name in request.query_params if name not in known)
        # ?status=active&status=opted_out would silently use the last one.
        repeated = sorted(name for name, values in request.query_params.lists() if name in known and len(values) > 1)
        if repeated:
            raise serializers.ValidationError({
                path_key(name): [serializers.ErrorDetail("Given more than once; give it once.", code="repeated_parameter")]
                for name in repeated
            })
        if unknown:
            accepted = ", ".join(sorted(known - {"format"}))
            raise serializers.ValidationError(
                {
                    path_key(name): [serializers.ErrorDetail(f"Unknown query parameter; this list accepts: {accepted}.",
                                                   code="unknown_parameter")]
                    for name in unknown
                }
            )
        return queryset

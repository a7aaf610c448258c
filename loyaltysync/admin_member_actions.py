"""Member page actions for staff: adjust points (with a required reason) and record an event.

Both go through ``services.event_record``, as the API's events do: the same checks, the same ledger
rows, the same listeners (Braze, workflows). The event is in the member's events with the source
"Admin", and the admin's history of the member says who did it and why.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from . import services
from .errors import LoyaltyError
from .models import EventSource, Member
from .services.validation import MAX_POINTS_PER_EVENT


class PointsAdjustForm(forms.Form):
    points = forms.IntegerField(
        min_value=-MAX_POINTS_PER_EVENT,
        max_value=MAX_POINTS_PER_EVENT,
        help_text="Positive adds points (an adjustment that expires like earned points); negative takes "
        "spendable points away, oldest first.",
    )
    reason = forms.CharField(max_length=255, help_text="Why: kept with the ledger row and the event.")

    def clean_points(self) -> int:
        points = self.cleaned_data["points"]
        if points == 0:
            raise forms.ValidationError("Give a number of points other than 0.", code="min_value")
        return points

    def event(self) -> tuple[str, dict[str, Any]]:
        points = self.cleaned_data["points"]
        action = "point_add" if points > 0 else "point_spend"
        return action, {"points": abs(points), "reason": self.cleaned_data["reason"]}

    def summary(self) -> str:
        return f"Adjusted points by {self.cleaned_data['points']:+d}: {self.cleaned_data['reason']}"

    # Where a service's field path lands on this form.
    PATHS = {"data.points": "points", "data.reason": "reason"}


class EventRecordForm(forms.Form):
    action = forms.CharField(
        max_length=64,
        help_text="checkout, refund, opt_in, opt_out, profile, point_add, point_spend, or a custom action "
        "declared under Custom actions (e.g. store_visit).",
    )
    data = forms.JSONField(
        required=False,
        initial=dict,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 60}),
        help_text='The event\'s data as JSON, as the API takes it, e.g. {"transaction_id": "T-1", "total": 80, '
        '"currency": "EUR"}.',
    )

    def event(self) -> tuple[str, dict[str, Any]]:
        return self.cleaned_data["action"], self.cleaned_data.get("data") or {}

    def summary(self) -> str:
        return f"Recorded the event {self.cleaned_data['action']}"

    PATHS = {"action": "action", "data": "data"}


def _record(request: HttpRequest, model_admin: ModelAdmin, object_id: str, form_class, title: str) -> HttpResponse:
    member = get_object_or_404(Member, pk=object_id)
    if not model_admin.has_change_permission(request, member):
        raise PermissionDenied
    form = form_class(request.POST or None)
    if request.method == "POST" and form.is_valid():
        action, data = form.event()
        try:
            _, event = services.event_record(
                member_id=member.member_id, action=action, data=data, source=EventSource.ADMIN
            )
        except LoyaltyError as error:
            _form_errors(form, error)
        else:
            summary = form.summary()
            model_admin.log_change(request, member, f"{summary} (event #{event.pk})")
            model_admin.message_user(request, f"{summary} for {member.member_id}.", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:loyaltysync_member_change", args=[member.pk]))
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"{title}: {member.member_id}",
        "opts": model_admin.opts,
        "original": member,
        "form": form,
        "member_url": reverse("admin:loyaltysync_member_change", args=[member.pk]),
    }
    return TemplateResponse(request, "admin/loyaltysync/member/action_form.html", context)


def _form_errors(form: forms.Form, error: LoyaltyError) -> None:
    """The service's problems next to the form's fields (``data.total`` under *data*, naming the path)."""
    if not error.errors:
        form.add_error(None, error.message)
        return
    for where, problems in error.errors.items():
        field = form.PATHS.get(where) or form.PATHS.get(where.split(".", 1)[0])
        for problem in problems:
            form.add_error(field, problem if where in form.PATHS else f"{where}: {problem}")


def points_adjust(request: HttpRequest, model_admin: ModelAdmin, object_id: str) -> HttpResponse:
    return _record(request, model_admin, object_id, PointsAdjustForm, "Adjust points")


def event_record(request: HttpRequest, model_admin: ModelAdmin, object_id: str) -> HttpResponse:
    return _record(request, model_admin, object_id, EventRecordForm, "Record an event")


def member_action_urls(model_admin: ModelAdmin) -> list:
    wrap = model_admin.admin_site.admin_view
    return [
        path(
            "<path:object_id>/adjust-points/",
            wrap(lambda request, object_id: points_adjust(request, model_admin, object_id)),
            name="loyaltysync_member_adjust_points",
        ),
        path(
            "<path:object_id>/record-event/",
            wrap(lambda request, object_id: event_record(request, model_admin, object_id)),
            name="loyaltysync_member_record_event",
        ),
    ]

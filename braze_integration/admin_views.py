"""The admin's own pages: Connect, the dashboard, the resync offer, Sync now and the payload preview.

Each view checks a permission, parses its input and calls one service; what it shows comes from
the services (``sync_status_summary``, ``resync_dry_run``, ``member_payload_preview``) plus two
small read-only queries for the dashboard's chart, kept here as selectors because only this page
needs them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, F, Sum
from django.db.models.functions import TruncHour
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from loyaltysync.models import Member

from . import resync, services
from .models import (
    Connection,
    ConnectionStatus,
    MemberSyncState,
    OutboxStatus,
    RequestOutcome,
    ResyncRun,
    SyncRequest,
    SyncStatus,
)

RESYNC_TASK = "braze_integration.tasks.resync_run"
PREVIEW_LIMIT = 20

# Who may do what, beyond Django's model permissions. Sending (Sync now, retry, resync) is part of
# managing the connection, so it takes the managers' permission.
VERIFY_PERMISSION = "braze_integration.verify_connection"
SEND_PERMISSION = "braze_integration.change_connection"


def can_send(request: HttpRequest) -> bool:
    return request.user.has_perm(SEND_PERMISSION)


def changelist_url(model_name: str, **params: Any) -> str:
    url = reverse(f"admin:braze_integration_{model_name}_changelist")
    return f"{url}?{urlencode(params)}" if params else url


# --- Connect ---------------------------------------------------------------------------------------


def connection_connect(request: HttpRequest, model_admin: ModelAdmin, object_id: str) -> HttpResponse:
    """The Connect button: check the URL and key with Braze and show what Braze said."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not request.user.has_perm(VERIFY_PERMISSION):
        raise PermissionDenied
    connection = get_object_or_404(Connection, pk=object_id)
    result = services.connection_verify(connection=connection)
    level = messages.SUCCESS if result.ok else messages.ERROR
    model_admin.message_user(request, result.message, level)
    return HttpResponseRedirect(reverse("admin:braze_integration_connection_change", args=[connection.pk]))


# --- dashboard -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HourBar:
    start: datetime
    objects: int
    requests: int
    url: str
    height: float = 0.0
    x: int = 0
    y: float = 0.0


def objects_per_hour(*, hours: int = 24, now: datetime | None = None) -> list[tuple[datetime, int, int]]:
    """(hour start, objects sent, requests) for each of the last ``hours`` hours, oldest first (UTC)."""
    now = now or timezone.now()
    first = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    rows = (
        SyncRequest.objects.filter(created_at__gte=first)
        .annotate(hour=TruncHour("created_at", tzinfo=UTC))
        .values("hour")
        .annotate(
            objects=Sum(F("attributes_count") + F("events_count") + F("purchases_count")),
            requests=Count("pk"),
        )
        .values_list("hour", "objects", "requests")
    )
    found = {hour.astimezone(UTC): (objects or 0, count or 0) for hour, objects, count in rows}
    return [
        (first + timedelta(hours=i), *found.get(first + timedelta(hours=i), (0, 0))) for i in range(hours)
    ]


def _chart(
    bars: list[tuple[datetime, int, int]], *, height: int = 100, bar_width: int = 18, gap: int = 4
) -> dict:
    top = max((objects for _, objects, _ in bars), default=0) or 1
    shown = []
    for index, (start, objects, count) in enumerate(bars):
        url = changelist_url(
            "syncrequest",
            created_at__gte=start.isoformat(),
            created_at__lt=(start + timedelta(hours=1)).isoformat(),
        )
        bar_height = max(1.0, round(height * objects / top, 1)) if objects else 0.0
        shown.append(
            HourBar(
                start=start,
                objects=objects,
                requests=count,
                url=url,
                height=bar_height,
                x=index * (bar_width + gap),
                y=height - bar_height,
            )
        )
    return {
        "bars": shown,
        "max": top if any(b.objects for b in shown) else 0,
        "height": height,
        "bar_width": bar_width,
        "width": len(bars) * (bar_width + gap),
        "total": sum(b.objects for b in shown),
    }


def _age(seconds: float) -> str:
    if not seconds:
        return "—"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def dashboard(request: HttpRequest, model_admin: ModelAdmin) -> HttpResponse:
    """Members synced / pending / failed / dead, today's traffic and errors, and the last 24 hours."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    summary = services.sync_status_summary()
    now = timezone.now()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)  # the day sync_status_summary counts
    today_param = {"created_at__gte": today.isoformat()}
    members = [
        (
            SyncStatus(status).label,
            summary["members"].get(status, 0),
            changelist_url("membersyncstate", status__exact=status),
            status,
        )
        for status in (SyncStatus.SYNCED, SyncStatus.PENDING, SyncStatus.FAILED, SyncStatus.DEAD)
    ]
    errors = [
        (
            RequestOutcome(outcome).label if outcome in RequestOutcome.values else outcome,
            count,
            changelist_url("syncrequest", outcome__exact=outcome, **today_param),
        )
        for outcome, count in sorted(summary["errors_today"].items(), key=lambda item: -item[1])
        if count
    ]
    outbox = [
        (
            OutboxStatus(status).label,
            summary["outbox"].get(status, 0),
            changelist_url("outboxitem", status__exact=status),
            status,
        )
        for status in OutboxStatus.values
    ]
    connection = services.connection_active()
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Braze sync dashboard",
        "opts": model_admin.opts,
        "summary": summary,
        "connection": connection,
        "connection_url": reverse("admin:braze_integration_connection_change", args=[connection.pk])
        if connection
        else reverse("admin:braze_integration_connection_add"),
        "members": members,
        "oldest_pending": _age(summary["oldest_pending_seconds"]),
        "oldest_pending_url": changelist_url("membersyncstate", status__exact=SyncStatus.PENDING),
        "requests_today_url": changelist_url("syncrequest", **today_param),
        "errors": errors,
        "rate_limited": summary["errors_today"].get(RequestOutcome.RATE_LIMITED, 0),
        "rate_limited_url": changelist_url(
            "syncrequest", outcome__exact=RequestOutcome.RATE_LIMITED, **today_param
        ),
        "outbox": outbox,
        "oldest_outbox_pending": _age(summary["oldest_outbox_pending_seconds"]),
        "upstream": [(name, backlog["waiting"], _age(backlog["oldest_seconds"]))
                     for name, backlog in summary["upstream"].items()],
        "outbox_pending_url": changelist_url("outboxitem", status__exact=OutboxStatus.PENDING),
        "ambiguous_url": changelist_url("outboxitem", ambiguous="yes"),
        "chart": _chart(objects_per_hour(now=now)),
        "resync_runs_url": changelist_url("resyncrun"),
        "latest_run": ResyncRun.objects.first(),
        "now": now,
        "worker_last_seen": _ago_or_never(summary["worker_last_seen_seconds"]),
        "last_success": _ago_or_never(summary["last_success_seconds"]),
        "alarms": list(summary["alarms"].values()),
    }
    return TemplateResponse(request, "admin/braze_integration/dashboard.html", context)


def _ago_or_never(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return f"{_age(max(seconds, 1.0))} ago"


# --- resync after a mapping change ------------------------------------------------------------------


def _selection_from(request: HttpRequest) -> resync.Selection:
    source = request.POST if request.method == "POST" else request.GET
    fields = [f for f in source.getlist("fields") if f]
    clear = [f for f in source.getlist("clear") if f]
    # Clearing alone goes to the members Braze holds the attributes for; anything else to every member.
    return resync.Selection(all=bool(fields) or not clear, fields=fields, clear=clear)


def resync_offer(request: HttpRequest, model_admin: ModelAdmin) -> HttpResponse:
    """GET: what a resync would send (the dry run). POST: start it in the background."""
    if not can_send(request):
        raise PermissionDenied
    selection = _selection_from(request)
    connection = services.connection_active()
    back = (
        reverse("admin:braze_integration_connection_change", args=[connection.pk])
        if connection
        else reverse("admin:braze_integration_connection_changelist")
    )
    if request.method == "POST":
        try:
            run = resync.resync_start(selection=selection)
        except resync.ResyncError as err:
            model_admin.message_user(request, f"The resync did not start: {err}", messages.ERROR)
            return HttpResponseRedirect(back)
        transaction.on_commit(lambda: _queue_resync(run.pk))
        model_admin.message_user(
            request,
            f"Resync #{run.pk} started in the background for {run.total} members; this page shows its progress.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:braze_integration_resyncrun_change", args=[run.pk]))
    report, problem = None, ""
    try:
        report = resync.resync_dry_run(selection=selection)
    except resync.ResyncError as err:
        problem = str(err)
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Resync members to Braze?",
        "opts": model_admin.opts,
        "selection": selection,
        "report": report,
        "problem": problem,
        "sample": json.dumps(report.sample, indent=2, ensure_ascii=False) if report and report.sample else "",
        "back_url": back,
        "connection": connection,
    }
    return TemplateResponse(request, "admin/braze_integration/resync.html", context)


def _queue_resync(run_id: int) -> None:
    from django_q.tasks import async_task

    async_task(RESYNC_TASK, run_id, task_name=f"braze-resync-{run_id}")


# --- the member page -------------------------------------------------------------------------------


def _sync_message(member_ids: list[int], result: services.FlushResult, *, count_word: str) -> tuple[str, int]:
    """What Sync now did, in words, with Braze's own words for members it refused."""
    report = result.report
    parts = []
    if report.members_sent:
        parts.append(f"{report.members_sent} {count_word} sent to Braze")
    if report.members_unchanged:
        parts.append(f"{report.members_unchanged} unchanged (Braze already has these values)")
    if report.members_failed:
        parts.append(f"{report.members_failed} refused by Braze")
    if report.members_retrying:
        parts.append(f"{report.members_retrying} will be retried")
    states = dict(
        MemberSyncState.objects.filter(pk__in=member_ids).values_list("status").annotate(n=Count("pk"))
    )
    all_synced = states.get(SyncStatus.SYNCED, 0) == len(member_ids)
    if result.stopped:
        # A worker may have taken the members first (their save queued a flush): say where they stand now.
        parts.append(f"stopped: {result.stopped}")
        parts.append(
            "now "
            + ", ".join(f"{n} {SyncStatus(status).label.lower()}" for status, n in sorted(states.items()))
        )
    level = messages.SUCCESS
    if report.members_failed or report.members_retrying or (result.stopped and not all_synced):
        level = messages.WARNING if report.members_sent else messages.ERROR
        errors = list(
            MemberSyncState.objects.filter(pk__in=member_ids)
            .exclude(last_error="")
            .values_list("member__member_id", "last_error")[:3]
        )
        if errors:
            parts.append("Braze said: " + "; ".join(f"{mid}: {error}" for mid, error in errors))
    text = "; ".join(parts) or "Nothing to send"
    return text[:1].upper() + text[1:] + ".", level


def member_sync_now(request: HttpRequest, model_admin: ModelAdmin, object_id: str) -> HttpResponse:
    """The member page's Sync now: send every mapped field of this member now and say what Braze answered."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not can_send(request):
        raise PermissionDenied
    member = get_object_or_404(Member, pk=object_id)
    result = services.member_sync_now(member_ids=[member.pk], force=True, trigger="manual")
    text, level = _sync_message([member.pk], result, count_word="member")
    model_admin.message_user(request, text, level)
    return HttpResponseRedirect(reverse("admin:loyaltysync_member_change", args=[member.pk]))


def members_sync_now(request: HttpRequest, model_admin: ModelAdmin, member_ids: list[int]) -> None:
    """The changelist action: send the selected members (only what Braze does not have yet)."""
    result = services.member_sync_now(member_ids=member_ids, trigger="manual")
    text, level = _sync_message(member_ids, result, count_word="member(s)")
    model_admin.message_user(request, text, level)


def payload_preview(request: HttpRequest, model_admin: ModelAdmin, members: list[Member]) -> HttpResponse:
    """What the next sync of each selected member would send (nothing is sent)."""
    previews = [
        (
            member,
            json.dumps(
                services.member_payload_preview(member=member), indent=2, ensure_ascii=False, default=str
            ),
        )
        for member in members[:PREVIEW_LIMIT]
    ]
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Braze payload preview",
        "opts": model_admin.opts,
        "previews": previews,
        "left_out": max(0, len(members) - PREVIEW_LIMIT),
        "back_url": reverse("admin:loyaltysync_member_changelist"),
    }
    return TemplateResponse(request, "admin/braze_integration/payload_preview.html", context)


def connection_state(connection: Connection | None) -> tuple[str, str]:
    """(words, css modifier) for a connection's state."""
    if connection is None:
        return "No active connection", "never"
    modifier = {ConnectionStatus.CONNECTED: "ok", ConnectionStatus.NEEDS_ATTENTION: "bad"}.get(
        connection.status, "never"
    )
    return ConnectionStatus(connection.status).label, modifier

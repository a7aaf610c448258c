"""The member page's Braze sync panel (state, last error, the requests that carried the member, what
the next sync would send, Sync now), the member changelist's two Braze actions, and its Braze sync
column and filter.

Registered in the loyalty Member admin's panel and column registries; shown only to users with a Braze
permission.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from loyaltysync.member_panels import (
    MemberAction,
    MemberListColumn,
    MemberPanel,
    member_list_column_register,
    member_panel_register,
)
from loyaltysync.models import Member

from . import admin_views, queue, services
from .admin_display import OUTCOME_BADGE, SYNC_BADGE, pretty_json, state_badge, when
from .models import MemberSyncState, SyncRequest, SyncRequestMember, SyncStatus

REQUESTS_ON_MEMBER_PAGE = 20


def can_see_braze(request: HttpRequest) -> bool:
    """Staff without any Braze permission see nothing of Braze."""
    return request.user.has_module_perms("braze_integration")


def braze_state(member: Member, *, with_button: bool) -> str:
    folded = queue.changes_fold_for_reading()
    state = MemberSyncState.objects.filter(pk=member.pk).first()
    # A save no fold has taken yet (this page's own transaction does not fold) is a change not in Braze yet.
    unfolded = folded is None and queue.changes_unfolded(member.pk)
    if state is None and not unfolded:
        words = format_html("{} never sent", state_badge("Not synced", "never"))
    elif state is None:
        words = format_html("{} never sent · changes not in Braze yet", state_badge(SyncStatus.PENDING.label, SYNC_BADGE[SyncStatus.PENDING]))
    else:
        behind = state.version - state.synced_version + (1 if unfolded else 0)
        status = SyncStatus.PENDING if unfolded else SyncStatus(state.status)
        words = format_html(
            "{} last synced {} · {} · {} attempt(s)",
            state_badge(status.label, SYNC_BADGE.get(status, "never")),
            when(state.last_synced_at),
            f"{behind} change(s) not in Braze yet" if behind > 0 else "Braze is up to date",
            state.attempts,
        )
    if not with_button:
        return words
    # ``formaction`` sends the page's own form (and its CSRF token) to the Sync now view: no nested form.
    return format_html(
        '{} <button type="submit" class="button braze-sync-now" formaction="{}" formnovalidate>Sync now</button>',
        words,
        reverse("admin:loyaltysync_member_braze_sync", args=[member.pk]),
    )


def braze_requests(member: Member) -> str:
    rows = [
        (row.request, row.object_count, row.error)
        for row in SyncRequestMember.objects.filter(member=member)
        .select_related("request")
        .order_by("-request_id")[:REQUESTS_ON_MEMBER_PAGE]
    ]
    # A full resync keeps one row per request, not per member: its request is the state's last one.
    last_id = MemberSyncState.objects.filter(pk=member.pk).values_list("last_request_id", flat=True).first()
    if last_id and last_id not in {request.pk for request, _, _ in rows}:
        last = SyncRequest.objects.filter(pk=last_id).first()
        if last is not None:
            rows = sorted([*rows, (last, "—", "")], key=lambda row: -row[0].pk)[:REQUESTS_ON_MEMBER_PAGE]
    body = format_html_join(
        "",
        "<tr><td><a href='{}'>#{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                reverse("admin:braze_integration_syncrequest_change", args=[request.pk]),
                request.pk,
                when(request.created_at),
                request.trigger,
                state_badge(request.get_outcome_display(), OUTCOME_BADGE.get(request.outcome, "bad")),
                request.http_status or "—",
                object_count,
                error or request.message,
            )
            for request, object_count, error in rows
        ),
    )
    if not body:
        return "No request has carried this member yet."
    every = reverse("admin:braze_integration_syncrequest_changelist") + f"?q={member.member_id}"
    return format_html(
        '<table class="braze-table"><tr><th>Request</th><th>When</th><th>Trigger</th>'
        "<th>Outcome</th><th>HTTP</th><th>Objects</th><th>Braze's message</th></tr>{}</table>"
        "<p><a href='{}'>Every request of this member</a></p>",
        body,
        every,
    )


def panel_context(request: HttpRequest, member: Member) -> dict:
    state = MemberSyncState.objects.filter(pk=member.pk).only("last_error", "last_error_kind").first()
    unsendable = bool(state and state.last_error_kind == queue.UNSENDABLE)
    return {
        "state": braze_state(member, with_button=admin_views.can_send(request)),
        "last_error": state.last_error if state and state.last_error and not unsendable else "—",
        # Attributes Braze cannot take, left out while the others were sent: named with the reason.
        "unsendable": state.last_error if unsendable else "",
        "requests": braze_requests(member),
        "requests_title": f"Last {REQUESTS_ON_MEMBER_PAGE} requests",
        "payload": pretty_json(services.member_payload_preview(member=member)),
    }


def sync_now_action(model_admin, request, queryset):
    admin_views.members_sync_now(request, model_admin, list(queryset.values_list("pk", flat=True)))


def payload_preview_action(model_admin, request, queryset):
    return admin_views.payload_preview(request, model_admin, list(queryset))


def panel_urls(model_admin) -> list:
    wrap = model_admin.admin_site.admin_view
    return [
        path(
            "<path:object_id>/braze-sync/",
            wrap(lambda request, object_id: admin_views.member_sync_now(request, model_admin, object_id)),
            name="loyaltysync_member_braze_sync",
        ),
    ]


BRAZE_PANEL = MemberPanel(
    key="braze",
    template="admin/braze_integration/member_panel.html",
    context=panel_context,
    permission=can_see_braze,
    actions=(
        MemberAction("braze_sync_now", "Sync to Braze now", sync_now_action, admin_views.can_send),
        MemberAction("braze_payload_preview", "Preview Braze payload", payload_preview_action, can_see_braze),
    ),
    urls=panel_urls,
)
member_panel_register(BRAZE_PANEL)


NEVER_SYNCED = "never"


class BrazeSyncFilter(admin.SimpleListFilter):
    """The member list by Braze sync state, including members Braze has never been sent."""

    title = "Braze sync"
    parameter_name = "braze_sync"

    def lookups(self, request, model_admin):
        return [(NEVER_SYNCED, "Not synced yet"), *SyncStatus.choices]

    def queryset(self, request, queryset):
        if self.value() == NEVER_SYNCED:
            return queryset.filter(braze_sync__isnull=True)
        if self.value() in SyncStatus.values:
            return queryset.filter(braze_sync__status=self.value())
        return queryset


def braze_list_state(member: Member) -> str:
    """The member's sync state as a badge, read from the row the list joined (no query per row)."""
    try:
        state = member.braze_sync
    except MemberSyncState.DoesNotExist:
        return state_badge("Not synced", "never")
    return state_badge(state.get_status_display(), SYNC_BADGE.get(state.status, "never"))


def _with_sync_state(members):
    queue.changes_fold_for_reading()  # members saved a moment ago show as pending
    return members.select_related("braze_sync")


member_list_column_register(
    MemberListColumn(
        key="braze_sync_state",
        description="Braze sync",
        display=braze_list_state,
        permission=can_see_braze,
        prepare=_with_sync_state,
        list_filter=BrazeSyncFilter,
    )
)

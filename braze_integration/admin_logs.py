"""The sync logs in the admin: requests, sync states, the outbox and resync runs.

They follow django-q2's task admin: nothing can be added, changed or deleted, every field is
read-only, and one action puts the work back in the queue.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from loyaltysync.admin_readonly import ReadOnlyAdmin

from . import admin_views, queue, services
from .admin_display import OUTCOME_BADGE, SYNC_BADGE, BrazeMedia, member_link, pretty_json, state_badge
from .models import (
    MemberSyncState,
    OutboxItem,
    OutboxStatus,
    RequestOutcome,
    ResyncRun,
    ResyncStatus,
    SyncRequest,
    SyncRequestMember,
)

# --- logs ----------------------------------------------------------------------------------------


class LogAdmin(ReadOnlyAdmin):
    """A log: nothing is added, changed or deleted here; every field is shown read-only."""

    Media = BrazeMedia

    def has_send_permission(self, request) -> bool:
        return admin_views.can_send(request)

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, *(f.name for f in self.model._meta.fields)]


@admin.register(SyncRequest)
class SyncRequestAdmin(LogAdmin):
    list_display = [
        "id",
        "created_at",
        "trigger",
        "outcome_badge",
        "http",
        "milliseconds",
        "objects",
        "data_points",
        "short_message",
    ]
    list_filter = ["outcome", "trigger", "created_at", "maybe_delivered"]
    search_fields = ["message", "members__member__member_id"]
    date_hierarchy = "created_at"
    fields = [
        "connection",
        "created_at",
        "trigger",
        "outcome",
        "http_status",
        "duration_ms",
        "message",
        "attributes_count",
        "events_count",
        "purchases_count",
        "bytes_sent",
        "data_points",
        "maybe_delivered",
        "errors_pretty",
        "members_carried",
    ]
    readonly_fields = ["errors_pretty", "members_carried"]
    actions = ["retry_members"]

    @admin.display(description="Outcome", ordering="outcome")
    def outcome_badge(self, obj: SyncRequest) -> str:
        return state_badge(obj.get_outcome_display(), OUTCOME_BADGE.get(obj.outcome, "bad"))

    @admin.display(description="HTTP", ordering="http_status")
    def http(self, obj: SyncRequest) -> str:
        return str(obj.http_status or "—")

    @admin.display(description="ms", ordering="duration_ms")
    def milliseconds(self, obj: SyncRequest) -> str:
        return "—" if obj.duration_ms is None else str(obj.duration_ms)

    @admin.display(description="Objects")
    def objects(self, obj: SyncRequest) -> int:
        return obj.object_count

    @admin.display(description="Braze's message")
    def short_message(self, obj: SyncRequest) -> str:
        return obj.message if len(obj.message) <= 60 else obj.message[:59] + "…"

    @admin.display(description="Objects Braze refused")
    def errors_pretty(self, obj: SyncRequest) -> str:
        return pretty_json(obj.errors) if obj.errors and obj.outcome != RequestOutcome.SENDING else "—"

    @admin.display(description="Members it carried")
    def members_carried(self, obj: SyncRequest) -> str:
        rows = (
            SyncRequestMember.objects.filter(request=obj)
            .select_related("member")
            .order_by("member__member_id")
        )
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (member_link(row.member_id, row.member.member_id), row.object_count, row.error or "accepted")
                for row in rows[:500]
            ),
        )
        return (
            format_html(
                '<table class="braze-table"><tr><th>Member</th><th>Objects</th><th>Result</th></tr>{}'
                "</table>",
                body,
            )
            if body
            else "—"
        )

    @admin.action(description="Retry members of these requests", permissions=["send"])
    def retry_members(self, request, queryset):
        member_ids = list(
            SyncRequestMember.objects.filter(request__in=queryset)
            .values_list("member_id", flat=True)
            .distinct()
        )
        with transaction.atomic():
            count = services.member_sync_retry(member_ids=member_ids)
            # Re-enqueue every member carried, so their failed events go too; what Braze already has is not resent.
            services.member_sync_enqueue(member_ids=member_ids)
        self.message_user(
            request,
            f"{count} failed or dead-lettered member(s) put back in the queue; all {len(member_ids)} member(s) "
            "carried by these requests are checked again (what Braze already has is not sent again).",
            messages.SUCCESS,
        )


@admin.register(MemberSyncState)
class MemberSyncStateAdmin(LogAdmin):
    list_display = [
        "member_link",
        "status_badge",
        "dirty_since",
        "attempts",
        "next_attempt_at",
        "last_synced_at",
        "last_error_kind",
        "short_error",
    ]
    list_filter = ["status", "last_error_kind"]
    search_fields = ["member__member_id"]
    list_select_related = ["member"]
    ordering = [F("dirty_since").asc(nulls_last=True), "member_id"]
    fields = [
        "member",
        "status",
        "version",
        "synced_version",
        "dirty_since",
        "attempts",
        "next_attempt_at",
        "last_synced_at",
        "last_error_kind",
        "last_error",
        "last_request",
        "last_sent_pretty",
        "maybe_sent_display",
    ]
    readonly_fields = ["last_sent_pretty", "maybe_sent_display"]
    actions = ["retry", "sync_now"]

    def get_queryset(self, request):
        queue.changes_fold_for_reading()  # members saved a moment ago are listed as pending, with or without a worker
        return super().get_queryset(request)

    @admin.display(description="Member", ordering="member__member_id")
    def member_link(self, obj: MemberSyncState) -> str:
        return member_link(obj.member_id, obj.member.member_id)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: MemberSyncState) -> str:
        return state_badge(obj.get_status_display(), SYNC_BADGE.get(obj.status, "never"))

    @admin.display(description="Last error (Braze's words)")
    def short_error(self, obj: MemberSyncState) -> str:
        return obj.last_error if len(obj.last_error) <= 90 else obj.last_error[:89] + "…"

    @admin.display(description="Values Braze last accepted")
    def last_sent_pretty(self, obj: MemberSyncState) -> str:
        return pretty_json(obj.last_sent_values) if obj.last_sent_values else "—"

    @admin.display(description="Perhaps in Braze, unanswered")
    def maybe_sent_display(self, obj: MemberSyncState) -> str:
        """Attributes a request that may have reached Braze carried, with no answer since: sent again next."""
        if obj.maybe_sent is True:
            return "every mapped attribute (its worker stopped while sending)"
        return ", ".join(obj.maybe_sent) if obj.maybe_sent else "—"

    @admin.action(description="Retry (failed and dead-lettered)", permissions=["send"])
    def retry(self, request, queryset):
        count = services.member_sync_retry(member_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{count} member(s) put back in the queue.", messages.SUCCESS)

    @admin.action(description="Sync to Braze now", permissions=["send"])
    def sync_now(self, request, queryset):
        admin_views.members_sync_now(request, self, list(queryset.values_list("pk", flat=True)))


class MaybeSentTwiceFilter(admin.SimpleListFilter):
    """Items that went out in a request whose answer was lost: Braze may hold them more than once."""

    title = "maybe sent more than once"
    parameter_name = "ambiguous"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(ambiguous_sends__gt=0)
        if self.value() == "no":
            return queryset.filter(ambiguous_sends=0)
        return queryset


@admin.register(OutboxItem)
class OutboxItemAdmin(LogAdmin):
    list_display = [
        "created_at",
        "member",
        "kind",
        "status_badge",
        "origin",
        "attempts",
        "ambiguous_sends",
        "sent_at",
        "request",
        "last_error",
    ]
    list_filter = ["status", "kind", MaybeSentTwiceFilter]
    search_fields = ["member__member_id", "origin", "dedupe_key"]
    list_select_related = ["member"]
    date_hierarchy = "created_at"
    fields = [
        "uid",
        "member",
        "kind",
        "status",
        "origin",
        "dedupe_key",
        "created_at",
        "sent_at",
        "attempts",
        "ambiguous_sends",
        "last_error",
        "request",
        "payload_pretty",
    ]
    readonly_fields = ["payload_pretty"]
    actions = ["retry"]

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: OutboxItem) -> str:
        modifier = {OutboxStatus.SENT: "ok", OutboxStatus.PENDING: "wait"}.get(obj.status, "bad")
        return state_badge(obj.get_status_display(), modifier)

    @admin.display(description="Payload")
    def payload_pretty(self, obj: OutboxItem) -> str:
        return pretty_json(obj.payload)

    @admin.action(description="Retry (failed and dead-lettered items)", permissions=["send"])
    def retry(self, request, queryset):
        stuck = queryset.filter(status__in=[OutboxStatus.FAILED, OutboxStatus.DEAD])
        member_ids = list(stuck.values_list("member_id", flat=True).distinct())
        count = stuck.count()
        with transaction.atomic():
            services.member_sync_retry(member_ids=member_ids)
            # A member whose own state is synced is not claimed again by a retry alone: mark it pending so
            # the worker picks its items up.
            services.member_sync_enqueue(member_ids=member_ids)
        self.message_user(
            request,
            f"{count} item(s) of {len(member_ids)} member(s) put back in the queue "
            "(with every other failed item of those members).",
            messages.SUCCESS,
        )


@admin.register(ResyncRun)
class ResyncRunAdmin(LogAdmin):
    list_display = [
        "__str__",
        "created_at",
        "status",
        "progress",
        "members_sent",
        "members_unchanged",
        "members_failed",
        "requests",
        "data_points",
        "elapsed",
    ]
    list_filter = ["status"]
    change_form_template = "admin/braze_integration/resyncrun/change_form.html"
    fields = [
        "status",
        "progress",
        "created_at",
        "finished_at",
        "total",
        "members_done",
        "members_sent",
        "members_unchanged",
        "members_failed",
        "requests",
        "data_points",
        "elapsed",
        "message",
        "options_pretty",
        "cursor",
    ]
    readonly_fields = ["progress", "elapsed", "options_pretty"]

    @admin.display(description="Progress")
    def progress(self, obj: ResyncRun) -> str:
        percent = (
            100
            if obj.status == ResyncStatus.FINISHED or not obj.total
            else min(100, round(100 * obj.members_done / obj.total))
        )
        return format_html(
            '<span class="braze-progress"><span style="width: {}%"></span></span> {}/{} ({}%)',
            percent,
            obj.members_done,
            obj.total,
            percent,
        )

    @admin.display(description="Elapsed")
    def elapsed(self, obj: ResyncRun) -> str:
        return f"{obj.elapsed_seconds:.1f} s"

    @admin.display(description="Selection and options")
    def options_pretty(self, obj: ResyncRun) -> str:
        return pretty_json(obj.options)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = self.get_object(request, object_id)
        extra = {
            "running": run is not None and run.status == ResyncStatus.RUNNING,
            "dashboard_url": reverse("admin:braze_integration_dashboard"),
        }
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

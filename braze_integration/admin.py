"""The Braze screens in the admin: Connect and Sync fields (the connection page), the sync logs,
the member page's Braze panel, and links to the dashboard.

Thin: every action and custom view calls a service (see ``admin_views``). The logs follow
django-q2's task admin: nothing can be added, changed or deleted, every field is read-only, and
one action puts the work back in the queue.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count, F
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime

import loyaltysync.admin as loyalty_admin
from loyaltysync.models import Member

from . import admin_views, services
from .config import WORKSPACE_CHANGED
from .fields import loyalty_fields
from .forms import ConnectionForm, FieldMappingForm
from .models import (
    Connection,
    FieldMapping,
    MemberSyncState,
    OutboxItem,
    OutboxStatus,
    RequestOutcome,
    ResyncRun,
    ResyncStatus,
    SyncRequest,
    SyncRequestMember,
    SyncStatus,
)

REQUESTS_ON_MEMBER_PAGE = 20


def _when(value) -> str:
    return localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def _pretty(value: Any) -> str:
    return format_html(
        "<pre class='braze-json'>{}</pre>",
        json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str),
    )


def state_badge(words: str, modifier: str) -> str:
    return format_html('<span class="braze-badge braze-badge--{}">{}</span>', modifier, words)


_SYNC_BADGE = {
    SyncStatus.SYNCED: "ok",
    SyncStatus.PENDING: "wait",
    SyncStatus.FAILED: "bad",
    SyncStatus.DEAD: "bad",
}
_OUTCOME_BADGE = {
    RequestOutcome.SUCCESS: "ok",
    RequestOutcome.SENDING: "wait",
    RequestOutcome.PARTIAL: "warn",
    RequestOutcome.RATE_LIMITED: "warn",
}


def _member_link(member_pk: int, member_id: str) -> str:
    return format_html(
        '<a href="{}">{}</a>', reverse("admin:loyaltysync_member_change", args=[member_pk]), member_id
    )


class BrazeMedia:
    css = {"all": ["braze_integration/admin.css"]}


# --- Connect and Sync fields -------------------------------------------------------------------------


class FieldMappingInline(admin.TabularInline):
    """Sync fields: loyalty field → Braze attribute rows, edited on the connection page."""

    model = FieldMapping
    form = FieldMappingForm
    template = "admin/braze_integration/edit_inline/mappings.html"
    fields = ["loyalty_field", "braze_type", "remote_field", "note"]
    readonly_fields = ["braze_type", "note"]
    extra = 0
    verbose_name = "sync field"
    verbose_name_plural = "Sync fields"

    @admin.display(description="Braze type")
    def braze_type(self, obj: FieldMapping) -> str:
        field = loyalty_fields().get(obj.loyalty_field) if obj and obj.pk else None
        return field.braze_type.value.replace("_", " ") if field else "—"

    @admin.display(description="Note")
    def note(self, obj: FieldMapping) -> str:
        if obj and obj.pk and obj.is_standard_profile_field:
            return format_html(
                '<span class="braze-warning">{}</span>',
                f"“{obj.remote_field}” is a Braze standard profile field: this overwrites it.",
            )
        return ""


CONNECT_FIELDSETS = [
    (None, {"fields": ["name", "instance", "instance_url", "new_api_key", "app_id", "active"]}),
    (
        "Sending",
        {
            "fields": [
                "send_mode",
                "batch_size",
                "per_array_limit",
                ("rate_limit_requests", "rate_limit_seconds"),
                "max_attempts",
            ],
            "description": "How much goes in one request, how fast, and how often a change is tried before it is "
            "dead-lettered. Braze's own limits are the defaults.",
        },
    ),
]
VIEW_FIELDSETS = [
    (None, {"fields": ["name", "instance_url", "api_key_current", "app_id", "active"]}),
    CONNECT_FIELDSETS[1],
]


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    """The Connect screen, with the Sync fields inline and links to the dashboard and logs."""

    form = ConnectionForm
    inlines = [FieldMappingInline]
    change_form_template = "admin/braze_integration/connection/change_form.html"
    change_list_template = "admin/braze_integration/connection/change_list.html"
    list_display = ["name", "instance_url", "active", "state", "last_checked_at", "mapping_count"]
    readonly_fields = ["api_key_current"]
    Media = BrazeMedia

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(mappings_total=Count("mappings"))

    def get_fieldsets(self, request, obj=None):
        editable = self.has_change_permission(request, obj) if obj else self.has_add_permission(request)
        return CONNECT_FIELDSETS if editable else VIEW_FIELDSETS

    @admin.display(description="REST API key")
    def api_key_current(self, obj: Connection) -> str:
        return obj.api_key_display if obj else "not set"

    @admin.display(description="State")
    def state(self, obj: Connection) -> str:
        return state_badge(*admin_views.connection_state(obj))

    @admin.display(description="Sync fields", ordering="mappings_total")
    def mapping_count(self, obj: Connection) -> int:
        return obj.mappings_total

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "dashboard/",
                wrap(lambda request: admin_views.dashboard(request, self)),
                name="braze_integration_dashboard",
            ),
            path(
                "resync/",
                wrap(lambda request: admin_views.resync_offer(request, self)),
                name="braze_integration_resync",
            ),
            path(
                "<path:object_id>/connect/",
                wrap(lambda request, object_id: admin_views.connection_connect(request, self, object_id)),
                name="braze_integration_connection_connect",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        connection = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if connection is not None:
            words, modifier = admin_views.connection_state(connection)
            extra.update(
                state_words=words,
                state_modifier=modifier,
                can_verify=request.user.has_perm(admin_views.VERIFY_PERMISSION),
                can_send=admin_views.can_send(request),
                connect_url=reverse("admin:braze_integration_connection_connect", args=[connection.pk]),
                dashboard_url=reverse("admin:braze_integration_dashboard"),
                resync_url=reverse("admin:braze_integration_resync"),
                requests_url=reverse("admin:braze_integration_syncrequest_changelist"),
            )
        return super().change_view(request, object_id, form_url, extra)

    def save_formset(self, request, form, formset, change):
        if formset.model is not FieldMapping:
            return super().save_formset(request, form, formset, change)
        mappings = formset.save(commit=False)
        for mapping in formset.deleted_objects:
            mapping.delete()
        position = max(form.instance.mappings.values_list("position", flat=True), default=-1)
        for mapping in mappings:
            if mapping.pk is None:
                position += 1
                mapping.position = position
            mapping.save()
        # Remote fields whose values Braze does not have yet: new rows and rows pointed elsewhere.
        request._braze_changed_fields = [m.remote_field for m in formset.new_objects] + [
            m.remote_field for m, _changed in formset.changed_objects
        ]
        services.sync_config_invalidate()

    def _after_save(self, request, obj: Connection, response):
        if obj.workspace_changed and Member.objects.exists():
            self.message_user(request, WORKSPACE_CHANGED + " Check what a full resync sends, then start it.",
                              messages.WARNING)
            return HttpResponseRedirect(reverse("admin:braze_integration_resync"))
        for mapping in obj.mappings.all():
            if mapping.is_standard_profile_field:
                self.message_user(
                    request,
                    f"“{mapping.remote_field}” is one of Braze's standard profile fields, not a custom attribute: "
                    f"the loyalty field {mapping.loyalty_field} will overwrite what Braze holds there.",
                    messages.WARNING,
                )
        changed = getattr(request, "_braze_changed_fields", [])
        if changed and obj.active and Member.objects.exists():
            self.message_user(
                request,
                "The sync fields changed: Braze does not have these values for existing "
                "members yet. Check what a resync would send, then start it.",
                messages.INFO,
            )
            query = "&".join(f"fields={f}" for f in changed)
            return HttpResponseRedirect(f"{reverse('admin:braze_integration_resync')}?{query}")
        return response

    def response_add(self, request, obj, post_url_continue=None):
        response = super().response_add(request, obj, post_url_continue)
        if "_addanother" not in request.POST and "_popup" not in request.POST:
            # The next step is Connect, which lives on the change page.
            response = HttpResponseRedirect(
                reverse("admin:braze_integration_connection_change", args=[obj.pk])
            )
            self.message_user(
                request, "Now press Connect to check the URL and the key with Braze.", messages.INFO
            )
        return self._after_save(request, obj, response)

    def response_change(self, request, obj):
        return self._after_save(request, obj, super().response_change(request, obj))


# --- logs ----------------------------------------------------------------------------------------


class ReadOnlyAdmin(admin.ModelAdmin):
    """A log: nothing is added, changed or deleted here; every field is shown read-only."""

    Media = BrazeMedia

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_send_permission(self, request) -> bool:
        return admin_views.can_send(request)

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, *(f.name for f in self.model._meta.fields)]


@admin.register(SyncRequest)
class SyncRequestAdmin(ReadOnlyAdmin):
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
        return state_badge(obj.get_outcome_display(), _OUTCOME_BADGE.get(obj.outcome, "bad"))

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
        return _pretty(obj.errors) if obj.errors and obj.outcome != RequestOutcome.SENDING else "—"

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
                (_member_link(row.member_id, row.member.member_id), row.object_count, row.error or "accepted")
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
class MemberSyncStateAdmin(ReadOnlyAdmin):
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
    ]
    readonly_fields = ["last_sent_pretty"]
    actions = ["retry", "sync_now"]

    @admin.display(description="Member", ordering="member__member_id")
    def member_link(self, obj: MemberSyncState) -> str:
        return _member_link(obj.member_id, obj.member.member_id)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: MemberSyncState) -> str:
        return state_badge(obj.get_status_display(), _SYNC_BADGE.get(obj.status, "never"))

    @admin.display(description="Last error (Braze's words)")
    def short_error(self, obj: MemberSyncState) -> str:
        return obj.last_error if len(obj.last_error) <= 90 else obj.last_error[:89] + "…"

    @admin.display(description="Values Braze last accepted")
    def last_sent_pretty(self, obj: MemberSyncState) -> str:
        return _pretty(obj.last_sent_values) if obj.last_sent_values else "—"

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
class OutboxItemAdmin(ReadOnlyAdmin):
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
        return _pretty(obj.payload)

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
class ResyncRunAdmin(ReadOnlyAdmin):
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
        return _pretty(obj.options)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = self.get_object(request, object_id)
        extra = {
            "running": run is not None and run.status == ResyncStatus.RUNNING,
            "dashboard_url": reverse("admin:braze_integration_dashboard"),
        }
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})


# --- the member page's Braze panel --------------------------------------------------------------------

BRAZE_PANEL = ["braze_state", "braze_last_error", "braze_requests", "braze_payload"]


class BrazeMemberAdmin(loyalty_admin.MemberAdmin):
    """The loyalty member admin plus a "Braze sync" panel and two actions."""

    readonly_fields = [*loyalty_admin.MemberAdmin.readonly_fields, *BRAZE_PANEL, "braze_state_with_button"]
    actions = [*loyalty_admin.MemberAdmin.actions, "braze_sync_now", "braze_payload_preview"]

    class Media:
        css = BrazeMedia.css

    def get_fieldsets(self, request, obj=None):
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is None or obj.pk is None:
            return fieldsets
        panel = list(BRAZE_PANEL)
        if admin_views.can_send(request):
            panel[0] = "braze_state_with_button"
        return [
            *fieldsets,
            (
                "Braze sync",
                {
                    "fields": panel,
                    "description": "What Braze holds for this member, the requests that carried it and what the next "
                    "sync would send.",
                },
            ),
        ]

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/braze-sync/",
                wrap(lambda request, object_id: admin_views.member_sync_now(request, self, object_id)),
                name="loyaltysync_member_braze_sync",
            ),
            *super().get_urls(),
        ]

    @staticmethod
    def _state(obj: Member) -> MemberSyncState | None:
        return MemberSyncState.objects.filter(pk=obj.pk).first()

    @admin.display(description="State")
    def braze_state(self, obj: Member) -> str:
        state = self._state(obj)
        if state is None:
            return format_html("{} never sent", state_badge("Not synced", "never"))
        behind = state.version - state.synced_version
        return format_html(
            "{} last synced {} · {} · {} attempt(s)",
            state_badge(state.get_status_display(), _SYNC_BADGE.get(state.status, "never")),
            _when(state.last_synced_at),
            f"{behind} change(s) not in Braze yet" if behind > 0 else "Braze is up to date",
            state.attempts,
        )

    @admin.display(description="State")
    def braze_state_with_button(self, obj: Member) -> str:
        # ``formaction`` sends the page's own form (and its CSRF token) to the Sync now view: no nested form.
        return format_html(
            '{} <button type="submit" class="button braze-sync-now" formaction="{}" formnovalidate>Sync now</button>',
            self.braze_state(obj),
            reverse("admin:loyaltysync_member_braze_sync", args=[obj.pk]),
        )

    @admin.display(description="Last error (Braze's words)")
    def braze_last_error(self, obj: Member) -> str:
        state = self._state(obj)
        return state.last_error if state and state.last_error else "—"

    @admin.display(description=f"Last {REQUESTS_ON_MEMBER_PAGE} requests")
    def braze_requests(self, obj: Member) -> str:
        rows = (
            SyncRequestMember.objects.filter(member=obj)
            .select_related("request")
            .order_by("-request_id")[:REQUESTS_ON_MEMBER_PAGE]
        )
        body = format_html_join(
            "",
            "<tr><td><a href='{}'>#{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td><td>{}</td></tr>",
            (
                (
                    reverse("admin:braze_integration_syncrequest_change", args=[row.request_id]),
                    row.request_id,
                    _when(row.request.created_at),
                    row.request.trigger,
                    state_badge(
                        row.request.get_outcome_display(), _OUTCOME_BADGE.get(row.request.outcome, "bad")
                    ),
                    row.request.http_status or "—",
                    row.object_count,
                    row.error or row.request.message,
                )
                for row in rows
            ),
        )
        if not body:
            return "No request has carried this member yet."
        every = reverse("admin:braze_integration_syncrequest_changelist") + f"?q={obj.member_id}"
        return format_html(
            '<table class="braze-table"><tr><th>Request</th><th>When</th><th>Trigger</th>'
            "<th>Outcome</th><th>HTTP</th><th>Objects</th><th>Braze's message</th></tr>{}</table>"
            "<p><a href='{}'>Every request of this member</a></p>",
            body,
            every,
        )

    @admin.display(description="Next sync would send")
    def braze_payload(self, obj: Member) -> str:
        return _pretty(services.member_payload_preview(member=obj))

    @admin.action(description="Sync to Braze now", permissions=["braze_send"])
    def braze_sync_now(self, request, queryset):
        admin_views.members_sync_now(request, self, list(queryset.values_list("pk", flat=True)))

    @admin.action(description="Preview Braze payload", permissions=["view"])
    def braze_payload_preview(self, request, queryset):
        return admin_views.payload_preview(request, self, list(queryset))

    def has_braze_send_permission(self, request) -> bool:
        return admin_views.can_send(request)


if admin.site.is_registered(Member):
    admin.site.unregister(Member)
admin.site.register(Member, BrazeMemberAdmin)

# The index shows a link to the sync dashboard (unless another app already chose the index template).
if admin.site.index_template is None:
    admin.site.index_template = "admin/braze_integration/index.html"

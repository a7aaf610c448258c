"""The Braze screens in the admin. This module holds the connection page (Connect and Sync fields);
``admin_logs`` the sync logs and ``admin_member`` the member page's Braze panel, both registered
by importing them here; ``admin_views`` the custom views. Thin: every action and view calls a service.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin, messages
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html

from loyaltysync.models import Member

from . import admin_erasure, admin_logs, admin_member, admin_views, services  # noqa: F401,E402  (they register their admins and the member panel)
from .admin_display import BrazeMedia, state_badge
from .config import WORKSPACE_CHANGED
from .fields import loyalty_fields
from .forms import ConnectionForm, FieldMappingForm
from .models import (
    Connection,
    ConnectionStatus,
    FieldMapping,
    RemoteKind,
)

# --- Connect and Sync fields -------------------------------------------------------------------------


class FieldMappingInline(admin.TabularInline):
    """Sync fields: loyalty field → Braze attribute rows, edited on the connection page."""

    model = FieldMapping
    form = FieldMappingForm
    template = "admin/braze_integration/edit_inline/mappings.html"
    fields = ["loyalty_field", "braze_type", "remote_kind", "remote_field", "note"]
    readonly_fields = ["braze_type", "note"]
    extra = 0
    verbose_name = "sync field"
    verbose_name_plural = "Sync fields"

    def get_formset(self, request, obj=None, **kwargs):
        # The mappable fields (a CustomField query) are read once per page, not once per row and column.
        self.known_fields = loyalty_fields()
        formset = super().get_formset(request, obj, **kwargs)
        formset.form = type(formset.form.__name__, (formset.form,), {"known_fields": self.known_fields})
        return formset

    @admin.display(description="Braze type")
    def braze_type(self, obj: FieldMapping) -> str:
        known = getattr(self, "known_fields", None)
        field = (known if known is not None else loyalty_fields()).get(obj.loyalty_field) if obj and obj.pk else None
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
            # Connect's answer was just shown as a message: the state panel does not repeat it.
            flashed = bool(connection.last_message) and any(
                str(message) == connection.last_message for message in messages.get_messages(request)
            )
            extra.update(
                last_message_flashed=flashed,
                needs_attention=connection.status == ConnectionStatus.NEEDS_ATTENTION,
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
        attributes = form.instance.mappings.filter(remote_kind=RemoteKind.ATTRIBUTE)
        before = set(attributes.values_list("remote_field", flat=True))
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
        # Attributes no mapping sends any more: Braze keeps them until they are cleared.
        request._braze_removed_fields = sorted(before - set(attributes.values_list("remote_field", flat=True)))
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
        removed = getattr(request, "_braze_removed_fields", [])
        if (changed or removed) and obj.active and Member.objects.exists():
            if changed:
                self.message_user(
                    request,
                    "The sync fields changed: Braze does not have these values for existing "
                    "members yet. Check what a resync would send, then start it.",
                    messages.INFO,
                )
            if removed:
                self.message_user(
                    request,
                    f"Removed sync fields stay in Braze's profiles ({', '.join(removed)}): the resync below "
                    "removes them from the members Braze holds them for.",
                    messages.INFO,
                )
            query = urlencode([("fields", f) for f in changed] + [("clear", f) for f in removed])
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


# The index shows a link to the sync dashboard (unless another app already chose the index template).
if admin.site.index_template is None:
    admin.site.index_template = "admin/braze_integration/index.html"

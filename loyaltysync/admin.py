"""Admin of the loyalty domain. Thin: member saves go through ``services.member_create/member_update``;
events and ledger rows are read-only.

Other apps extend the member page through ``member_panels`` (a panel with its template, context,
permission check, actions and URLs); the Member admin stays this one.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime

from . import attributes, selectors, services, signals
from .admin_custom_fields import CustomFieldsFormField, custom_fields_submitted
from .admin_member_actions import member_action_urls
from .admin_readonly import ReadOnlyAdmin
from .attributes import Kind
from .errors import InvalidData, LoyaltyError
from .fieldtypes import FieldType
from .member_panels import member_list_columns, member_panels
from .models import (
    CustomAction,
    CustomField,
    ErasureRecord,
    EventSource,
    LoyaltyEvent,
    Member,
    PointsTransaction,
    ProgramSettings,
    Tier,
)

LATEST_ROWS = 20


def _pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


class MemberAdminForm(forms.ModelForm):
    """Validates with the same rules as the services, so errors show next to their field."""

    custom_fields = CustomFieldsFormField(label="Custom fields")

    class Meta:
        model = Member
        fields = ["member_id", *attributes.PROFILE_FIELDS, attributes.CUSTOM_FIELDS]

    def clean_custom_fields(self):
        stored = (self.instance.custom_fields or {}) if self.instance.pk else {}
        known = set(CustomField.objects.values_list("key", flat=True))
        return custom_fields_submitted(self.cleaned_data.get("custom_fields"), stored, known)

    def clean(self):
        cleaned = super().clean()
        profile = {name: cleaned[name] for name in attributes.PROFILE_FIELDS if name in cleaned}
        creating = self.instance.pk is None
        try:
            services.member_profile_check(
                member=None if creating else self.instance,
                member_id=cleaned.get("member_id"),
                profile=profile,
                custom_fields=cleaned.get("custom_fields") or None,
            )
        except InvalidData as error:
            for path, problems in error.errors.items():
                name = path.split(".", 1)[0]
                field = name if name in self.fields else None
                already = {str(message) for message in self.errors.get(field or "__all__", [])}
                message = [problem if name == path else f"{path}: {problem}" for problem in problems]
                message = [text for text in message if text not in already]
                if message:
                    self.add_error(field, message)
                if name == attributes.CUSTOM_FIELDS and "." in path:
                    self.fields[name].show_problem(path.split(".", 1)[1], " ".join(problems))
        return cleaned


def _shown(attribute: attributes.MemberAttribute) -> str:
    """How the member page shows a stored attribute: objects pretty-printed."""
    return f"{attribute.name}_pretty" if attribute.type == FieldType.OBJECT else attribute.name


_LATEST = ["latest_events", "latest_ledger"]
# The member page shows these only to users who may see the rows behind them.
_LATEST_PERMISSION = {"latest_events": "loyaltysync.view_loyaltyevent", "latest_ledger": "loyaltysync.view_pointstransaction"}
_COLLAPSED_GROUPS = {attributes.RECORD}


def _fieldsets() -> list[tuple[str | None, dict[str, Any]]]:
    """The member page: the registry's stored attributes by group, custom fields after the profile."""
    fieldsets: list[tuple[str | None, dict[str, Any]]] = []
    stored = [a for a in attributes.ATTRIBUTES if a.stored]
    for group, members in attributes.by_group(stored).items():
        options: dict[str, Any] = {"fields": [_shown(a) for a in members]}
        if group in _COLLAPSED_GROUPS:
            options["classes"] = ["collapse"]
        fieldsets.append((group, options))
        if group == attributes.PROFILE:
            fieldsets.append((
                "Custom fields",
                {
                    "fields": [attributes.CUSTOM_FIELDS],
                    "description": "One input per custom field, by its type; emptied, a value is removed.",
                },
            ))
    fieldsets[-1:-1] = [
        ("Latest events", {"fields": ["latest_events"], "classes": ["collapse"]}),
        ("Points ledger", {"fields": ["latest_ledger"], "classes": ["collapse"]}),
    ]
    return fieldsets


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    form = MemberAdminForm
    list_display = [a.name for a in attributes.ATTRIBUTES if a.listed]
    list_filter = ["status", "tier"]
    search_fields = [a.name for a in attributes.ATTRIBUTES if a.searchable]
    list_select_related = ["tier"]
    ordering = ["member_id"]
    date_hierarchy = "created_at"
    readonly_fields = [*(_shown(a) for a in attributes.ATTRIBUTES if a.kind == Kind.ENGINE), *_LATEST]
    fieldsets = _fieldsets()
    actions = ["recalculate_points", "erase_members"]

    def get_fieldsets(self, request, obj=None):
        hidden = {name for name, perm in _LATEST_PERMISSION.items() if not request.user.has_perm(perm)}
        return [(title, options) for title, options in super().get_fieldsets(request, obj)
                if not hidden.issuperset(options["fields"])]

    def get_queryset(self, request):
        members = super().get_queryset(request)
        columns = [column for column in member_list_columns(request) if column.prepare is not None]
        if columns:
            # The changelist adds list_select_related only to a queryset that selects nothing yet.
            members = members.select_related(*self.list_select_related)
        for column in columns:
            members = column.prepare(members)
        return members

    def get_list_display(self, request):
        return [*super().get_list_display(request), *(self._column(c) for c in member_list_columns(request))]

    def get_list_filter(self, request):
        extra = [c.list_filter for c in member_list_columns(request) if c.list_filter is not None]
        return [*super().get_list_filter(request), *extra]

    @staticmethod
    def _column(column):
        def cell(member: Member):
            return column.display(member)

        cell.short_description = column.description
        cell.__name__ = column.key
        return cell

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.pk:
            fields.append(
                "member_id"
            )  # it is Braze's external_id: changing it would orphan the Braze profile
        return fields

    @admin.display(description="Last purchase")
    def last_purchase_pretty(self, obj: Member) -> str:
        if not obj.last_purchase:
            return "-"
        return format_html("<pre>{}</pre>", _pretty_json(obj.last_purchase))

    @admin.display(description=f"Latest {LATEST_ROWS} events")
    def latest_events(self, obj: Member) -> str:
        if not obj.pk:
            return "-"
        events = selectors.member_events(member=obj)[:LATEST_ROWS]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td><a href='{}'>{}</a></td><td>{}</td><td><code>{}</code></td></tr>",
            (
                (
                    localtime(event.occurred_at).strftime("%Y-%m-%d %H:%M"),
                    reverse("admin:loyaltysync_loyaltyevent_change", args=[event.pk]),
                    event.action,
                    event.get_source_display(),
                    json.dumps(event.data, ensure_ascii=False, default=str)[:200],
                )
                for event in events
            ),
        )
        every = reverse("admin:loyaltysync_loyaltyevent_changelist") + f"?member__id__exact={obj.pk}"
        return format_html(
            "<table><tr><th>When</th><th>Action</th><th>Source</th><th>Data</th></tr>{}</table>"
            "<p><a href='{}'>All events of this member</a></p>",
            rows,
            every,
        )

    @admin.display(description=f"Latest {LATEST_ROWS} ledger rows")
    def latest_ledger(self, obj: Member) -> str:
        if not obj.pk:
            return "-"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    localtime(row.created_at).strftime("%Y-%m-%d %H:%M"),
                    row.get_kind_display(),
                    f"{row.points:+d}",
                    row.remaining,
                    "pending until " + localtime(row.available_at).strftime("%Y-%m-%d")
                    if row.pending
                    else "",
                    localtime(row.expires_at).strftime("%Y-%m-%d") if row.expires_at else "",
                    row.note,
                )
                for row in selectors.member_ledger(member=obj)[:LATEST_ROWS]
            ),
        )
        every = reverse("admin:loyaltysync_pointstransaction_changelist") + f"?member__id__exact={obj.pk}"
        return format_html(
            "<table><tr><th>When</th><th>Kind</th><th>Points</th><th>Remaining</th><th>State</th>"
            "<th>Expires</th><th>Note</th></tr>{}</table><p><a href='{}'>Whole ledger</a></p>",
            rows,
            every,
        )

    def save_model(self, request, obj: Member, form, change: bool) -> None:
        """Profile changes go through the services, so events are recorded and listeners hear of them."""
        profile = {
            name: form.cleaned_data[name] for name in attributes.PROFILE_FIELDS if name in form.changed_data
        }
        new_custom = form.cleaned_data.get("custom_fields") or {}
        if change:
            current = Member.objects.get(pk=obj.pk)
            old_custom = current.custom_fields or {}
            custom = {key: value for key, value in new_custom.items() if old_custom.get(key) != value}
            custom.update({key: None for key in old_custom if key not in new_custom})
            saved = services.member_update(
                member=current, profile=profile, custom_fields=custom or None, source=EventSource.ADMIN
            )
        else:
            saved = services.member_create(
                member_id=form.cleaned_data["member_id"],
                source=EventSource.ADMIN,
                custom_fields=new_custom or None,
                **{
                    name: form.cleaned_data[name]
                    for name in attributes.PROFILE_FIELDS
                    if name in form.cleaned_data
                },
            )
        # The admin goes on with ``obj`` (log entry, redirect): make it the saved row.
        obj.pk = saved.pk
        obj._state.adding = False
        obj._state.db = saved._state.db
        obj.refresh_from_db()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        panels = []
        member = self.get_object(request, object_id) if object_id else None
        if member is not None:
            for panel in member_panels():
                if panel.visible_to(request):
                    panels.append({"key": panel.key, "template": panel.template, **panel.context(request, member)})
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "member_panels": panels})

    def get_actions(self, request):
        actions = super().get_actions(request)
        for panel in member_panels():
            if not panel.visible_to(request):
                continue
            for action in panel.actions:
                if action.allowed(request):
                    actions[action.name] = (action.func, action.name, action.description)
        return actions

    def get_urls(self):
        extra = [url for panel in member_panels() if panel.urls for url in panel.urls(self)]
        return [*member_action_urls(self), *extra, *super().get_urls()]

    def has_erase_permission(self, request) -> bool:
        return request.user.has_perm("loyaltysync.erase_members")

    @admin.action(description="Erase member (right to be forgotten)", permissions=["erase"])
    def erase_members(self, request, queryset):
        """Asks for confirmation first; then erases each selected member through the erasure service."""
        members = list(queryset.order_by("member_id"))
        if request.POST.get("confirm") != "yes":
            context = {**self.admin_site.each_context(request), "opts": self.model._meta, "members": members,
                       "title": "Erase members"}
            return TemplateResponse(request, "admin/loyaltysync/member/erase_confirmation.html", context)
        erased, problems = 0, []
        for member in members:
            try:
                services.member_erase(
                    member_id=member.member_id, erased_by=request.user.get_username(), source=EventSource.ADMIN
                )
                erased += 1
            except LoyaltyError as error:
                problems.append(f"{member.member_id}: {error.message}")
        self.message_user(request, f"Erased {erased} member(s).", messages.SUCCESS)
        for problem in problems:
            self.message_user(request, problem, messages.ERROR)
        return None

    @admin.action(description="Recalculate points and tier from the ledger")
    def recalculate_points(self, request, queryset) -> None:
        for member in queryset:
            services.member_points_refresh(member=member, source=EventSource.ADMIN)
        self.message_user(request, f"Recalculated {queryset.count()} member(s).", messages.SUCCESS)


@admin.register(CustomField)
class CustomFieldAdmin(admin.ModelAdmin):
    list_display = ["key", "label", "type", "help_text"]
    list_filter = ["type"]
    search_fields = ["key", "label"]

    def get_readonly_fields(self, request, obj=None):
        # Stored values and Braze mappings refer to the key; renaming it would orphan them.
        return ["key"] if obj is not None else []

    def get_deleted_objects(self, objs, request):
        """A field that something refers to by its key (a Braze mapping, say) is shown as protected, and
        the admin refuses to delete it until that use is removed."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        for field in objs:
            protected += [f"{field.key}: {use}" for use in signals.custom_field_users(field)]
        return deleted, counts, perms_needed, protected


@admin.register(Tier)
class TierAdmin(admin.ModelAdmin):
    list_display = ["name", "points_threshold", "multiplier", "order", "member_count"]
    ordering = ["points_threshold"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_total=Count("members"))

    @admin.display(description="Members", ordering="member_total")
    def member_count(self, obj: Tier) -> int:
        return obj.member_total


@admin.register(LoyaltyEvent)
class LoyaltyEventAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "member", "action", "source", "transaction_id", "created_at"]
    list_filter = ["action", "source"]
    search_fields = ["member__member_id", "transaction_id"]
    list_select_related = ["member"]
    date_hierarchy = "occurred_at"
    fields = ["member", "action", "source", "occurred_at", "created_at", "transaction_id", "data_pretty"]
    readonly_fields = fields

    @admin.display(description="Data")
    def data_pretty(self, obj: LoyaltyEvent) -> str:
        return format_html("<pre>{}</pre>", _pretty_json(obj.data))


@admin.register(PointsTransaction)
class PointsTransactionAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "member",
        "kind",
        "points",
        "remaining",
        "pending",
        "available_at",
        "expires_at",
    ]
    list_filter = ["kind", "pending"]
    search_fields = ["member__member_id", "note"]
    list_select_related = ["member"]
    fields = [
        "member",
        "kind",
        "points",
        "remaining",
        "pending",
        "available_at",
        "expires_at",
        "event",
        "note",
        "created_at",
    ]
    readonly_fields = fields


@admin.register(CustomAction)
class CustomActionAdmin(admin.ModelAdmin):
    """The program's own event actions: only these (and the built-in ones) are accepted by the API."""

    list_display = ["name", "description"]
    search_fields = ["name", "description"]

    def get_readonly_fields(self, request, obj=None):
        # Recorded events and workflow triggers refer to the name.
        return ["name"] if obj is not None else []


class ProgramSettingsForm(forms.ModelForm):
    class Meta:
        model = ProgramSettings
        fields = ["points_per_unit", "pending_days", "expiry_days", "currency", "rates", "note"]


@admin.register(ProgramSettings)
class ProgramSettingsAdmin(admin.ModelAdmin):
    """Each save adds a version (the newest is in force); older versions are the history, read-only."""

    form = ProgramSettingsForm
    list_display = ["created_at", "in_force", "points_per_unit", "pending_days", "expiry_days", "currency",
                    "rates_display", "created_by", "note"]
    fields = ["points_per_unit", "pending_days", "expiry_days", "currency", "rates", "note"]

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_readonly_fields(self, request, obj=None):
        return [*self.fields, "created_at", "created_by"] if obj is not None else []

    def get_changeform_initial_data(self, request):
        rules = services.program_rules()
        return {
            "points_per_unit": rules.points_per_unit,
            "pending_days": rules.pending_days,
            "expiry_days": rules.expiry_days,
            "currency": rules.currency,
            "rates": {code: str(rate) for code, rate in rules.rates.items()},
        }

    @admin.display(description="In force", boolean=True)
    def in_force(self, obj: ProgramSettings) -> bool:
        return obj.pk == ProgramSettings.objects.values_list("pk", flat=True).first()

    @admin.display(description="Rates")
    def rates_display(self, obj: ProgramSettings) -> str:
        return ", ".join(f"{code} {rate}" for code, rate in sorted((obj.rates or {}).items())) or "-"

    def save_model(self, request, obj: ProgramSettings, form, change: bool) -> None:
        data = form.cleaned_data  # the form ran the model's clean(): the service's checks pass
        saved = services.program_settings_change(
            points_per_unit=data["points_per_unit"], pending_days=data["pending_days"],
            expiry_days=data["expiry_days"], currency=data["currency"], rates=data.get("rates") or {},
            note=data.get("note", ""), changed_by=request.user.get_username(),
        )
        obj.pk = saved.pk
        obj._state.adding = False
        obj.refresh_from_db()


@admin.register(ErasureRecord)
class ErasureRecordAdmin(ReadOnlyAdmin):
    """The erasure log: no personal data, never changed (other apps may add their columns, e.g. Braze's answer)."""

    list_display = ["erased_at", "member_hash_short", "erased_by", "source", "events_deleted", "ledger_rows_deleted",
                    "points_forfeited"]
    list_filter = ["source"]
    search_fields = ["member_hash", "erased_by"]
    date_hierarchy = "erased_at"
    readonly_fields = fields = [
        "erased_at", "member_hash", "erased_by", "source", "events_deleted", "ledger_rows_deleted",
        "points_earned", "points_spent", "points_forfeited", "purchase_count", "purchase_total",
    ]

    def get_search_results(self, request, queryset, search_term):
        """A member id typed in the search box finds its record through the hash (the id itself is not kept)."""
        results, distinct = super().get_search_results(request, queryset, search_term)
        if search_term.strip():
            results |= queryset.filter(member_hash=services.member_id_hash(search_term.strip()))
        return results, distinct

    @admin.display(description="Member (hash)", ordering="member_hash")
    def member_hash_short(self, obj: ErasureRecord) -> str:
        return f"{obj.member_hash[:16]}…"

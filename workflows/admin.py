"""Workflows in the admin: the editor (conditions and actions inline, values per action), and the
read-only logs (runs, trigger records, date scans) in the manner of django-q2's task admins."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from loyaltysync.admin_readonly import ReadOnlyAdmin

from . import services
from .context import EVENT_ATTRIBUTES, MEMBER_ATTRIBUTES
from .editor import MEDIA_JS, StepInline, TriggerInline, condition_step_queryset, link_formsets
from .flowchart import flowchart_svg
from .models import (
    Action,
    ActionKind,
    ActionValue,
    Condition,
    DateTriggerScan,
    DueRun,
    TriggerRecord,
    Workflow,
    WorkflowRun,
    custom_field_types,
)


class DatalistInput(forms.TextInput):
    """A text input that suggests values (the attributes a condition can name) without limiting them."""

    def __init__(self, suggestions, attrs=None):
        super().__init__(attrs)
        self.suggestions = suggestions

    def render(self, name, value, attrs=None, renderer=None):
        list_id = f"{name}-suggestions"
        attrs = {**(attrs or {}), "list": list_id, "size": 36}
        options = format_html_join("", '<option value="{}">', ((item,) for item in self.suggestions()))
        return format_html('{}<datalist id="{}">{}</datalist>', super().render(name, value, attrs, renderer),
                           list_id, options)


def _attribute_suggestions() -> list[str]:
    names = [f"member.{name}" for name in MEMBER_ATTRIBUTES]
    names += [f"member.custom_fields.{key}" for key in custom_field_types()]
    names += list(EVENT_ATTRIBUTES) + ["event.total", "event.currency", "event.points", "event.points_earned",
                                       "event.tier", "event.transaction_id"]
    names += [f"previous.{name}" for name in MEMBER_ATTRIBUTES] + ["trigger.years", "trigger.period"]
    return names


class ConditionForm(forms.ModelForm):
    class Meta:
        model = Condition
        fields = ("position", "step", "attribute", "operator", "value")
        widgets = {"attribute": DatalistInput(_attribute_suggestions), "value": forms.TextInput(attrs={"size": 30})}


class ConditionInline(admin.TabularInline):
    model = Condition
    form = ConditionForm
    extra = 0

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "step":
            kwargs["queryset"] = condition_step_queryset(request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = ("name", "active", "priority", "trigger_summary", "version", "runs_link", "updated_at")
    list_filter = ("active", "triggers__kind")
    search_fields = ("name", "description", "triggers__action", "triggers__field")
    readonly_fields = ("version", "created_at", "updated_at", "runs_link", "snapshot_json", "flowchart")
    inlines = [TriggerInline, ConditionInline, StepInline]
    fieldsets = (
        (None, {"fields": ("name", "description", ("active", "priority"))}),
        ("Flow", {"fields": ("flowchart",)}),
        ("Conditions", {"fields": ("logic",)}),
        ("History", {"classes": ("collapse",), "fields": ("version", "created_at", "updated_at", "runs_link",
                                                         "snapshot_json")}),
    )

    class Media:
        js = MEDIA_JS

    def get_queryset(self, request):
        # The triggers prefetched, and the run counts annotated: no query per workflow on the list.
        return super().get_queryset(request).prefetch_related("triggers").annotate(runs_total=Count("runs"))

    def _create_formsets(self, request, obj, change):
        formsets, inline_instances = super()._create_formsets(request, obj, change)
        link_formsets(obj, formsets)
        return formsets, inline_instances

    @admin.display(description="Triggers")
    def trigger_summary(self, obj: Workflow) -> str:
        return obj.trigger_description

    @admin.display(description="The workflow as saved")
    def flowchart(self, obj: Workflow) -> str:
        if not obj.pk:
            return "Save the workflow to see it drawn."
        return flowchart_svg(obj.snapshot())

    @admin.display(description="Runs", ordering="runs_total")
    def runs_link(self, obj: Workflow) -> str:
        if not obj.pk:
            return "-"
        url = reverse("admin:workflows_workflowrun_changelist") + f"?workflow__id__exact={obj.pk}"
        total = obj.runs_total if hasattr(obj, "runs_total") else obj.runs.count()
        return format_html('<a href="{}">{} runs</a>', url, total)

    @admin.display(description="Snapshot (what a run uses)")
    def snapshot_json(self, obj: Workflow) -> str:
        if not obj.pk:
            return "-"
        return format_html("<pre>{}</pre>", json.dumps(obj.snapshot(), indent=2, ensure_ascii=False))


class ActionValueInline(admin.TabularInline):
    model = ActionValue
    extra = 1
    fields = ("position", "name", "braze_type", "source", "path", "constant", "template", "required")
    formfield_overrides = {
        ActionValue._meta.get_field("constant"): {"widget": forms.Textarea(attrs={"rows": 1, "cols": 24})},
        ActionValue._meta.get_field("template"): {"widget": forms.Textarea(attrs={"rows": 1, "cols": 36})},
    }


@admin.register(Action)
class ActionAdmin(admin.ModelAdmin):
    """Reached from a workflow's steps ("Edit values"); not listed on the admin index."""

    list_display = ("__str__", "workflow", "position")
    list_select_related = ("workflow",)
    fields = ("workflow", ("position", "kind"), "event_name", "merge_objects", ("items_path", "currency_path"))

    def get_inline_instances(self, request, obj=None):
        # Values belong to the Braze actions; the other steps are edited on the workflow's page.
        if obj is not None and obj.kind not in (ActionKind.SYNC_DATA, ActionKind.SEND_EVENT, ActionKind.SEND_PURCHASE):
            return []
        return super().get_inline_instances(request, obj)
    inlines = [ActionValueInline]

    def get_model_perms(self, request):
        return {}

    def get_readonly_fields(self, request, obj=None):
        return ("workflow",) if obj else ()


@admin.register(WorkflowRun)
class WorkflowRunAdmin(ReadOnlyAdmin):
    list_display = ("started_at", "workflow_link", "workflow_version", "member_link", "trigger_description",
                    "outcome", "duration_ms", "queued_summary")
    list_filter = ("outcome", "workflow")
    search_fields = ("member__member_id", "workflow_name")
    date_hierarchy = "started_at"
    list_select_related = ("member", "workflow")
    fields = ("workflow", "workflow_name", "workflow_version", "member", "trigger", "trigger_description",
              "started_at", "duration_ms", "outcome", "detail", "error", "path", "steps_json", "queued_json",
              "snapshot_json")
    readonly_fields = fields

    def lookup_allowed(self, lookup, value, request=None):
        # The per-member list: ?member__id__exact=<pk> (linked from each run).
        return lookup in ("member__id__exact", "trigger__id__exact") or super().lookup_allowed(lookup, value, request)

    @admin.display(description="Workflow", ordering="workflow_name")
    def workflow_link(self, obj: WorkflowRun) -> str:
        if obj.workflow_id is None:
            return f"{obj.workflow_name} (deleted)"
        return format_html('<a href="{}">{}</a>', reverse("admin:workflows_workflow_change", args=[obj.workflow_id]),
                           obj.workflow_name)

    @admin.display(description="Member", ordering="member__member_id")
    def member_link(self, obj: WorkflowRun) -> str:
        url = reverse("admin:workflows_workflowrun_changelist") + f"?member__id__exact={obj.member_id}"
        return format_html('<a href="{}" title="Runs for this member">{}</a>', url, obj.member.member_id)

    @admin.display(description="Queued")
    def queued_summary(self, obj: WorkflowRun) -> str:
        if obj.error:
            return obj.error[:120]
        if obj.detail:
            return obj.detail[:120]
        return "; ".join(item["summary"] + (" (already queued)" if item.get("duplicate") else "")
                         for item in obj.queued) or "-"

    @admin.display(description="The path this run took")
    def path(self, obj: WorkflowRun) -> str:
        if "steps" not in obj.snapshot:
            return "-"  # a run logged before workflows had steps
        return flowchart_svg(obj.snapshot, passed={entry["step"]: entry["outcome"] for entry in obj.steps})

    @admin.display(description="Steps passed")
    def steps_json(self, obj: WorkflowRun) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.steps, indent=2, ensure_ascii=False))

    @admin.display(description="Queued items")
    def queued_json(self, obj: WorkflowRun) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.queued, indent=2, ensure_ascii=False))

    @admin.display(description="Workflow as the run saw it")
    def snapshot_json(self, obj: WorkflowRun) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.snapshot, indent=2, ensure_ascii=False))


@admin.register(TriggerRecord)
class TriggerRecordAdmin(ReadOnlyAdmin):
    list_display = ("key", "kind", "member", "status", "attempts", "created_at", "processed_at", "runs_link")
    list_filter = ("status", "kind")
    search_fields = ("key", "member__member_id")
    list_select_related = ("member",)
    fields = ("key", "kind", "member", "event", "workflow", "changes", "period", "occurred_at", "status", "attempts",
              "claimed_until", "processed_at", "last_error", "created_at")
    readonly_fields = fields
    actions = ["process_again"]

    def has_process_permission(self, request) -> bool:
        return request.user.has_perm("workflows.change_workflow")

    @admin.display(description="Runs")
    def runs_link(self, obj: TriggerRecord) -> str:
        url = reverse("admin:workflows_workflowrun_changelist") + f"?trigger__id__exact={obj.pk}"
        return format_html('<a href="{}">runs</a>', url)

    @admin.action(description="Process again (Braze gets nothing twice)", permissions=["process"])
    def process_again(self, request, queryset):
        runs = 0
        for record_id in queryset.values_list("pk", flat=True):
            runs += services.trigger_record_process(record_id=record_id, force=True).runs
        self.message_user(request, f"Processed {queryset.count()} trigger(s): {runs} run(s).", messages.SUCCESS)


@admin.register(DateTriggerScan)
class DateTriggerScanAdmin(ReadOnlyAdmin):
    list_display = ("workflow", "period", "due_at", "started_at", "finished_at", "members_matched", "error")
    list_filter = ("workflow",)
    readonly_fields = ("workflow", "period", "due_at", "started_at", "finished_at", "members_matched", "error")



@admin.register(DueRun)
class DueRunAdmin(ReadOnlyAdmin):
    """Runs waiting to go on (after a wait, or taken over from a worker that stopped)."""

    list_display = ("run", "due_at", "claimed_until", "attempts", "last_error")
    readonly_fields = ("run", "due_at", "claim_token", "claimed_until", "attempts", "last_error")

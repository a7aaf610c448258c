"""The workflow editor's inlines: triggers, conditions (entry or a filter's) and steps.

Each trigger and step row shows only the fields of its kind (``workflow_editor.js`` hides the rest,
from the map the kind select carries); the models' ``clean()`` stays the judge. The steps' formset
also refuses loops (``loops.py``) with this workflow's triggers and steps as being saved.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from . import steps as step_kinds
from .config_format import TRIGGER_KEYS
from .loops import Shape, loops_find, shape_of
from .models import Action, ActionKind, Trigger, Workflow

MEDIA_JS = ("workflows/workflow_editor.js",)
TRIGGER_FIELDS = {kind: [model_field for _key, (_spec, model_field) in keys.items()]
                  for kind, keys in TRIGGER_KEYS.items()}


def _kind_select(fields: dict[str, list[str]], choices) -> forms.Select:
    every = sorted({name for names in fields.values() for name in names})
    return forms.Select(choices=choices, attrs={"data-fields": json.dumps(fields), "data-all-fields": json.dumps(every)})


def _object_id(request) -> str | None:
    match = getattr(request, "resolver_match", None)
    return match.kwargs.get("object_id") if match else None


class TriggerForm(forms.ModelForm):
    class Meta:
        model = Trigger
        fields = ("position", "kind", "action", "field", "from_value", "to_value", "frequency", "time", "weekday",
                  "day", "month")
        widgets = {"kind": _kind_select(TRIGGER_FIELDS, Trigger._meta.get_field("kind").choices)}


class TriggerInline(admin.StackedInline):
    model = Trigger
    form = TriggerForm
    extra = 0
    min_num = 1
    fields = (("position", "kind"), "action", "field", ("from_value", "to_value"), "frequency", "time",
              ("weekday", "day", "month"))

    def get_formset(self, request, obj=None, **kwargs):
        return super().get_formset(request, obj, validate_min=True, **kwargs)  # a workflow needs a trigger


class StepForm(forms.ModelForm):
    """A step; a wait's length is edited as days, hours and minutes and stored as seconds."""

    wait_days = forms.IntegerField(label="Days", min_value=0, required=False)
    wait_hours = forms.IntegerField(label="Hours", min_value=0, max_value=23, required=False)
    wait_minutes = forms.IntegerField(label="Minutes", min_value=0, max_value=59, required=False)

    class Meta:
        model = Action
        fields = ("position", "kind", "else_of", "event_name", "merge_objects", "items_path", "currency_path",
                  "logic", "points", "reason", "tier", "tier_days", "field", "value", "template", "action")
        widgets = {"kind": _kind_select(step_kinds.ADMIN_FIELDS, Action._meta.get_field("kind").choices),
                   "value": forms.Textarea(attrs={"rows": 1, "cols": 40}),
                   "template": forms.Textarea(attrs={"rows": 1, "cols": 40})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        seconds = self.instance.seconds or 0
        if self.instance.kind == ActionKind.WAIT and seconds:
            days, rest = divmod(seconds, 86400)
            self.initial.update(wait_days=days, wait_hours=rest // 3600, wait_minutes=rest % 3600 // 60)

    def clean(self):
        data = super().clean()
        if not data.get("logic"):
            data["logic"] = self.instance.logic = "and"
        if data.get("kind") == ActionKind.WAIT:
            parts = [data.get(name) or 0 for name in ("wait_days", "wait_hours", "wait_minutes")]
            self.instance.seconds = parts[0] * 86400 + parts[1] * 3600 + parts[2] * 60
        return data

    def _update_errors(self, errors):
        # The model reports a short wait on "seconds", which this form edits as days, hours and minutes.
        if hasattr(errors, "error_dict") and "seconds" in errors.error_dict:
            errors.error_dict.setdefault("wait_minutes", []).extend(errors.error_dict.pop("seconds"))
        super()._update_errors(errors)


class StepFormSet(BaseInlineFormSet):
    """Refuses a workflow that could start itself, directly or through the other saved workflows."""

    trigger_formset = None

    def clean(self):
        super().clean()
        workflow: Workflow = self.instance
        if any(form.errors for form in self.forms) or not workflow.active:
            return
        triggers = []
        if self.trigger_formset is not None and self.trigger_formset.is_valid():
            triggers = [(f.cleaned_data["kind"], f.cleaned_data.get("action", ""), f.cleaned_data.get("field", ""))
                        for f in self.trigger_formset.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        elif workflow.pk:
            triggers = list(workflow.triggers.values_list("kind", "action", "field"))
        steps = [(form.instance.kind, form.instance.step_keys()) for form in self.forms
                 if form.cleaned_data and not form.cleaned_data.get("DELETE")]
        shapes = [shape_of(workflow.name, triggers, steps), *saved_shapes(exclude=workflow.pk)]
        loop = loops_find(shapes).get(workflow.name)
        if loop:
            raise ValidationError(f'This workflow {loop}. Remove a step or a trigger so that it cannot.')


def saved_shapes(*, exclude: int | None) -> list[Shape]:
    """What the other active workflows listen to and cause (for the loop check)."""
    workflows = Workflow.objects.filter(active=True).exclude(pk=exclude).prefetch_related("triggers", "actions")
    return [shape_of(w.name, [(t.kind, t.action, t.field) for t in w.triggers.all()],
                     [(a.kind, a.step_keys()) for a in w.actions.all()]) for w in workflows]


class StepInline(admin.StackedInline):
    model = Action
    form = StepForm
    formset = StepFormSet
    fk_name = "workflow"
    extra = 0
    show_change_link = True
    verbose_name, verbose_name_plural = "step", "steps"
    fields = (("position", "kind", "else_of"), "event_name", "merge_objects", ("items_path", "currency_path"),
              ("wait_days", "wait_hours", "wait_minutes"), "logic", ("points", "reason"), ("tier", "tier_days"),
              "field", ("value", "template"), "action", "values_list")
    readonly_fields = ("values_list",)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "else_of":
            kwargs["queryset"] = Action.objects.filter(workflow_id=_object_id(request) or 0, kind=ActionKind.FILTER)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="Attributes / properties")
    def values_list(self, obj: Action) -> str:
        if not obj.pk:
            return "Save the workflow, then open the step to add its values."
        rows = format_html_join(", ", "{} ({}: {})", ((v.name, v.braze_type, v.source) for v in obj.values.all()))
        link = reverse("admin:workflows_action_change", args=[obj.pk])
        return format_html('{} <a href="{}">Edit values</a>', rows or "none yet.", link)


def condition_step_queryset(request):
    """A condition may belong to one of this workflow's saved filter steps."""
    return Action.objects.filter(workflow_id=_object_id(request) or 0, kind=ActionKind.FILTER)


def link_formsets(workflow: Workflow, formsets: list) -> None:
    """Let the rows being saved see the triggers being saved (their kinds decide what rows may name)."""
    triggers = next((formset for formset in formsets if formset.model is Trigger), None)
    if triggers is None or not triggers.is_bound:
        return
    if triggers.is_valid():
        workflow.pending_trigger_kinds = [form.cleaned_data["kind"] for form in triggers.forms
                                          if form.cleaned_data and not form.cleaned_data.get("DELETE")]
    for formset in formsets:
        if isinstance(formset, StepFormSet):
            formset.trigger_formset = triggers


__all__ = ["StepInline", "TriggerInline", "condition_step_queryset", "link_formsets"]

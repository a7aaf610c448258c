"""Validation in clean() (built through the pure engines), versions and snapshots, schedules, the admin."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django_q.models import Schedule

from loyaltysync.models import CustomField, FieldType
from tests.workflows.factories import make_workflow, trigger_of
from workflows import services
from workflows.models import Action, ActionValue, Condition, Trigger, TriggerKind, Workflow

pytestmark = pytest.mark.django_db


def event_workflow(**fields) -> Workflow:
    return make_workflow(**{"name": "On checkout", "trigger_kind": TriggerKind.EVENT,
                                      "trigger_action": "checkout", **fields})


def errors_of(instance) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        instance.full_clean(exclude=["workflow"] if isinstance(instance, Trigger) else None)
    return caught.value.message_dict


# --- conditions -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("attribute", "operator", "value", "field", "words"), [
    ("member.shoe_size", "equals", "42", "attribute", 'Unknown attribute "member.shoe_size"'),
    ("previous.tier", "equals", "Gold", "attribute", 'Unknown attribute "previous.tier"'),  # not a field change
    ("member.tier", "gt", "Gold", "operator", '"gt" does not fit member.tier (string)'),
    ("member.points_spendable", "gt", "lots", "value", '"lots" is not a number'),
    ("member.birth_date", "lt", "31.12.1999", "value", "expected a date"),
    ("member.tier", "changed", "", "operator", '"changed" can only be used in workflows triggered by a field change'),
    ("event.total", "in", "", "value", "non-empty list"),
])
def test_a_condition_that_does_not_fit_is_refused_naming_the_field(attribute, operator, value, field, words):
    condition = Condition(workflow=event_workflow(), attribute=attribute, operator=operator, value=value)

    errors = errors_of(condition)

    assert list(errors) == [field]
    assert words in errors[field][0]


def test_valid_conditions_pass_including_custom_fields_by_their_type():
    CustomField.objects.create(key="shoe_size", label="Shoe size", type=FieldType.INTEGER)
    workflow = event_workflow()

    for attribute, operator, value in [("member.custom_fields.shoe_size", "gte", "40"), ("event.total", "gt", "100"),
                                       ("event.data.currency", "in", "EUR, USD"), ("member.tier", "exists", "")]:
        Condition(workflow=workflow, attribute=attribute, operator=operator, value=value).full_clean()

    with pytest.raises(ValidationError, match="is not a number"):
        Condition(workflow=workflow, attribute="member.custom_fields.shoe_size", operator="gte",
                  value="big").full_clean()


def test_previous_values_and_changed_are_there_for_field_change_workflows():
    workflow = make_workflow(name="Tier", trigger_kind=TriggerKind.FIELD_CHANGE, trigger_field="tier")

    Condition(workflow=workflow, attribute="previous.tier", operator="in", value="Bronze, Silver").full_clean()
    Condition(workflow=workflow, attribute="member.points_spendable", operator="changed", value="").full_clean()


# --- the trigger ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"trigger_kind": "event", "trigger_action": ""}, "action", "needs the event's action"),
    ({"trigger_kind": "event", "trigger_action": "Check Out"}, "action", "lower-case letters"),
    ({"trigger_kind": "field_change", "trigger_field": "shoe_size"}, "field", "not a member field"),
    ({"trigger_kind": "field_change", "trigger_field": "points_spendable", "trigger_to": "many"}, "to_value",
     "points_spendable"),
    ({"trigger_kind": "date", "schedule_frequency": ""}, "frequency", "needs a frequency"),
    ({"trigger_kind": "date", "schedule_frequency": "weekly"}, "weekday", "needs the weekday"),
    ({"trigger_kind": "date", "schedule_frequency": "monthly"}, "day", "day of the month"),
    ({"trigger_kind": "date", "schedule_frequency": "yearly", "schedule_month": 2, "schedule_day": 30},
     "day", "February has no day 30"),
    ({"trigger_kind": "anniversary", "trigger_field": "email"}, "field", "not a member date"),
])
def test_a_trigger_that_is_incomplete_or_wrong_is_refused_naming_the_field(fields, field, words):
    errors = errors_of(trigger_of(**fields))

    assert field in errors
    assert words in errors[field][0]


def test_anniversaries_of_date_custom_fields_are_allowed():
    CustomField.objects.create(key="member_since", label="Member since", type=FieldType.DATE)

    trigger_of(trigger_kind="anniversary", trigger_field="custom_fields.member_since").full_clean(exclude=["workflow"])
    trigger_of(trigger_kind="anniversary", trigger_field="birth_date").full_clean(exclude=["workflow"])


# --- actions and their values -------------------------------------------------------------------------

def test_an_event_action_needs_a_name_braze_accepts():
    workflow = event_workflow()

    assert "event_name" in errors_of(Action(workflow=workflow, kind="send_event", event_name=""))
    assert "event_name" in errors_of(Action(workflow=workflow, kind="send_event", event_name="$reserved"))


def test_purchases_need_an_event_trigger():
    workflow = make_workflow(name="Daily", trigger_kind="date", schedule_frequency="daily")

    assert "kind" in errors_of(Action(workflow=workflow, kind="send_purchase"))


@pytest.mark.parametrize(("action_kind", "values", "field", "words"), [
    ("sync_data", {"name": "external_id", "source": "constant", "constant": "x"}, "name", "reserved by Braze"),
    ("send_event", {"name": "time", "source": "constant", "constant": "x"}, "name", "reserved by Braze"),
    ("sync_data", {"name": "a", "braze_type": "integer", "source": "constant", "constant": "ten"}, "constant",
     "expected a number"),
    ("sync_data", {"name": "a", "source": "template", "template": "{% load static %}"}, "template", "'load'"),
    ("sync_data", {"name": "a", "source": "member", "path": "shoe_size"}, "path", "not a member attribute"),
    ("sync_data", {"name": "a", "source": "item", "path": "product_name"}, "source", "only for purchases"),
    ("sync_data", {"name": "a", "source": "event", "path": ""}, "path", "must not be empty"),
])
def test_a_value_that_cannot_be_built_is_refused_naming_the_field(action_kind, values, field, words):
    action = Action.objects.create(workflow=event_workflow(), kind=action_kind, event_name="e")
    value = ActionValue(action=action, **{"braze_type": "string", **values})

    errors = errors_of(value)

    assert field in errors
    assert words in errors[field][0]


def test_event_data_is_no_source_without_an_event():
    workflow = make_workflow(name="Daily", trigger_kind="date", schedule_frequency="daily")
    action = Action.objects.create(workflow=workflow, kind="sync_data")

    assert "source" in errors_of(ActionValue(action=action, name="a", braze_type="string", source="event",
                                             path="total"))


# --- versions and snapshots -----------------------------------------------------------------------------

def test_every_save_of_the_workflow_or_its_rows_is_a_new_version():
    workflow = event_workflow()
    assert workflow.version == 2  # the workflow, then its trigger

    workflow.priority = 5
    workflow.save()
    assert workflow.version == 3
    condition = Condition.objects.create(workflow=workflow, attribute="event.total", operator="gt", value="10")
    action = Action.objects.create(workflow=workflow, kind="send_event", event_name="big")
    ActionValue.objects.create(action=action, name="total", braze_type="float", source="event", path="total")
    condition.delete()

    workflow.refresh_from_db()
    assert workflow.version == 7
    stale = Workflow.objects.get(pk=workflow.pk)
    Condition.objects.create(workflow=workflow, attribute="event.total", operator="gt", value="10")
    stale.save()  # a copy loaded before the condition was added still moves the version forward
    assert stale.version == 9


def test_the_snapshot_holds_the_whole_workflow_with_typed_conditions():
    workflow = event_workflow(logic="or")
    Condition.objects.create(workflow=workflow, attribute="event.points_earned", operator="gt", value="500")
    action = Action.objects.create(workflow=workflow, kind="send_event", event_name="big")
    ActionValue.objects.create(action=action, name="total", braze_type="float", source="event", path="total")
    workflow.refresh_from_db()

    snapshot = workflow.snapshot()

    assert snapshot == {
        "id": workflow.pk, "name": "On checkout", "version": workflow.version, "priority": 100,
        "triggers": [{"id": workflow.triggers.get().pk, "kind": "event", "action": "checkout"}], "logic": "or",
        "conditions": [{"attr": "event.points_earned", "op": "gt", "text": "500", "type": "any"}],
        "steps": [{"id": action.pk, "kind": "send_event", "event_name": "big", "values": [
            {"name": "total", "type": "float", "source": "event", "path": "total", "constant": "", "template": "",
             "required": False}]}],
    }


# --- schedules --------------------------------------------------------------------------------------------

def test_the_date_scanner_schedule_exists_exactly_while_an_active_date_workflow_does():
    assert not Schedule.objects.filter(name=services.SCHEDULE_DATE_SCAN).exists()

    workflow = make_workflow(name="Daily", trigger_kind="date", schedule_frequency="daily",
                                       schedule_time=dt.time(9))
    schedule = Schedule.objects.get(name=services.SCHEDULE_DATE_SCAN)
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "workflows.tasks.date_triggers_scan", Schedule.MINUTES, services.DATE_SCAN_MINUTES)

    workflow.active = False
    workflow.save()
    assert not Schedule.objects.filter(name=services.SCHEDULE_DATE_SCAN).exists()

    workflow.active = True
    workflow.save()
    workflow.delete()
    assert not Schedule.objects.filter(name=services.SCHEDULE_DATE_SCAN).exists()


def test_schedules_ensure_creates_the_periodic_tasks_once():
    services.schedules_ensure()
    services.schedules_ensure()

    funcs = set(Schedule.objects.filter(name__startswith="workflows:").values_list("func", flat=True))
    assert funcs == {"workflows.tasks.process_triggers", "workflows.tasks.runs_prune",
                     "workflows.tasks.due_runs_resume"}


# --- the admin ------------------------------------------------------------------------------------------

def _formset(prefix: str, rows: list[dict], initial: int = 0) -> dict[str, str]:
    data = {f"{prefix}-TOTAL_FORMS": str(len(rows)), f"{prefix}-INITIAL_FORMS": str(initial),
            f"{prefix}-MIN_NUM_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000"}
    for index, row in enumerate(rows):
        data.update({f"{prefix}-{index}-{key}": value for key, value in row.items()})
    return data


WORKFLOW_FORM = {"name": "Big spenders", "description": "", "active": "on", "priority": "100", "logic": "and"}
EVENT_TRIGGER = {"position": "0", "kind": "event", "action": "checkout", "time": "09:00"}


def _triggers(*rows: dict) -> dict[str, str]:
    return _formset("triggers", list(rows or [EVENT_TRIGGER]))


def test_the_admin_shows_a_bad_condition_next_to_its_field_and_saves_nothing(admin_client):
    data = {**WORKFLOW_FORM, **_triggers(),
            **_formset("conditions", [{"position": "1", "attribute": "member.tier", "operator": "gt", "value": "Gold"}]),
            **_formset("actions", [])}

    response = admin_client.post("/admin/workflows/workflow/add/", data)

    assert response.status_code == 200
    errors = response.context["inline_admin_formsets"][1].formset.errors
    assert errors == [{"operator": ['"gt" does not fit member.tier (string); use one of: changed, contains, '
                                    'equals, exists, in, not_equals, not_in']}]
    assert not Workflow.objects.exists()


def test_the_admin_checks_conditions_against_the_trigger_being_saved(admin_client):
    # event.* attributes exist for event triggers only: the new trigger kind in the form decides.
    data = {**WORKFLOW_FORM, **_triggers({"position": "0", "kind": "date", "frequency": "daily", "time": "09:00"}),
            **_formset("conditions", [{"position": "1", "attribute": "event.total", "operator": "gt", "value": "5"}]),
            **_formset("actions", [])}

    response = admin_client.post("/admin/workflows/workflow/add/", data)

    errors = response.context["inline_admin_formsets"][1].formset.errors
    assert "Unknown attribute" in errors[0]["attribute"][0]


def test_the_admin_saves_a_valid_workflow_with_conditions_and_actions(admin_client):
    data = {**WORKFLOW_FORM, **_triggers(),
            **_formset("conditions", [{"position": "1", "attribute": "event.total", "operator": "gt", "value": "100"}]),
            **_formset("actions", [{"position": "1", "kind": "send_event", "event_name": "big_spender",
                                    "items_path": "items", "currency_path": "currency"}])}

    response = admin_client.post("/admin/workflows/workflow/add/", data)

    assert response.status_code == 302, response.context and response.context["errors"]
    workflow = Workflow.objects.get()
    assert workflow.conditions.get().value == "100"
    action = workflow.actions.get()
    page = admin_client.get(f"/admin/workflows/action/{action.pk}/change/")
    assert page.status_code == 200
    assert admin_client.get(f"/admin/workflows/workflow/{workflow.pk}/change/").status_code == 200


def test_the_run_log_is_read_only_and_filters_by_member(admin_client):
    assert admin_client.get("/admin/workflows/workflowrun/").status_code == 200
    assert admin_client.get("/admin/workflows/workflowrun/add/").status_code == 403
    assert admin_client.get("/admin/workflows/workflowrun/?member__id__exact=1").status_code == 200
    assert admin_client.get("/admin/workflows/triggerrecord/").status_code == 200


def test_the_admin_roles_have_their_workflow_permissions():
    from django.contrib.auth.models import Group

    viewer = set(Group.objects.get(name="Braze viewer").permissions.filter(
        content_type__app_label="workflows").values_list("codename", flat=True))
    manager = set(Group.objects.get(name="Braze manager").permissions.filter(
        content_type__app_label="workflows").values_list("codename", flat=True))

    assert {"view_workflow", "view_workflowrun", "view_triggerrecord"} <= viewer
    assert "change_workflow" not in viewer
    assert {"add_workflow", "change_workflow", "delete_condition", "change_actionvalue"} <= manager
    assert "change_workflowrun" not in manager


def test_a_template_beyond_its_limits_is_refused_when_saved_naming_the_limit():
    action = Action.objects.create(workflow=event_workflow(), kind="sync_data")
    value = ActionValue(action=action, name="padded", braze_type="string", source="template",
                        template="{{ member.first_name|ljust:'50000000' }}")

    errors = errors_of(value)

    assert errors == {"template": ['The filter "ljust:50000000" asks for a width of 50,000,000; at most 1,000.']}

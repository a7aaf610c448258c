"""The editor in the admin (Django's test client): triggers and steps inline, waits as days / hours /
minutes, filters with their conditions and else steps, loops refused, the flow drawn as SVG, and a
run's path through it."""

from __future__ import annotations

import pytest

from loyaltysync import services as loyalty
from loyaltysync.models import CustomAction
from tests.workflows.factories import make_workflow
from tests.workflows.test_models import WORKFLOW_FORM, _formset
from workflows.models import Action, Condition, RunOutcome, Workflow, WorkflowRun

pytestmark = pytest.mark.django_db

STEP = {"position": "1", "kind": "wait", "items_path": "items", "currency_path": "currency", "logic": "and"}


def post(admin_client, url: str, triggers: list[dict], steps: list[dict], conditions=(), initial=(0, 0, 0)):
    data = {**WORKFLOW_FORM, **_formset("triggers", triggers, initial[0]),
            **_formset("conditions", list(conditions), initial[1]), **_formset("actions", steps, initial[2])}
    return admin_client.post(url, data)


def test_two_triggers_and_a_wait_in_days_hours_minutes_are_saved_and_shown_back(admin_client):
    response = post(admin_client, "/admin/workflows/workflow/add/",
                    [{"position": "0", "kind": "event", "action": "opt_in", "time": "09:00"},
                     {"position": "1", "kind": "field_change", "field": "tier", "to_value": "Gold", "time": "09:00"}],
                    [{**STEP, "wait_days": "7", "wait_hours": "2", "wait_minutes": "30"},
                     {**STEP, "position": "2", "kind": "add_points", "points": "50", "reason": "Nudge"}])

    assert response.status_code == 302, response.context and response.context["errors"]
    workflow = Workflow.objects.get()
    assert [t.kind for t in workflow.triggers.all()] == ["event", "field_change"]
    wait = workflow.actions.get(kind="wait")
    assert wait.seconds == 7 * 86400 + 2 * 3600 + 30 * 60
    page = admin_client.get(f"/admin/workflows/workflow/{workflow.pk}/change/").content.decode()
    assert 'name="actions-0-wait_days" value="7"' in page and 'name="actions-0-wait_minutes" value="30"' in page
    assert "workflows/workflow_editor.js" in page and "data-fields=" in page
    svg = page[page.index("<svg class=\"workflow-flowchart\""):]
    for text in ("Event: opt_in", "tier changes to Gold", "Wait 7 days 2 hours 30 minutes", "Add 50 points", "End"):
        assert text in svg
    svg = svg[:svg.index("</svg>")]
    assert "http://" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing from the internet


def test_a_wait_under_a_minute_and_a_workflow_without_trigger_are_refused(admin_client):
    response = post(admin_client, "/admin/workflows/workflow/add/", [], [{**STEP, "wait_minutes": "0"}])

    assert response.status_code == 200
    formsets = {f.formset.prefix: f.formset for f in response.context["inline_admin_formsets"]}
    assert "at least 1" in " ".join(formsets["triggers"].non_form_errors())
    assert formsets["actions"].errors[0]["wait_minutes"] == ["A wait is at least 60 seconds (one minute)."]
    assert not Workflow.objects.exists()


def test_a_filter_gets_its_conditions_and_else_steps_on_the_second_save(admin_client):
    CustomAction.objects.create(name="no_gold")
    workflow = make_workflow(name="Big spenders", trigger_kind="event", trigger_action="opt_in")
    check = Action.objects.create(workflow=workflow, kind="filter", position=1)
    trigger = workflow.triggers.get()
    url = f"/admin/workflows/workflow/{workflow.pk}/change/"

    response = post(admin_client, url,
                    [{"id": str(trigger.pk), "position": "0", "kind": "event", "action": "opt_in", "time": "09:00"}],
                    [{**STEP, "id": str(check.pk), "kind": "filter"},
                     {**STEP, "position": "1", "kind": "trigger_event", "action": "no_gold", "else_of": str(check.pk)}],
                    [{"position": "1", "step": str(check.pk), "attribute": "member.tier", "operator": "equals",
                      "value": "Gold"}], initial=(1, 0, 1))

    assert response.status_code == 302, response.context and response.context["errors"]
    assert Condition.objects.get().step == check
    assert [a.action for a in check.else_steps.all()] == ["no_gold"]
    svg = admin_client.get(url).content.decode()
    assert "If member.tier equals Gold" in svg and ">no<" in svg and ">yes<" in svg and "Record event no_gold" in svg


def test_the_editor_refuses_a_workflow_that_would_start_itself(admin_client):
    CustomAction.objects.create(name="ping")
    response = post(admin_client, "/admin/workflows/workflow/add/",
                    [{"position": "0", "kind": "event", "action": "ping", "time": "09:00"}],
                    [{**STEP, "kind": "trigger_event", "action": "ping"}])

    assert response.status_code == 200
    formset = [f.formset for f in response.context["inline_admin_formsets"] if f.formset.prefix == "actions"][0]
    assert "can start itself" in formset.non_form_errors()[0]
    assert not Workflow.objects.exists()


def test_a_runs_page_draws_the_path_the_run_took(admin_client, transactional_db, loyalty_settings, tiers, q_sync):
    workflow = make_workflow(name="Gold check", trigger_kind="event", trigger_action="opt_in")
    check = Action.objects.create(workflow=workflow, kind="filter", position=1)
    Condition.objects.create(workflow=workflow, step=check, attribute="member.tier", operator="equals", value="Gold")
    points = Action.objects.create(workflow=workflow, kind="add_points", points=5, position=2)
    loyalty.event_record(member_id="M-1", action="opt_in", data={}, source="api")
    run = WorkflowRun.objects.get()
    assert run.outcome == RunOutcome.FILTERED_OUT

    page = admin_client.get(f"/admin/workflows/workflowrun/{run.pk}/change/").content.decode()

    assert f'class="node filter passed failure" data-step="{check.pk}"' in page
    assert f'data-step="{points.pk}" opacity="0.45"' in page  # not passed: faded

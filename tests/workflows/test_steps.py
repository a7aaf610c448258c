"""Each step kind through the API (events posted over DRF), the runner and the sandbox over HTTP.

Waits are resumed by calling the scheduled service with a later "now"; ``tests/workflows/
test_waits_worker.py`` does the same with a real worker that is killed.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from loyaltysync import tiers as manual_tiers
from loyaltysync.models import CustomAction, CustomField, EventSource, FieldType, LoyaltyEvent, Member
from tests.workflows.factories import make_workflow
from workflows import runner
from workflows.models import Action, ActionValue, Condition, DueRun, RunOutcome, WorkflowRun

pytestmark = pytest.mark.usefixtures("q_sync", "braze_connection")


def step(workflow, kind: str, position: int, **fields) -> Action:
    action = Action(workflow=workflow, kind=kind, position=position, **fields)
    action.full_clean()
    action.save()
    return action


@pytest.fixture(autouse=True)
def program(tiers, loyalty_settings):
    for name in ("vip_request", "ping", "not_gold_yet"):
        CustomAction.objects.create(name=name)
    return tiers


def on(action: str, name: str = "W"):
    return make_workflow(name=name, trigger_kind="event", trigger_action=action)


def outcomes(run: WorkflowRun) -> list[tuple[str, str]]:
    return [(entry["kind"], entry["outcome"]) for entry in run.steps]


def later(seconds: int) -> dt.datetime:
    return timezone.now() + dt.timedelta(seconds=seconds)


def test_add_points_then_a_braze_event_each_step_logged_and_the_ledger_names_the_workflow(post_event, sandbox):
    flow = on("opt_in", "Welcome points")
    step(flow, "add_points", 1, points=50, reason="Welcome")
    nudge = step(flow, "send_event", 2, event_name="loyalty_nudge")
    ActionValue.objects.create(action=nudge, name="points", braze_type="integer", source="member",
                               path="points_spendable")

    post_event("M-1", "opt_in")

    member = Member.objects.get(member_id="M-1")
    assert member.points_spendable == 50
    assert member.ledger.get().note == 'Welcome (workflow "Welcome points")'
    added = LoyaltyEvent.objects.get(action="point_add")
    assert (added.source, added.data["workflow"]) == (EventSource.WORKFLOW, "Welcome points")
    run = WorkflowRun.objects.get(workflow=flow)
    assert run.outcome == RunOutcome.SENT and outcomes(run) == [("add_points", "success"), ("send_event", "success")]
    # the Braze step after the points step sees the member as the points step left it
    assert [e["properties"] for e in sandbox.user("M-1")["events"] if e["name"] == "loyalty_nudge"] == [{"points": 50}]
    assert not DueRun.objects.exists()


def test_a_wait_rests_in_the_due_table_and_the_filter_after_it_reads_the_member_as_it_is_then(post_event, sandbox):
    flow = on("opt_in", "Nudge")
    step(flow, "wait", 1, seconds=7 * 86400)
    check = step(flow, "filter", 2)
    Condition.objects.create(workflow=flow, step=check, attribute="member.purchase_count", operator="equals",
                             value="0")
    step(flow, "add_points", 3, points=50)
    post_event("A", "opt_in")
    post_event("B", "opt_in")
    post_event("B", "checkout", transaction_id="T-1", total=10, currency="EUR", items=[])

    runs = {run.member.member_id: run for run in WorkflowRun.objects.filter(workflow=flow)}
    assert {run.outcome for run in runs.values()} == {RunOutcome.WAITING}
    assert runner.due_runs_resume(now=later(7 * 86400 - 60)) == 0  # not due yet

    assert runner.due_runs_resume(now=later(7 * 86400 + 1)) == 2

    a, b = (WorkflowRun.objects.get(pk=runs[name].pk) for name in ("A", "B"))
    assert (a.outcome, outcomes(a)) == (RunOutcome.SENT, [("wait", "success"), ("filter", "success"),
                                                          ("add_points", "success")])
    assert (b.outcome, outcomes(b)) == (RunOutcome.FILTERED_OUT, [("wait", "success"), ("filter", "failure")])
    assert "member.purchase_count" in b.detail
    assert Member.objects.get(member_id="A").points_spendable == 50
    assert Member.objects.get(member_id="B").points_spendable == 10  # the checkout's, nothing from the workflow
    assert not DueRun.objects.exists()
    assert runner.due_runs_resume(now=later(30 * 86400)) == 0  # each run went on once


def test_a_resumed_run_uses_the_workflow_as_it_was_when_it_started(post_event):
    flow = on("opt_in")
    step(flow, "wait", 1, seconds=60)
    points = step(flow, "add_points", 2, points=5)
    post_event("M-1", "opt_in")

    points.points = 500
    points.save()
    runner.due_runs_resume(now=later(61))

    assert Member.objects.get(member_id="M-1").points_spendable == 5


def test_a_failed_filter_takes_its_else_steps(post_event):
    flow = on("opt_in")
    gold = step(flow, "filter", 1)
    Condition.objects.create(workflow=flow, step=gold, attribute="member.tier", operator="equals", value="Gold")
    step(flow, "trigger_event", 1, else_of=gold, action="not_gold_yet")
    step(flow, "add_points", 2, points=1)

    post_event("M-1", "opt_in")

    run = WorkflowRun.objects.get()
    assert outcomes(run) == [("filter", "failure"), ("trigger_event", "success")]
    assert run.outcome == RunOutcome.SENT
    event = LoyaltyEvent.objects.get(action="not_gold_yet")
    assert event.source == EventSource.WORKFLOW
    assert Member.objects.get(member_id="M-1").points_spendable == 0  # the yes-branch did not run


def test_deducting_more_than_the_member_has_fails_the_step_in_plain_words(post_event):
    flow = on("opt_in")
    step(flow, "deduct_points", 1, points=10, reason="Fee")

    post_event("M-1", "opt_in")

    run = WorkflowRun.objects.get()
    assert run.outcome == RunOutcome.ERROR and outcomes(run) == [("deduct_points", "failure")]
    assert "Cannot spend 10 points" in run.error


def test_set_tier_holds_the_tier_for_its_days_then_the_rules_apply_again(post_event, tiers):
    flow = on("vip_request")
    step(flow, "set_tier", 1, tier="Gold", tier_days=7)
    post_event("M-1", "opt_in")

    post_event("M-1", "vip_request")
    post_event("M-1", "point_add", points=10)  # a refresh by the rules does not take the tier away

    member = Member.objects.get(member_id="M-1")
    assert member.tier.name == "Gold"
    assert LoyaltyEvent.objects.filter(action="tier_reached", data__tier="Gold").exists()
    assert manual_tiers.tier_floors_expire(now=later(8 * 86400)) == 1
    assert Member.objects.get(member_id="M-1").tier.name == "Bronze"


def test_update_field_writes_a_template_value_through_the_loyalty_services(post_event):
    CustomField.objects.create(key="segment", label="Segment", type=FieldType.STRING)
    CustomField.objects.create(key="visits", label="Visits", type=FieldType.INTEGER)
    flow = on("opt_in")
    step(flow, "update_field", 1, field="custom_fields.segment", template="tier-{{ member.tier|lower }}")
    step(flow, "update_field", 2, field="custom_fields.visits", value="3")

    post_event("M-1", "opt_in")

    assert Member.objects.get(member_id="M-1").custom_fields == {"segment": "tier-bronze", "visits": 3}
    with pytest.raises(ValidationError) as caught:
        Action(workflow=flow, kind="update_field", field="custom_fields.visits", value="many").full_clean()
    assert "custom_fields.visits (integer)" in caught.value.message_dict["value"][0]


def test_a_value_the_field_refuses_at_run_time_fails_the_step(post_event):
    CustomField.objects.create(key="visits", label="Visits", type=FieldType.INTEGER)
    flow = on("opt_in")
    step(flow, "update_field", 1, field="custom_fields.visits", template="{{ member.first_name }}")

    post_event("M-1", "opt_in", first_name="Ada")

    run = WorkflowRun.objects.get()
    assert run.outcome == RunOutcome.ERROR and "custom_fields.visits" in run.error
    assert Member.objects.get(member_id="M-1").custom_fields == {}


def test_steps_changing_a_field_start_field_change_workflows(post_event):
    CustomField.objects.create(key="segment", label="Segment", type=FieldType.STRING)
    first = on("opt_in", "Sets the segment")
    step(first, "update_field", 1, field="custom_fields.segment", value="new")
    second = make_workflow(name="Segment watcher", trigger_kind="field_change", trigger_field="custom_fields.segment",
                           trigger_to="new")
    step(second, "add_points", 1, points=7)

    post_event("M-1", "opt_in")

    run = WorkflowRun.objects.get(workflow=second)
    assert run.outcome == RunOutcome.SENT and run.depth == 1
    assert Member.objects.get(member_id="M-1").points_spendable == 7


def test_a_loop_the_static_check_missed_is_stopped_by_the_depth_limit_and_logged(post_event, settings):
    settings.WORKFLOW_MAX_DEPTH = 3
    flow = on("ping", "Ping pong")
    Action.objects.create(workflow=flow, kind="trigger_event", action="ping")  # saved around the check

    post_event("M-1", "opt_in")
    post_event("M-1", "ping")

    runs = list(WorkflowRun.objects.filter(workflow=flow).order_by("id"))
    assert [run.depth for run in runs] == [0, 1, 2, 3, 4]
    assert runs[-1].outcome == RunOutcome.ERROR and "limit is 3" in runs[-1].error
    assert LoyaltyEvent.objects.filter(action="ping").count() == 5


def test_a_run_is_taken_on_by_one_claim_only(post_event):
    flow = on("opt_in")
    step(flow, "wait", 1, seconds=60)
    step(flow, "add_points", 2, points=5)
    post_event("M-1", "opt_in")
    due = DueRun.objects.get()
    DueRun.objects.filter(pk=due.pk).update(claimed_until=later(300))  # another worker holds it

    assert runner.due_runs_resume(now=later(61)) == 0
    DueRun.objects.filter(pk=due.pk).update(claimed_until=later(-1))  # that worker died: its lease ended
    assert runner.due_runs_resume(now=later(61)) == 1
    assert Member.objects.get(member_id="M-1").points_spendable == 5


def test_importing_members_starts_field_change_workflows(transactional_db, loyalty_settings, tiers, tmp_path):
    from django.core.management import call_command

    flow = make_workflow(name="Renamed", trigger_kind="field_change", trigger_field="first_name")
    step(flow, "add_points", 1, points=1)
    Member.objects.create(member_id="m-1", first_name="Old")
    path = tmp_path / "members.csv"
    path.write_text("member_id,first_name\nm-1,New\n")

    call_command("import_members", str(path), stdout=open("/dev/null", "w"))  # noqa: SIM115

    run = WorkflowRun.objects.get(workflow=flow)
    assert run.outcome == RunOutcome.SENT and run.trigger.changes == {"first_name": ["Old", "New"]}

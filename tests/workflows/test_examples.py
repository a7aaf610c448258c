"""The shipped example workflows end to end: REST API -> loyalty event -> trigger record -> workflow
run -> Braze outbox -> the sandbox over real HTTP."""

from __future__ import annotations

import re

import pytest

from braze_integration.models import OutboxItem
from braze_integration.payloads import format_time
from loyaltysync.models import LoyaltyEvent
from workflows import services, tasks
from workflows.models import RunOutcome, TriggerRecord, TriggerStatus, WorkflowRun

pytestmark = pytest.mark.usefixtures("q_sync", "braze_connection", "tiers", "shipped_workflows")

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
ITEMS = [
    {"product_id": "sku-1", "product_name": "Running shoes", "price": 49.95, "quantity": 1},
    {"product_id": "sku-2", "product_name": "Socks", "price": 5, "quantity": 2},
]


def events_named(sandbox, member_id: str, name: str) -> list[dict]:
    return [event for event in sandbox.user(member_id)["events"] if event["name"] == name]


def runs_of(workflow_name: str) -> list[WorkflowRun]:
    return list(WorkflowRun.objects.filter(workflow_name=workflow_name).order_by("id"))


def test_last_purchase_syncs_amount_date_currency_and_items_with_their_braze_types(post_event, sandbox):
    post_event("M-1", "opt_in", first_name="Ada")

    answer = post_event("M-1", "checkout", transaction_id="T-1", total=59.95, currency="EUR", items=ITEMS)

    attributes = sandbox.user("M-1")["attributes"]
    assert attributes["last_purchase_amount"] == 59.95 and isinstance(attributes["last_purchase_amount"], float)
    assert ISO_Z.match(attributes["last_purchase_date"])
    assert attributes["last_purchase_date"] == format_time(LoyaltyEvent.objects.get(pk=answer["event"]["id"]).occurred_at)
    assert attributes["last_purchase_currency"] == "EUR"
    assert attributes["last_purchase_items"] == [
        {"product_id": "sku-1", "product_name": "Running shoes", "price": 49.95, "quantity": 1},
        {"product_id": "sku-2", "product_name": "Socks", "price": 5, "quantity": 2},
    ]
    run = runs_of("Last purchase")[0]
    assert run.outcome == RunOutcome.SENT
    assert run.member.member_id == "M-1"
    assert run.trigger_description == f"event #{answer['event']['id']} checkout"
    assert run.workflow_version == 1 and [
        {key: value for key, value in trigger.items() if key != "id"} for trigger in run.snapshot["triggers"]
    ] == [{"kind": "event", "action": "checkout"}]
    assert [item["summary"] for item in run.queued] == [
        "attributes last_purchase_amount, last_purchase_date, last_purchase_currency, last_purchase_items"]
    assert OutboxItem.objects.get(pk=run.queued[0]["outbox_id"]).status == "sent"


def test_welcome_sends_loyalty_program_joined_with_the_members_tier_and_points(post_event, sandbox):
    answer = post_event("M-1", "opt_in", first_name="Ada")

    [joined] = events_named(sandbox, "M-1", "loyalty_program_joined")
    assert joined["properties"] == {"tier": "Bronze", "points": 0, "first_name": "Ada"}
    assert joined["time"] == format_time(LoyaltyEvent.objects.get(pk=answer["event"]["id"]).occurred_at)
    assert [run.outcome for run in runs_of("Welcome to the loyalty program")] == [RunOutcome.SENT]


def test_benefit_earned_on_a_new_tier_sends_the_tier_and_its_benefits(post_event, sandbox):
    post_event("M-1", "opt_in")

    post_event("M-1", "point_add", points=600, reason="Welcome bonus")

    benefits = events_named(sandbox, "M-1", "loyalty_benefit_earned")
    # Joining into Bronze is not reaching a tier: only the upgrade to Silver is a benefit earned
    assert [event["properties"] for event in benefits] == [
        {"benefit": "tier", "tier": "Silver", "previous_tier": "Bronze", "benefits": "Silver benefits: free shipping"},
    ]
    [points] = events_named(sandbox, "M-1", "loyalty_points_earned")
    assert points["properties"] == {"points": 600, "reason": "Welcome bonus", "source": "point_add"}


def test_points_below_the_threshold_send_no_event_and_the_run_says_why(post_event, sandbox):
    post_event("M-1", "opt_in")

    post_event("M-1", "point_add", points=100)

    assert events_named(sandbox, "M-1", "loyalty_points_earned") == []
    [run] = runs_of("Benefit earned: bonus points added")
    assert run.outcome == RunOutcome.FILTERED_OUT
    assert run.queued == []
    assert run.detail == "event.points gt 500 is false (event.points is 100)"


def test_a_big_checkout_sends_points_earned_with_a_templated_message(post_event, sandbox, tiers):
    post_event("M-1", "opt_in", first_name="Ada")

    post_event("M-1", "checkout", transaction_id="T-9", total=750, currency="EUR", items=ITEMS[:1])

    [points] = events_named(sandbox, "M-1", "loyalty_points_earned")
    assert points["properties"] == {"points": 750, "source": "checkout", "order_total": 750.0,
                                    "message": "Ada earned 750 points on order T-9."}
    assert {run.workflow_name: run.outcome for run in WorkflowRun.objects.filter(trigger__event__action="checkout")} == {
        "Last purchase": RunOutcome.SENT, "Benefit earned: big checkout": RunOutcome.SENT}


def test_the_big_checkout_message_fits_braze_for_the_longest_name_and_order_id_the_api_takes(post_event, sandbox, tiers):
    """The shipped template rendered a 150-character name and a 128-character order id to 307 characters,
    over Braze's 255: the run failed and no points event went out."""
    post_event("M-1", "opt_in", first_name="A" * 150)

    post_event("M-1", "checkout", transaction_id="T" * 128, total=900, currency="EUR", items=ITEMS[:1])

    [points] = events_named(sandbox, "M-1", "loyalty_points_earned")
    assert len(points["properties"]["message"]) <= 255
    assert points["properties"]["message"].startswith("A" * 49 + "… earned 900 points on order " + "T" * 119 + "…")


def test_a_small_checkout_runs_both_checkout_workflows_in_priority_order(post_event, sandbox):
    post_event("M-1", "opt_in")

    post_event("M-1", "checkout", transaction_id="T-1", total=20, currency="EUR", items=ITEMS[:1])

    runs = WorkflowRun.objects.filter(trigger__event__action="checkout").order_by("id")
    assert [(run.workflow_name, run.outcome) for run in runs] == [
        ("Last purchase", RunOutcome.SENT), ("Benefit earned: big checkout", RunOutcome.FILTERED_OUT)]
    assert events_named(sandbox, "M-1", "loyalty_points_earned") == []


def test_the_same_loyalty_event_processed_again_never_reaches_braze_twice(post_event, sandbox):
    post_event("M-1", "opt_in")
    post_event("M-1", "point_add", points=600)
    record = TriggerRecord.objects.get(event__action="point_add")
    assert record.status == TriggerStatus.DONE
    events_before, requests_before = len(sandbox.user("M-1")["events"]), sandbox.stats()["requests"]
    runs_before = WorkflowRun.objects.count()

    # The task runs again over the same record (a lost acknowledgement, a second worker)...
    TriggerRecord.objects.filter(pk=record.pk).update(status=TriggerStatus.PENDING)
    tasks.process_triggers()
    # ... and someone forces it through again from the admin.
    report = services.trigger_record_process(record_id=record.pk, force=True)

    assert len(sandbox.user("M-1")["events"]) == events_before
    assert sandbox.stats()["requests"] == requests_before  # nothing new to send at all
    assert len(events_named(sandbox, "M-1", "loyalty_points_earned")) == 1
    # the re-run of the task skipped workflows that had run; the forced one logged runs that queued nothing new
    assert report.runs == 1
    assert WorkflowRun.objects.count() == runs_before + 1
    forced = WorkflowRun.objects.latest("id")
    assert forced.outcome == RunOutcome.SENT
    assert forced.queued[0]["duplicate"] is True
    assert forced.queued[0]["outbox_id"] == OutboxItem.objects.get(dedupe_key=forced.queued[0]["dedupe_key"]).pk
    assert TriggerRecord.objects.get(pk=record.pk).status == TriggerStatus.DONE


def test_every_run_is_logged_with_the_member_trigger_version_and_duration(post_event):
    post_event("M-1", "opt_in")

    runs = WorkflowRun.objects.order_by("id")
    # Joining the entry tier is not reaching a tier: the "benefit earned" workflow does not run for a new member
    assert {(run.workflow_name, run.trigger_description.split()[-1]) for run in runs} == {
        ("Welcome to the loyalty program", "opt_in")}
    for run in runs:
        assert run.member.member_id == "M-1"
        assert run.workflow_version == run.snapshot["version"] == 1
        assert run.duration_ms >= 0 and run.started_at is not None


def test_the_shipped_fixture_holds_valid_workflows_and_no_connection():
    import json

    from tests.workflows.conftest import FIXTURE
    from workflows.models import Action, ActionValue, Condition, Trigger, Workflow

    models = {row["model"] for row in json.loads(FIXTURE.read_text())}
    assert models == {"workflows.workflow", "workflows.trigger", "workflows.condition", "workflows.action",
                      "workflows.actionvalue"}
    for model in (Workflow, Trigger, Condition, Action, ActionValue):
        for row in model.objects.all():
            row.full_clean()  # every shipped rule passes the same checks as one entered in the admin
    assert Workflow.objects.count() == 6
    nudge = Workflow.objects.get(name="Nudge after a week without a purchase")
    assert not nudge.active  # the README's worked example ships switched off
    assert [step.kind for step in nudge.actions.all()] == ["wait", "filter", "add_points", "send_event"]


def test_process_again_in_the_admin_logs_runs_and_sends_nothing_twice(post_event, sandbox, admin_client):
    post_event("M-1", "opt_in")
    record = TriggerRecord.objects.get(event__action="opt_in")
    events_before = len(sandbox.user("M-1")["events"])

    response = admin_client.post("/admin/workflows/triggerrecord/",
                                 {"action": "process_again", "_selected_action": [record.pk]}, follow=True)

    assert response.status_code == 200
    assert "Processed 1 trigger(s): 1 run(s)." in response.content.decode()
    assert WorkflowRun.objects.filter(trigger=record).count() == 2
    assert len(sandbox.user("M-1")["events"]) == events_before
    run = WorkflowRun.objects.filter(trigger=record).latest("id")
    for url in ("/admin/workflows/workflowrun/", f"/admin/workflows/workflowrun/?member__id__exact={run.member_id}",
                f"/admin/workflows/workflowrun/{run.pk}/change/", f"/admin/workflows/triggerrecord/{record.pk}/change/",
                f"/admin/workflows/workflow/{run.workflow_id}/change/"):
        page = admin_client.get(url)
        assert page.status_code == 200, url
    listing = admin_client.get("/admin/workflows/workflowrun/").content.decode()
    assert "event loyalty_program_joined (already queued)" in listing


def test_a_checkouts_mapped_attributes_and_its_workflows_attributes_go_to_braze_in_one_request(post_event, sandbox):
    post_event("M-1", "opt_in", first_name="Ada")
    requests_before = sandbox.stats()["requests"]

    post_event("M-1", "checkout", transaction_id="T-1", total=59.95, currency="EUR", items=ITEMS)

    assert sandbox.stats()["requests"] - requests_before == 1
    attributes = sandbox.user("M-1")["attributes"]
    assert attributes["loyalty_purchase_total"] == 59.95  # mapped
    assert attributes["last_purchase_amount"] == 59.95  # the "Last purchase" workflow's
    assert [run.outcome for run in runs_of("Last purchase")] == [RunOutcome.SENT]

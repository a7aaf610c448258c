"""Running workflows: purchases, errors in plain words, snapshots, lost tasks, retries, pruning."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.utils import timezone

from braze_integration import services as braze
from braze_integration.models import OutboxItem
from braze_integration.payloads import format_time
from loyaltysync import services as loyalty
from tests.workflows.factories import make_workflow
from workflows import services, tasks
from workflows.models import (
    Action,
    ActionValue,
    Condition,
    RunOutcome,
    TriggerKind,
    TriggerRecord,
    TriggerStatus,
    Workflow,
    WorkflowRun,
)

ITEMS = [
    {"product_id": "sku-1", "product_name": "Running shoes", "price": 49.95, "quantity": 1},
    {"product_id": 42, "product_name": "Socks", "price": 2.5, "quantity": 150},
]


@pytest.fixture
def member(transactional_db, loyalty_settings, tiers):
    member, _ = loyalty.event_record(member_id="M-1", action="opt_in", data={"first_name": "Ada"}, source="api")
    return member


def checkout(transaction_id: str = "T-1", total: float = 304.95, items=ITEMS):
    return loyalty.event_record(member_id="M-1", action="checkout", source="api",
                                data={"transaction_id": transaction_id, "total": total, "currency": "EUR",
                                      "items": items})[1]


def workflow(action: str = "checkout", name: str = "W", **fields) -> Workflow:
    return make_workflow(name=name, trigger_kind=TriggerKind.EVENT, trigger_action=action, **fields)


@pytest.mark.usefixtures("q_sync", "braze_connection")
def test_checkout_items_become_braze_purchases_with_item_properties(member, sandbox):
    action = Action.objects.create(workflow=workflow(), kind="send_purchase")
    ActionValue.objects.create(action=action, name="product_name", braze_type="string", source="item",
                               path="product_name")
    ActionValue.objects.create(action=action, name="order", braze_type="string", source="event",
                               path="transaction_id")

    event = checkout()

    purchases = sandbox.user("M-1")["purchases"]
    assert [(p["product_id"], p["currency"], p["price"], p["quantity"]) for p in purchases] == [
        ("sku-1", "EUR", 49.95, 1), ("42", "EUR", 2.5, 100), ("42", "EUR", 2.5, 50)]  # Braze takes 1-100 per object
    assert purchases[0]["properties"] == {"product_name": "Running shoes", "order": "T-1"}
    assert {p["time"] for p in purchases} == {format_time(event.occurred_at)}
    run = WorkflowRun.objects.get()
    assert [item["summary"] for item in run.queued] == ["purchase sku-1 x1", "purchase 42 x100", "purchase 42 x50"]
    assert len({item["dedupe_key"] for item in run.queued}) == 3


@pytest.mark.usefixtures("q_sync", "braze_connection")
def test_a_quantity_beyond_what_a_step_sends_fails_the_run_naming_the_line_and_queues_nothing(member, sandbox):
    Action.objects.create(workflow=workflow(), kind="send_purchase")

    checkout(items=[{"product_id": "sku-1", "product_name": "Socks", "price": 1.0, "quantity": 60_000},
                    {"product_id": "sku-2", "product_name": "Pins", "price": 0.1, "quantity": 40_001}])

    run = WorkflowRun.objects.get()
    assert run.outcome == RunOutcome.ERROR
    assert "items[1].quantity" in run.error and "40001" in run.error and "100,000 units" in run.error
    assert run.queued == []
    assert not OutboxItem.objects.filter(kind="purchase").exists()
    assert sandbox.user("M-1")["purchases"] == []


@pytest.mark.usefixtures("q_sync", "braze_connection")
def test_a_value_that_cannot_be_sent_fails_the_run_in_plain_words_and_queues_nothing(member, sandbox):
    flow = workflow()
    attributes = Action.objects.create(workflow=flow, kind="sync_data", position=1)
    ActionValue.objects.create(action=attributes, name="last_total", braze_type="float", source="event", path="total")
    event_action = Action.objects.create(workflow=flow, kind="send_event", event_name="bought", position=2)
    ActionValue.objects.create(action=event_action, name="coupon", braze_type="string", source="event",
                               path="coupon", required=True)
    requests_before = sandbox.stats()["requests"]

    checkout()

    run = WorkflowRun.objects.get()
    assert run.outcome == RunOutcome.ERROR
    assert run.error == "Step 2 (send_event bought): coupon has no value (event.coupon is empty or missing)."
    assert run.queued == []
    assert "last_total" not in (sandbox.user("M-1") or {}).get("attributes", {})
    assert sandbox.stats()["requests"] - requests_before <= 1  # at most the member's own mapped fields
    assert TriggerRecord.objects.get(kind="event", event__action="checkout").status == TriggerStatus.DONE


@pytest.mark.usefixtures("q_sync")
def test_a_run_logs_the_version_it_ran_with_and_later_edits_do_not_change_the_log(member):
    flow = workflow("point_add")
    Condition.objects.create(workflow=flow, attribute="event.points", operator="gt", value="5")
    loyalty.event_record(member_id="M-1", action="point_add", data={"points": 10}, source="api")
    first = WorkflowRun.objects.get()

    condition = flow.conditions.get()
    condition.value = "50"
    condition.save()
    loyalty.event_record(member_id="M-1", action="point_add", data={"points": 10}, source="api")

    first.refresh_from_db()
    second = WorkflowRun.objects.latest("id")
    assert (first.outcome, second.outcome) == (RunOutcome.SENT, RunOutcome.FILTERED_OUT)
    assert first.snapshot["conditions"][0]["text"] == "5"
    assert second.snapshot["conditions"][0]["text"] == "50"
    assert second.workflow_version == first.workflow_version + 1


@pytest.mark.usefixtures("braze_connection")
def test_records_a_lost_task_left_behind_are_processed_by_the_periodic_task(member, monkeypatch, sandbox):
    action = Action.objects.create(workflow=workflow("point_add"), kind="send_event", event_name="points_added")
    ActionValue.objects.create(action=action, name="points", braze_type="integer", source="event", path="points")
    monkeypatch.setattr(services, "processing_request", lambda: False)  # the broker lost it

    loyalty.event_record(member_id="M-1", action="point_add", data={"points": 10}, source="api")
    assert TriggerRecord.objects.get().status == TriggerStatus.PENDING

    monkeypatch.setattr("django_q.conf.Conf.SYNC", True)
    tasks.process_triggers()

    assert TriggerRecord.objects.get().status == TriggerStatus.DONE
    assert [e["properties"] for e in sandbox.user("M-1")["events"] if e["name"] == "points_added"] == [{"points": 10}]


def test_a_record_claimed_by_a_worker_that_died_is_taken_over_when_its_lease_ends(member):
    workflow("point_add")
    loyalty.event_record(member_id="M-1", action="point_add", data={"points": 10}, source="api")
    TriggerRecord.objects.update(status=TriggerStatus.PROCESSING, claimed_until=timezone.now() + dt.timedelta(minutes=1))

    assert services.trigger_records_process().records == 0  # still leased

    TriggerRecord.objects.update(claimed_until=timezone.now() - dt.timedelta(seconds=1))
    assert services.trigger_records_process().records == 1
    assert TriggerRecord.objects.get().status == TriggerStatus.DONE


@pytest.mark.usefixtures("braze_connection")
def test_a_members_records_wait_for_an_older_one_another_worker_holds_and_run_in_order(member, monkeypatch, sandbox):
    """Given three checkouts of one member, the first held by a worker that was killed (its lease still
    running), when another worker processes, then it leaves the member's later two alone; once the lease
    ends all three run in the order they happened, and Braze's last purchase is the last checkout (it was
    the first: the later two ran first and the held one came last)."""
    flow = workflow()
    step = Action.objects.create(workflow=flow, kind="sync_data", position=1)
    ActionValue.objects.create(action=step, name="last_total", braze_type="float", source="event", path="total")
    monkeypatch.setattr(services, "processing_request", lambda: False)  # nothing runs until asked below
    for number, total in ((1, 11.0), (2, 22.0), (3, 33.0)):
        checkout(f"T-{number}", total=total)
    first, *later = TriggerRecord.objects.filter(kind=TriggerKind.EVENT, event__action="checkout").order_by("id")
    TriggerRecord.objects.filter(pk=first.pk).update(
        status=TriggerStatus.PROCESSING, claim_token=uuid.uuid4(), claimed_until=timezone.now() + dt.timedelta(seconds=30))

    services.trigger_records_process()
    assert {r.status for r in TriggerRecord.objects.filter(pk__in=[r.pk for r in later])} == {TriggerStatus.PENDING}

    TriggerRecord.objects.filter(pk=first.pk).update(claimed_until=timezone.now() - dt.timedelta(seconds=1))
    services.trigger_records_process()
    monkeypatch.setattr("django_q.conf.Conf.SYNC", True)
    braze.sync_flush()

    assert set(TriggerRecord.objects.values_list("status", flat=True)) == {TriggerStatus.DONE}
    assert sandbox.user("M-1")["attributes"]["last_total"] == 33.0


def test_braze_status_shows_trigger_records_a_killed_worker_holds(member, admin_client):
    """Given a checkout whose trigger record a killed worker holds, then braze_status and the dashboard show
    it waiting (the members' own values may all be synced meanwhile), and once it ran, nothing waits."""
    from io import StringIO

    from django.core.management import call_command

    workflow()
    checkout()
    TriggerRecord.objects.update(status=TriggerStatus.PROCESSING, claim_token=uuid.uuid4(),
                                 claimed_until=timezone.now() + dt.timedelta(seconds=30),
                                 created_at=timezone.now() - dt.timedelta(seconds=90))

    def status() -> str:
        out = StringIO()
        call_command("braze_status", stdout=out)
        return out.getvalue()

    assert "Workflow triggers: 1 not yet run; oldest 9" in status()
    page = admin_client.get("/admin/braze_integration/connection/dashboard/").content.decode()
    assert "Workflow triggers not yet run</th><td class=\"braze-upstream\">1 (oldest" in page
    TriggerRecord.objects.update(claimed_until=timezone.now() - dt.timedelta(seconds=1))
    services.trigger_records_process()
    assert "Workflow triggers: 0 not yet run; oldest 0s" in status()


def test_a_record_another_worker_took_over_while_this_one_was_paused_is_not_run_again(member, monkeypatch):
    """Given a batch of two checkouts, when the second is taken over by another worker while this one runs
    the first (it was paused past its lease), then this worker leaves the second alone: no second run of it,
    perhaps after the other worker's newer records."""
    workflow()
    monkeypatch.setattr(services, "processing_request", lambda: False)
    checkout("T-1", total=11.0)
    checkout("T-2", total=22.0)
    second = TriggerRecord.objects.filter(kind=TriggerKind.EVENT, event__action="checkout").order_by("id").last()
    process = services._process

    def taken_over_meanwhile(record, *args, **kwargs):
        if record.pk != second.pk:
            TriggerRecord.objects.filter(pk=second.pk).update(claim_token=uuid.uuid4())
        process(record, *args, **kwargs)

    monkeypatch.setattr(services, "_process", taken_over_meanwhile)
    services.trigger_records_process()

    assert TriggerRecord.objects.get(pk=second.pk).status == TriggerStatus.PROCESSING  # the other worker's
    assert not WorkflowRun.objects.filter(trigger=second).exists()


def test_a_record_that_keeps_failing_is_retried_then_marked_failed_with_the_error(member, monkeypatch):
    workflow("point_add")
    loyalty.event_record(member_id="M-1", action="point_add", data={"points": 10}, source="api")

    def broken(record):
        raise RuntimeError("database went away")

    monkeypatch.setattr(services, "_context", broken)
    for _ in range(services.MAX_ATTEMPTS - 1):
        services.trigger_records_process()
        assert TriggerRecord.objects.get().status == TriggerStatus.PENDING
    services.trigger_records_process()

    record = TriggerRecord.objects.get()
    assert record.status == TriggerStatus.FAILED
    assert record.attempts == services.MAX_ATTEMPTS
    assert record.last_error == "RuntimeError: database went away"


def test_a_workflow_that_cannot_run_logs_an_error_run_instead_of_crashing(member):
    flow = workflow("point_add")
    Condition.objects.create(workflow=flow, attribute="event.points", operator="gt", value="5")
    Condition.objects.filter(workflow=flow).update(operator="like")  # bypassing clean(), e.g. an old row

    loyalty.event_record(member_id="M-1", action="point_add", data={"points": 10}, source="api")
    services.trigger_records_process()

    run = WorkflowRun.objects.get()
    assert run.outcome == RunOutcome.ERROR
    assert run.error.startswith('The workflow cannot run: Condition 1 (event.points): "like" is not an operator')


def test_runs_are_pruned_after_the_retention_period(member, settings):
    settings.WORKFLOW_RUN_RETENTION_DAYS = 7
    workflow("point_add")
    loyalty.event_record(member_id="M-1", action="point_add", data={"points": 10}, source="api")
    services.trigger_records_process()
    run = WorkflowRun.objects.get()
    WorkflowRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - dt.timedelta(days=8))
    TriggerRecord.objects.update(processed_at=timezone.now() - dt.timedelta(days=8))
    loyalty.event_record(member_id="M-1", action="point_add", data={"points": 10}, source="api")
    services.trigger_records_process()

    assert tasks.runs_prune() == 1

    assert WorkflowRun.objects.count() == 1
    assert TriggerRecord.objects.count() == 1


def test_workflows_run_in_priority_order(member):
    later = workflow("point_add", name="Later", priority=50)
    sooner = workflow("point_add", name="Sooner", priority=10)

    loyalty.event_record(member_id="M-1", action="point_add", data={"points": 10}, source="api")
    services.trigger_records_process()

    assert list(WorkflowRun.objects.order_by("id").values_list("workflow", flat=True)) == [sooner.pk, later.pk]


@pytest.mark.usefixtures("q_sync", "braze_connection")
def test_a_template_over_its_limits_fails_the_run_with_the_limit_and_the_worker_goes_on(member, sandbox):
    flow = workflow()
    action = Action.objects.create(workflow=flow, kind="sync_data", position=1)
    ActionValue.objects.create(action=action, name="basket", braze_type="string", source="template",
                               template="{% for a in event.items %}{% for b in event.items %}{{ b.product_id }}"
                                        "{% endfor %}{% endfor %}")
    items = [{"product_id": f"sku-{n}", "product_name": "Pin", "price": 1, "quantity": 1} for n in range(200)]

    started = timezone.now()
    checkout(total=200, items=items)  # 40,000 iterations: over the budget

    run = WorkflowRun.objects.get()
    assert run.outcome == RunOutcome.ERROR
    assert run.error == ("Step 1 (sync_data): basket: The template went over the limit of 10,000 loop "
                         "iterations.")
    assert (timezone.now() - started).total_seconds() < 5
    assert TriggerRecord.objects.get(kind="event", event__action="checkout").status == TriggerStatus.DONE
    assert "basket" not in (sandbox.user("M-1") or {}).get("attributes", {})

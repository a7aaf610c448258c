"""Recording triggers: only when a workflow listens, in the caller's transaction, merged per transaction."""

from __future__ import annotations

import pytest
from django.db import transaction

from loyaltysync import services as loyalty
from loyaltysync.models import CustomField, FieldType, Member
from tests.workflows.factories import make_workflow
from workflows import services
from workflows.models import (
    Action,
    ActionValue,
    RunOutcome,
    TriggerKind,
    TriggerRecord,
    TriggerStatus,
    Workflow,
    WorkflowRun,
)


def workflow_on_event(action: str = "checkout", **fields) -> Workflow:
    return make_workflow(name=f"On {action}", trigger_kind=TriggerKind.EVENT, trigger_action=action, **fields)


def workflow_on_change(field: str, **fields) -> Workflow:
    return make_workflow(name=f"On {field}", trigger_kind=TriggerKind.FIELD_CHANGE, trigger_field=field,
                                   **fields)


@pytest.fixture
def member(transactional_db, loyalty_settings, tiers) -> Member:
    member, _ = loyalty.event_record(member_id="M-1", action="opt_in", data={"first_name": "Ada"}, source="api")
    return member


def test_given_no_workflow_listens_then_events_and_changes_leave_no_record(member):
    workflow_on_event("refund")

    loyalty.event_record(member_id="M-1", action="point_add", data={"points": 10}, source="api")
    member.refresh_from_db()
    member.first_name = "Grace"
    member.save()

    assert TriggerRecord.objects.count() == 0


def test_given_a_workflow_on_an_action_then_each_such_event_is_recorded_once_with_its_id(member):
    workflow_on_event("point_add")

    _, event = loyalty.event_record(member_id="M-1", action="point_add", data={"points": 10}, source="api")

    record = TriggerRecord.objects.get()
    assert (record.key, record.kind, record.event_id, record.member_id) == (f"event:{event.pk}", "event", event.pk,
                                                                            member.pk)


def test_engine_events_are_triggers_too(member):
    workflow_on_event("tier_reached")

    loyalty.event_record(member_id="M-1", action="point_add", data={"points": 600}, source="api")

    assert TriggerRecord.objects.get().event.action == "tier_reached"


def test_an_inactive_workflow_listens_to_nothing(member):
    workflow_on_event("point_add", active=False)

    loyalty.event_record(member_id="M-1", action="point_add", data={"points": 10}, source="api")

    assert TriggerRecord.objects.count() == 0


def test_a_rolled_back_transaction_leaves_no_record_and_queues_no_task(member, monkeypatch):
    workflow_on_event("point_add")
    queued = []
    monkeypatch.setattr(services, "processing_request", lambda: queued.append(1))

    with pytest.raises(RuntimeError), transaction.atomic():
        loyalty.event_record(member_id="M-1", action="point_add", data={"points": 10}, source="api")
        raise RuntimeError("abort")

    assert TriggerRecord.objects.count() == 0
    assert queued == []


def test_one_task_is_queued_per_transaction_after_commit(member, monkeypatch):
    workflow_on_event("point_add")
    workflow_on_change("email")
    queued = []
    monkeypatch.setattr(services, "processing_request", lambda: queued.append(1))

    with transaction.atomic():
        for _ in range(3):
            loyalty.event_record(member_id="M-1", action="point_add", data={"points": 10}, source="api")
        member.refresh_from_db()
        member.email = "ada@example.com"
        member.save()
        assert queued == []  # not before commit

    assert TriggerRecord.objects.count() == 4
    assert queued == [1]


def test_a_field_change_is_recorded_with_old_and_new_values_in_the_runs_terms(member, tiers):
    workflow_on_change("tier")

    loyalty.event_record(member_id="M-1", action="point_add", data={"points": 600}, source="api")

    record = TriggerRecord.objects.get()
    assert record.kind == TriggerKind.FIELD_CHANGE
    assert record.changes["tier"] == ["Bronze", "Silver"]  # tier names, not ids
    assert record.key.startswith("change:")


def test_several_saves_in_one_transaction_merge_into_one_change(member):
    workflow_on_change("points_spendable")

    with transaction.atomic():
        for points in (10, 20, 30):
            loyalty.event_record(member_id="M-1", action="point_add", data={"points": points}, source="api")

    record = TriggerRecord.objects.get()
    assert record.changes["points_spendable"] == [0, 60]


def test_saves_in_separate_transactions_are_separate_changes(member):
    workflow_on_change("points_spendable")

    for points in (10, 20):
        loyalty.event_record(member_id="M-1", action="point_add", data={"points": points}, source="api")

    assert sorted(r.changes["points_spendable"] for r in TriggerRecord.objects.all()) == [[0, 10], [10, 30]]


def test_a_custom_field_change_is_recorded_by_key(member):
    CustomField.objects.create(key="vip", label="VIP", type=FieldType.BOOLEAN)
    workflow_on_change("custom_fields.vip")

    loyalty.member_update(member=member, custom_fields={"vip": True}, source="api")

    assert TriggerRecord.objects.get().changes == {"custom_fields.vip": [None, True]}


def test_a_new_member_is_not_a_field_change(transactional_db, loyalty_settings, tiers):
    workflow_on_change("first_name")

    loyalty.member_create(member_id="M-2", source="api", first_name="Ada")

    assert not TriggerRecord.objects.filter(kind=TriggerKind.FIELD_CHANGE).exists()


def test_save_with_update_fields_records_only_the_fields_written(member):
    workflow_on_change("first_name")
    member.refresh_from_db()
    member.first_name = "Changed in memory only"
    member.last_name = "Lovelace"

    member.save(update_fields=["last_name"])

    assert TriggerRecord.objects.count() == 0


@pytest.mark.usefixtures("q_sync", "braze_connection")
def test_a_field_change_from_to_workflow_runs_with_previous_and_new_values(member, sandbox):
    workflow = workflow_on_change("tier", trigger_from="Bronze", trigger_to="Silver")
    action = Action.objects.create(workflow=workflow, kind="send_event", event_name="tier_upgraded")
    ActionValue.objects.create(action=action, name="summary", braze_type="string", source="template",
                               template="{{ previous.tier }} -> {{ member.tier }}")
    ActionValue.objects.create(action=action, name="points", braze_type="integer", source="member",
                               path="points_earned")

    loyalty.event_record(member_id="M-1", action="point_add", data={"points": 600}, source="api")  # Bronze -> Silver
    loyalty.event_record(member_id="M-1", action="point_add", data={"points": 2000}, source="api")  # Silver -> Gold

    events = [e for e in sandbox.user("M-1")["events"] if e["name"] == "tier_upgraded"]
    assert [e["properties"] for e in events] == [{"summary": "Bronze -> Silver", "points": 600}]
    outcomes = [run.outcome for run in WorkflowRun.objects.order_by("id")]
    assert outcomes == [RunOutcome.SENT, RunOutcome.FILTERED_OUT]
    assert WorkflowRun.objects.order_by("id").last().detail == 'previous.tier equals "Bronze" is false (previous.tier is "Silver")'
    assert not TriggerRecord.objects.exclude(status=TriggerStatus.DONE).exists()

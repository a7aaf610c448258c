"""Date and anniversary triggers: the scanner with a fixed "now", then the runs through to the sandbox."""

from __future__ import annotations

import datetime as dt

import pytest

from loyaltysync import services as loyalty
from loyaltysync.models import CustomField, FieldType, Member
from tests.workflows.factories import make_workflow
from workflows import services
from workflows.models import (
    Action,
    ActionValue,
    Condition,
    DateTriggerScan,
    TriggerRecord,
    Workflow,
    WorkflowRun,
)

pytestmark = pytest.mark.usefixtures("q_sync", "braze_connection")

UTC = dt.UTC


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


@pytest.fixture
def members(transactional_db, loyalty_settings, tiers):
    out = {}
    for member_id, birth_date in (("M-1", "1990-03-04"), ("M-2", "1985-11-30"), ("M-3", "2000-03-04")):
        out[member_id] = loyalty.member_create(member_id=member_id, source="api", birth_date=birth_date,
                                               first_name=member_id)
    return out


def with_event(workflow: Workflow, event_name: str, **templates: str) -> Workflow:
    action = Action.objects.create(workflow=workflow, kind="send_event", event_name=event_name)
    for position, (prop, template) in enumerate(templates.items()):
        ActionValue.objects.create(action=action, position=position, name=prop, braze_type="string",
                                   source="template", template=template)
    return workflow


def events_named(sandbox, member_id: str, name: str) -> list[dict]:
    return [event for event in sandbox.user(member_id)["events"] if event["name"] == name]


def test_a_daily_workflow_runs_once_per_matching_member_per_day(members, sandbox):
    workflow = with_event(make_workflow(name="Daily digest", trigger_kind="date", schedule_frequency="daily",
                                                  schedule_time=dt.time(9, 0)), "daily_digest", day="{{ trigger.period }}")
    Condition.objects.create(workflow=workflow, attribute="member.first_name", operator="in", value="M-1, M-2")

    assert services.date_triggers_scan(now=at(2025, 3, 4, 8, 59)) == 0  # not yet
    assert services.date_triggers_scan(now=at(2025, 3, 4, 9, 1)) == 2  # the pre-filter leaves out M-3
    assert services.date_triggers_scan(now=at(2025, 3, 4, 9, 2)) == 0  # this day is done
    assert services.date_triggers_scan(now=at(2025, 3, 5, 9, 0)) == 2  # the next day

    digest = events_named(sandbox, "M-1", "daily_digest")
    assert [(event["time"], event["properties"]) for event in digest] == [
        ("2025-03-04T09:00:00Z", {"day": "2025-03-04"}), ("2025-03-05T09:00:00Z", {"day": "2025-03-05"})]
    assert sandbox.user("M-3")["events"] == []
    assert WorkflowRun.objects.filter(workflow=workflow).count() == 4
    assert set(DateTriggerScan.objects.values_list("period", "members_matched")) == {("2025-03-04", 2),
                                                                                     ("2025-03-05", 2)}


def test_a_scan_that_comes_late_still_runs_the_period_and_a_record_is_never_made_twice(members):
    make_workflow(name="Weekly", trigger_kind="date", schedule_frequency="weekly",
                            schedule_weekday=0, schedule_time=dt.time(9, 0))  # Mondays

    assert services.date_triggers_scan(now=at(2025, 3, 4, 8, 0)) == 3  # Tuesday 08:00, within a day of Monday 09:00
    DateTriggerScan.objects.all().delete()  # as if the scan had crashed before finishing
    services.date_triggers_scan(now=at(2025, 3, 4, 8, 30))

    assert TriggerRecord.objects.count() == 3
    assert set(TriggerRecord.objects.values_list("period", flat=True)) == {"2025-W10"}
    assert WorkflowRun.objects.count() == 3


def test_a_monthly_workflow_created_after_its_day_waits_for_next_month(members):
    make_workflow(name="Monthly", trigger_kind="date", schedule_frequency="monthly", schedule_day=1,
                            schedule_time=dt.time(9, 0))

    assert services.date_triggers_scan(now=at(2025, 3, 15, 12)) == 0
    assert services.date_triggers_scan(now=at(2025, 4, 1, 9, 30)) == 3


def test_a_birthday_workflow_runs_on_the_day_with_the_members_age(members, sandbox):
    workflow = with_event(
        make_workflow(name="Birthday", trigger_kind="anniversary", trigger_field="birth_date",
                                schedule_time=dt.time(8, 0)),
        "loyalty_birthday", years="{{ trigger.years }}", name="{{ member.first_name }}")
    Condition.objects.create(workflow=workflow, attribute="trigger.years", operator="gte", value="30")

    assert services.date_triggers_scan(now=at(2025, 3, 4, 7, 59)) == 0
    assert services.date_triggers_scan(now=at(2025, 3, 4, 8, 0)) == 1  # M-1 turns 35; M-3 only 25; M-2 not today
    assert services.date_triggers_scan(now=at(2025, 3, 4, 23, 0)) == 0

    [birthday] = events_named(sandbox, "M-1", "loyalty_birthday")
    assert birthday["properties"] == {"years": "35", "name": "M-1"}
    assert birthday["time"] == "2025-03-04T08:00:00Z"
    assert events_named(sandbox, "M-2", "loyalty_birthday") == []
    assert events_named(sandbox, "M-3", "loyalty_birthday") == []


def test_anniversaries_of_a_date_custom_field_and_of_29_february(members, sandbox):
    CustomField.objects.create(key="member_since", label="Member since", type=FieldType.DATE)
    loyalty.member_update(member=members["M-2"], custom_fields={"member_since": "2020-02-29"}, source="api")
    with_event(make_workflow(name="Membership", trigger_kind="anniversary",
                                       trigger_field="custom_fields.member_since", schedule_time=dt.time(9)),
               "membership_anniversary", years="{{ trigger.years }}")

    assert services.date_triggers_scan(now=at(2025, 2, 28, 10)) == 1  # no 29 February in 2025

    [event] = events_named(sandbox, "M-2", "membership_anniversary")
    assert event["properties"] == {"years": "5"}


def test_an_anniversary_in_the_same_year_is_not_one(transactional_db, loyalty_settings, tiers):
    loyalty.member_create(member_id="M-9", source="api")  # opted in now
    make_workflow(name="Opt-in anniversary", trigger_kind="anniversary", trigger_field="opted_in_at",
                            schedule_time=dt.time(0, 0))

    assert services.date_triggers_scan(now=Member.objects.get().opted_in_at + dt.timedelta(minutes=1)) == 0


def test_a_date_workflow_whose_conditions_no_longer_hold_is_reported_not_run(members):
    workflow = make_workflow(name="Daily", trigger_kind="date", schedule_frequency="daily",
                                       schedule_time=dt.time(9, 0))
    field = CustomField.objects.create(key="level", label="Level", type=FieldType.STRING)
    Condition.objects.create(workflow=workflow, attribute="member.custom_fields.level", operator="equals",
                             value="gold")
    field.type = FieldType.INTEGER  # the program changed the field's type since
    field.save()

    assert services.date_triggers_scan(now=at(2025, 3, 4, 10)) == 0

    scan = DateTriggerScan.objects.get()
    assert scan.finished_at is not None
    assert scan.error == 'Condition 1 (member.custom_fields.level): "gold" is not a number'
    assert not TriggerRecord.objects.exists()

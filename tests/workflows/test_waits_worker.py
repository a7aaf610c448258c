"""A wait with a real worker (`manage.py qcluster`), the sandbox over HTTP and a SIGKILL.

The run rests in the due-run table; the worker that would resume it is killed; a new worker runs the
task of the schedule ``workflows: resume due runs`` (queued twice) and takes the run on once: one Braze
event, one points entry.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule
from django_q.tasks import async_task

from loyaltysync import services as loyalty
from loyaltysync.models import Member
from tests.delivery.conftest import start_worker, wait_until  # noqa: F401 (the fixture)
from tests.workflows.factories import make_workflow
from workflows import services
from workflows.models import Action, ActionValue, DueRun, RunOutcome, WorkflowRun

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_wait_survives_a_killed_worker_and_its_run_goes_on_once(braze_connection, sandbox, start_worker,  # noqa: F811
                                                                   loyalty_settings, tiers):
    services.schedules_ensure()
    flow = make_workflow(name="Nudge", trigger_kind="event", trigger_action="opt_in")
    # Three seconds rather than the one minute the editor allows: the test is about surviving, not waiting.
    Action.objects.create(workflow=flow, kind="wait", seconds=3, position=1)
    Action.objects.create(workflow=flow, kind="add_points", points=50, position=2)
    nudge = Action.objects.create(workflow=flow, kind="send_event", event_name="loyalty_nudge", position=3)
    ActionValue.objects.create(action=nudge, name="points", braze_type="integer", source="member",
                               path="points_spendable")
    worker = start_worker(redis_url=settings.REDIS_URL)  # the broker this process queues on
    with transaction.atomic():
        loyalty.event_record(member_id="m-1", action="opt_in", data={}, source="api")
    wait_until(lambda: WorkflowRun.objects.filter(outcome=RunOutcome.WAITING).exists(), timeout=60,
               what="the run to reach its wait")

    worker.kill()
    assert DueRun.objects.count() == 1
    start_worker(redis_url=settings.REDIS_URL)
    # What the schedule queues every minute, queued now (django-q2 looks at its schedules every 30 s), and
    # twice, as two clusters' schedulers may.
    resume = Schedule.objects.get(name=services.SCHEDULE_RESUME)
    wait_until(lambda: DueRun.objects.get().due_at <= timezone.now(), timeout=10, what="the wait to be over")
    for _ in range(2):
        async_task(resume.func)

    wait_until(lambda: WorkflowRun.objects.get().outcome == RunOutcome.SENT, timeout=120, what="the run to finish")
    wait_until(lambda: any(e["name"] == "loyalty_nudge" for e in (sandbox.user("m-1") or {}).get("events", [])),
               timeout=60, what="the nudge in the sandbox")
    run = WorkflowRun.objects.get()
    assert [entry["kind"] for entry in run.steps] == ["wait", "add_points", "send_event"]
    assert Member.objects.get(member_id="m-1").points_spendable == 50
    assert Member.objects.get(member_id="m-1").ledger.count() == 1
    assert [e["properties"] for e in sandbox.user("m-1")["events"] if e["name"] == "loyalty_nudge"] == [{"points": 50}]
    assert not DueRun.objects.exists()

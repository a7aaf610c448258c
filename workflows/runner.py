"""Running a workflow's steps: from its trigger to its end, across waits, with one log per run.

A run starts when a trigger record matches a workflow (``run_start``). Its snapshot, what
triggered it (``WorkflowRun.context``) and its cursor are rows; a ``DueRun`` row says when it goes
on. Each step's effect, the step's line in the log and the cursor's move are one transaction that
also checks the run's claim, so a step happens once even when a worker dies half-way: the claim's
lease ends and the schedule ``workflows: resume due runs`` takes the run up from its cursor.

- Braze actions in a row form one segment: their payloads are built together and queued together
  (with dedupe keys), or, when one value cannot be sent, none is and the run ends with the error.
- A wait moves the cursor past itself and sets ``due_at``; the run rests until then.
- A filter checks its conditions on the member as it is now; when they fail the run takes the
  filter's else branch, or ends (filtered out, which counts as a success, as in Antavo).
- Loyalty steps go through the loyalty services with the source ``workflow``; whatever they
  record may start other workflows, one level deeper (``MAX_DEPTH`` stops loops the static check
  in ``loops.py`` could not see).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from braze_integration import services as braze
from braze_integration.models import OutboxItem
from braze_integration.payloads import PayloadError, format_time
from loyaltysync import services as loyalty
from loyaltysync import tiers
from loyaltysync.errors import LoyaltyError
from loyaltysync.models import CustomField, EventSource, Member

from . import steps as kinds
from .context import member_context
from .models import DueRun, RunOutcome, WorkflowRun
from .plan import StepPlan, WorkflowInvalid, WorkflowPlan
from .values import ValueSpecError, render_template

logger = logging.getLogger(__name__)

CLAIM_LEASE = dt.timedelta(minutes=5)
MAX_ATTEMPTS = 5
RESUME_BATCH = 100
_depth: contextvars.ContextVar[int] = contextvars.ContextVar("workflow_depth", default=0)


def max_depth() -> int:
    """How many workflows may start each other in a chain (``WORKFLOW_MAX_DEPTH``, default 5)."""
    return getattr(settings, "WORKFLOW_MAX_DEPTH", 5)


def current_depth() -> int:
    """The depth of whatever is recorded now: 0 outside workflow steps, the step's run depth + 1 inside."""
    return _depth.get()


@contextmanager
def _deeper(depth: int) -> Iterator[None]:
    token = _depth.set(depth + 1)
    try:
        yield
    finally:
        _depth.reset(token)


class _LostClaim(Exception):
    """Another worker took the run over (our lease ended): stop without writing."""


@dataclass
class _Claim:
    due_id: int
    token: uuid.UUID


# --- starting ------------------------------------------------------------------------------------------

def run_start(*, workflow, snapshot: dict[str, Any], plan: WorkflowPlan | None, problem: str, record,
              context: dict[str, Any], trigger_id: int | None) -> str:
    """Start one run of ``workflow`` for ``record`` (a ``TriggerRecord``); returns its outcome so far."""
    started, clock = timezone.now(), time.monotonic()
    member = record.member
    run = WorkflowRun(workflow=workflow, workflow_name=workflow.name, workflow_version=snapshot["version"],
                      snapshot=snapshot, member=member, trigger=record,
                      trigger_description=record.description[:255], started_at=started, depth=record.depth,
                      context={**{k: v for k, v in context.items() if k != "member"}, "record_key": record.key,
                               "trigger_id": trigger_id})
    if plan is None:
        return _finish_new(run, clock, RunOutcome.ERROR, error=f"The workflow cannot run: {problem}")
    if record.depth > max_depth():
        logger.warning("Workflow %s not started for %s: depth limit %s", workflow.pk, record.key, max_depth())
        return _finish_new(run, clock, RunOutcome.ERROR,
                           error=f"Stopped: {record.depth} workflows started each other in a chain "
                                 f"(the limit is {max_depth()}); is there a loop?")
    entry = plan.entry(trigger_id)
    if not entry.evaluate(context):
        return _finish_new(run, clock, RunOutcome.FILTERED_OUT, detail=entry.explain(context))
    if not plan.steps:
        return _finish_new(run, clock, RunOutcome.SENT)
    token = uuid.uuid4()
    with transaction.atomic():
        run.outcome, run.cursor = RunOutcome.RUNNING, 0
        run.save()
        due = DueRun.objects.create(run=run, due_at=started, claim_token=token, claimed_until=started + CLAIM_LEASE,
                                    attempts=1)
    return _advance(run, plan, context, _Claim(due.pk, token), clock)


def _finish_new(run: WorkflowRun, clock: float, outcome: str, *, error: str = "", detail: str = "") -> str:
    run.outcome, run.error, run.detail = outcome, error[:2000], detail[:2000]
    run.duration_ms = int((time.monotonic() - clock) * 1000)
    run.save()
    return outcome


# --- resuming ------------------------------------------------------------------------------------------

def due_runs_resume(*, now: dt.datetime | None = None, limit: int = RESUME_BATCH) -> int:
    """Claim the runs that are due (or whose worker died) and take each on from its cursor; returns
    how many were taken on. Each claim has a lease, so a run goes on in one worker only."""
    now = now or timezone.now()
    open_rows = Q(due_at__lte=now) & (Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
    ids = list(DueRun.objects.filter(open_rows).order_by("due_at", "id").values_list("pk", flat=True)[:limit])
    taken = 0
    for due_id in ids:
        token = uuid.uuid4()
        if not DueRun.objects.filter(open_rows, pk=due_id).update(
                claim_token=token, claimed_until=timezone.now() + CLAIM_LEASE, attempts=F("attempts") + 1):
            continue  # another worker was quicker
        due = DueRun.objects.select_related("run__member").get(pk=due_id)
        taken += 1
        try:
            _resume(due, _Claim(due.pk, token))
        except _LostClaim:
            continue
        except Exception as err:  # one broken run must not stop the others; retried, then ended
            logger.exception("Workflow run %s failed to resume", due.run_id)
            _resume_failed(due, token, err)
    return taken


def _resume(due: DueRun, claim: _Claim) -> str:
    run = due.run
    clock = time.monotonic()
    if due.attempts > MAX_ATTEMPTS:
        _end(run, claim, RunOutcome.ERROR, error=f"Gave up after {due.attempts - 1} attempts: {due.last_error}")
        return RunOutcome.ERROR
    try:
        plan = WorkflowPlan.compile(run.snapshot)
    except WorkflowInvalid as err:
        _end(run, claim, RunOutcome.ERROR, error=f"The workflow cannot run: {err}")
        return RunOutcome.ERROR
    context = {key: value for key, value in run.context.items() if key not in ("record_key", "trigger_id")}
    context["member"] = member_context(Member.objects.select_related("tier").get(pk=run.member_id))
    context["time"] = format_time(timezone.now())
    return _advance(run, plan, context, claim, clock)


def _resume_failed(due: DueRun, token: uuid.UUID, err: Exception) -> None:
    DueRun.objects.filter(pk=due.pk, claim_token=token).update(
        claim_token=None, claimed_until=None, due_at=timezone.now() + dt.timedelta(minutes=1),
        last_error=f"{type(err).__name__}: {err}"[:2000])


# --- the steps -----------------------------------------------------------------------------------------

def _advance(run: WorkflowRun, plan: WorkflowPlan, context: dict[str, Any], claim: _Claim, clock: float) -> str:
    """Run steps from the cursor until the run ends or waits; returns the run's outcome."""
    while True:
        if run.cursor is None or run.cursor >= len(plan.steps):
            return _end(run, claim, RunOutcome.SENT, clock=clock)
        step = plan.steps[run.cursor]
        if step.action is not None:
            outcome = _braze_segment(run, plan, step, context, claim, clock)
        elif step.kind == kinds.WAIT:
            return _wait(run, step, claim, clock)
        elif step.kind == kinds.FILTER:
            outcome = _filter(run, step, context, claim, clock)
        else:
            outcome = _loyalty_step(run, plan, step, context, claim, clock)
        if outcome is not None:
            return outcome


def _log(run: WorkflowRun, step: StepPlan, outcome: str, detail: str = "") -> None:
    run.steps = [*run.steps, {"index": step.index, "step": step.id, "kind": step.kind, "label": step.label,
                              "outcome": outcome, "at": format_time(timezone.now()), "detail": detail[:500]}]


def _check_claim(claim: _Claim, **changes: Any) -> None:
    """Inside the step's transaction: the run is still ours (else roll the step back)."""
    changes = {"claimed_until": timezone.now() + CLAIM_LEASE, **changes}
    if not DueRun.objects.filter(pk=claim.due_id, claim_token=claim.token).update(**changes):
        raise _LostClaim


def _save_step(run: WorkflowRun, claim: _Claim) -> None:
    _check_claim(claim)
    run.save(update_fields=["steps", "cursor", "queued", "outcome"])


def _end(run: WorkflowRun, claim: _Claim, outcome: str, *, error: str = "", detail: str = "",
         clock: float | None = None) -> str:
    with transaction.atomic():
        _check_claim(claim)
        DueRun.objects.filter(pk=claim.due_id).delete()
        run.outcome, run.cursor = outcome, None
        run.error, run.detail = error[:2000], detail[:2000]
        if clock is not None:
            run.duration_ms += int((time.monotonic() - clock) * 1000)
        run.save()
    return outcome


def _braze_segment(run, plan, first: StepPlan, context, claim, clock) -> str | None:
    segment = [first]
    while segment[-1].next is not None and plan.steps[segment[-1].next].action is not None:
        segment.append(plan.steps[segment[-1].next])
    external_id = run.member.member_id
    built = []
    for step in segment:
        try:
            built.append((step, step.action.intents(context, external_id)))
        except ValueSpecError as err:
            return _step_failed(run, step, claim, clock, f"{step.label}: {err.message}")
        except PayloadError as err:
            return _step_failed(run, step, claim, clock, f"{step.label}: {err.field}: {err.problem}")
    record_key = run.context.get("record_key") or f"run:{run.pk}"
    with transaction.atomic():
        for step, intents in built:
            for intent in intents:
                dedupe_key = f"wf:{run.workflow_id}:trig:{record_key}:act:{intent.key}"
                item = braze.outbox_enqueue(
                    member_id=run.member_id, kind=intent.kind, payload=intent.payload, dedupe_key=dedupe_key,
                    origin=f"workflow {run.workflow_id} v{run.workflow_version}: {run.workflow_name}")
                entry = {"kind": intent.kind, "summary": intent.summary, "dedupe_key": dedupe_key}
                if item is None:
                    entry["outbox_id"] = OutboxItem.objects.filter(dedupe_key=dedupe_key).values_list(
                        "pk", flat=True).first()
                    entry["duplicate"] = True
                else:
                    entry["outbox_id"] = item.pk
                run.queued = [*run.queued, entry]
            _log(run, step, "success", ", ".join(intent.summary for intent in intents) or "nothing to send")
        run.cursor = segment[-1].next
        _save_step(run, claim)
    return None


def _step_failed(run: WorkflowRun, step: StepPlan, claim: _Claim, clock: float, error: str) -> str:
    _log(run, step, "failure", error)
    return _end(run, claim, RunOutcome.ERROR, error=error, clock=clock)


def _wait(run: WorkflowRun, step: StepPlan, claim: _Claim, clock: float) -> str:
    seconds = int(step.settings.get("seconds") or 0)
    due_at = timezone.now() + dt.timedelta(seconds=seconds)
    with transaction.atomic():
        _log(run, step, "success", f"until {format_time(due_at)}")
        run.cursor, run.outcome = step.next, RunOutcome.WAITING
        run.duration_ms += int((time.monotonic() - clock) * 1000)
        _check_claim(claim, due_at=due_at, claim_token=None, claimed_until=None, attempts=0, last_error="")
        run.save(update_fields=["steps", "cursor", "outcome", "duration_ms"])
    return RunOutcome.WAITING


def _filter(run, step: StepPlan, context, claim, clock) -> str | None:
    if step.conditions.evaluate(context):
        outcome, detail, run.cursor = "success", "", step.next
    else:
        outcome, detail, run.cursor = "failure", step.conditions.explain(context), step.else_next
    with transaction.atomic():
        _log(run, step, outcome, detail)
        _save_step(run, claim)
    if outcome == "failure" and run.cursor is None:
        return _end(run, claim, RunOutcome.FILTERED_OUT, detail=f"{step.label}: {detail}", clock=clock)
    return None


def _loyalty_step(run, plan: WorkflowPlan, step: StepPlan, context, claim, clock) -> str | None:
    try:
        with transaction.atomic():
            with _deeper(run.depth):
                summary = _apply(run, plan, step, context)
            _log(run, step, "success", summary)
            run.cursor = step.next
            _save_step(run, claim)
    except (LoyaltyError, ValueSpecError) as err:
        message = getattr(err, "message", str(err))
        return _step_failed(run, step, claim, clock, f"{step.label}: {message}")
    context["member"] = member_context(Member.objects.select_related("tier").get(pk=run.member_id))
    return None


def _apply(run: WorkflowRun, plan: WorkflowPlan, step: StepPlan, context: dict[str, Any]) -> str:
    """The loyalty step's effect through the loyalty services; returns what it did in a few words."""
    settings_ = step.settings
    member_id = run.member.member_id
    source = EventSource.WORKFLOW
    if step.kind in (kinds.ADD_POINTS, kinds.DEDUCT_POINTS):
        action = "point_add" if step.kind == kinds.ADD_POINTS else "point_spend"
        # The reason becomes the ledger row's note: it names the workflow, so the history says where points came from.
        reason = f'{settings_.get("reason") or "Points"} (workflow "{plan.name}")'[:255]
        loyalty.event_record(member_id=member_id, action=action, source=source,
                             data={"points": settings_["points"], "reason": reason, "workflow": plan.name})
        return f"{action} {settings_['points']}: {reason}"
    if step.kind == kinds.SET_TIER:
        member = tiers.member_tier_set(member=run.member, tier_name=settings_["tier"], days=settings_.get("days"),
                                       source=source)
        return f"tier {member.tier.name if member.tier_id else None}"
    if step.kind == kinds.UPDATE_FIELD:
        key = kinds.custom_field_key(settings_["field"])
        field = CustomField.objects.filter(key=key).first()
        if field is None:
            raise ValueSpecError("field", f'"{settings_["field"]}" is not a custom field any more')
        text = render_template(settings_["template"], context) if settings_.get("template") else settings_["value"]
        try:
            value = None if text == "" else kinds.custom_value(field.type, text)
        except Exception as err:
            raise ValueSpecError("value", f"{settings_['field']}: {' '.join(getattr(err, 'messages', [str(err)]))}"
                                 ) from None
        loyalty.member_update(member=run.member, custom_fields={key: value}, source=source)
        return f"{settings_['field']} = {value!r}"
    if step.kind == kinds.TRIGGER_EVENT:
        loyalty.event_record(member_id=member_id, action=settings_["action"], source=source,
                             data={"workflow": plan.name})
        return f"event {settings_['action']}"
    raise WorkflowInvalid(f'{step.label}: "{step.kind}" is not a step kind.')

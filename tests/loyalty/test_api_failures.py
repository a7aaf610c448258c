"""The events API when the database fails: transient errors are retried around the whole transaction, and
a bulk answer always says exactly which events were recorded (never a 5xx after some were committed).

Faults are injected from a ``loyalty_event_recorded`` receiver: it runs inside the recording's transaction,
after the event, the ledger and the member were written. On PostgreSQL the fault is a real error raised by
the server (``RAISE ... USING ERRCODE``), which aborts the transaction as a deadlock would.
"""

from __future__ import annotations

import pytest
from django.db import OperationalError, connection

from loyaltysync.models import LoyaltyEvent, Member
from loyaltysync.signals import loyalty_event_recorded

EVENTS = "/api/v1/events"
BULK = "/api/v1/events/bulk"

# Every test here needs real commits: a retry happens only around a whole transaction, which the
# per-test transaction of ``db`` would hide.
pytestmark = pytest.mark.usefixtures("transactional_db")


def deadlock() -> None:
    """What the database raises when it picked this transaction as a deadlock's victim."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("DO $$ BEGIN RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END $$")
    raise OperationalError("database is locked")  # sqlite3's words when its busy timeout ran out


@pytest.fixture
def faults():
    """faults[action] = [fault, ...]: each recording of that action raises the next fault (``None``: none)."""
    plan: dict[str, list] = {}

    def receiver(sender, event, **kwargs):
        queue = plan.get(event.action)
        if queue:
            fault = queue.pop(0)
            if fault is not None:
                fault()

    loyalty_event_recorded.connect(receiver, dispatch_uid="test-faults")
    yield plan
    loyalty_event_recorded.disconnect(dispatch_uid="test-faults")


def point_add(customer: str, points: int) -> dict:
    return {"customer": customer, "action": "point_add", "data": {"points": points}}


def spendable(member_id: str) -> int:
    return Member.objects.get(member_id=member_id).points_spendable


def test_given_a_deadlock_once_when_an_event_is_posted_then_it_is_retried_and_credited_once(api, enrol, faults):
    enrol("M-1")
    faults["point_add"] = [deadlock]

    response = api.post(EVENTS, point_add("M-1", 5), format="json")

    assert response.status_code == 201, response.content
    assert response.json()["member"]["points_spendable"] == 5
    assert spendable("M-1") == 5
    assert LoyaltyEvent.objects.filter(action="point_add").count() == 1
    assert faults["point_add"] == []  # the fault did happen


def test_given_the_database_stays_busy_when_an_event_is_posted_then_503_with_retry_after_and_nothing_recorded(
    api, enrol, faults
):
    enrol("M-1")
    faults["point_add"] = [deadlock] * 10

    response = api.post(EVENTS, point_add("M-1", 5), format="json")

    assert response.status_code == 503
    body = response.json()
    assert body["error"]["code"] == "unavailable" and "retry" in body["error"]["message"].lower()
    assert response["Retry-After"] == "1"
    assert spendable("M-1") == 0
    assert not LoyaltyEvent.objects.filter(action="point_add").exists()


def test_given_one_event_fails_unexpectedly_when_posted_in_bulk_then_the_others_stand_and_the_answer_says_which(
    api, enrol, faults
):
    enrol("M-1")
    enrol("M-2")

    def crash():
        raise RuntimeError("a bug in a listener")

    faults["point_add"] = [None, crash, deadlock, None]  # the third succeeds on its retry
    faults["visit"] = [deadlock] * 10  # busy for good
    events = [point_add("M-1", 5), point_add("M-2", 7), point_add("M-1", 11), {"customer": "M-2", "action": "visit"}]
    api.raise_request_exception = False

    response = api.post(BULK, {"events": events}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert [result["status"] for result in body["results"]] == [201, 500, 201, 503]
    assert body["errors"] == 2 and body["total"] == 4
    assert body["results"][1]["error"]["code"] == "server_error"
    assert "listener" not in body["results"][1]["error"]["message"]  # the error is logged, not quoted
    assert body["results"][3]["error"]["code"] == "unavailable"
    # Exactly the events answered 201 were recorded.
    assert spendable("M-1") == 16 and spendable("M-2") == 0
    recorded = set(LoyaltyEvent.objects.filter(action__in=["point_add", "visit"]).values_list("pk", flat=True))
    assert recorded == {result["event"]["id"] for result in body["results"] if result["status"] == 201}

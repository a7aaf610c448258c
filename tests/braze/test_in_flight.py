"""Several requests of one claim waiting for Braze at once (``BRAZE_REQUESTS_IN_FLIGHT``), against a real
database and the sandbox over real HTTP. What is watched is what went on the wire, through a wrapper of
the function that posts."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest

from braze_integration import delivery, errors, services
from braze_integration.models import MemberSyncState, SyncRequest, SyncStatus

from .members import claim_everyone, deliverer_for, make_member

pytestmark = pytest.mark.django_db(transaction=True)


class Wire:
    """Wraps ``delivery._post``: which members are on the wire at each moment, and the most requests
    that were at once. ``answer`` may give an answer of its own for the n-th request (from 1)."""

    def __init__(self, answer=None):
        self.post, self.answer = delivery._post, answer
        self.lock = threading.Lock()
        self.on_wire: Counter[str] = Counter()
        self.requests_now = self.peak = self.calls = 0
        self.member_twice_at_once: set[str] = set()

    def __call__(self, client, data: bytes):
        body = json.loads(data)
        ids = {obj["external_id"] for objs in body.values() if isinstance(objs, list) for obj in objs}
        with self.lock:
            self.calls += 1
            number = self.calls
            self.member_twice_at_once |= {i for i in ids if self.on_wire[i]}
            self.on_wire.update(ids)
            self.requests_now += 1
            self.peak = max(self.peak, self.requests_now)
        try:
            own = self.answer(number) if self.answer else None
            return own if own is not None else self.post(client, data)
        finally:
            with self.lock:
                self.on_wire.subtract(ids)
                self.requests_now -= 1


def deliver(connection, token):
    return delivery.deliver_claim(deliverer_for(connection), token, force=True)


@pytest.mark.parametrize("in_flight", [1, 4])
def test_a_claims_requests_wait_for_braze_side_by_side_up_to_the_setting(braze_connection, sandbox, monkeypatch,
                                                                          settings, in_flight):
    settings.BRAZE_REQUESTS_IN_FLIGHT = in_flight
    braze_connection.batch_size = 2
    members = [make_member(f"m-fly-{i}") for i in range(16)]  # eight requests
    sandbox.set_faults(latency_ms=150)  # each answer takes long enough for the next requests to leave
    wire = Wire()
    monkeypatch.setattr(delivery, "_post", wire)

    round_ = deliver(braze_connection, claim_everyone(members))

    assert round_.stop is None
    assert wire.calls == 8
    assert wire.peak == in_flight
    assert MemberSyncState.objects.filter(status=SyncStatus.SYNCED).count() == 16
    assert sandbox.stats()["users"] == 16
    assert all(sandbox.user(m.member_id)["attributes"] for m in members)


def test_a_member_whose_objects_fill_two_requests_is_never_in_two_at_once(braze_connection, sandbox, monkeypatch,
                                                                          settings):
    settings.BRAZE_REQUESTS_IN_FLIGHT = 4
    braze_connection.batch_size = 2
    members = [make_member(f"m-span-{i}") for i in range(6)]
    for n in range(3):  # its attributes and three events: four objects, two requests
        services.outbox_enqueue(member_id=members[2].pk, kind="event", dedupe_key=f"span-{n}",
                                payload={"name": "span", "time": "2026-12-02T10:00:00Z", "properties": {"n": n}})
    sandbox.set_faults(latency_ms=100)
    wire = Wire()
    monkeypatch.setattr(delivery, "_post", wire)

    deliver(braze_connection, claim_everyone(members))

    assert wire.peak > 1  # the others went side by side
    assert wire.member_twice_at_once == set()
    events = sandbox.user("m-span-2")["events"]
    assert sorted(e["properties"]["n"] for e in events) == [0, 1, 2]
    assert MemberSyncState.objects.filter(status=SyncStatus.SYNCED).count() == 6


def test_when_an_answer_stops_sending_the_answers_already_on_the_wire_are_still_recorded(
        braze_connection, sandbox, monkeypatch, settings):
    """The second of five requests is rate limited while the third and fourth are out: Braze took
    those, so their members are synced; the second's and the fifth's (never sent) are given back."""
    settings.BRAZE_REQUESTS_IN_FLIGHT = 4
    braze_connection.batch_size = 1
    members = [make_member(f"m-stop-{i}") for i in range(5)]
    before = SyncRequest.objects.order_by("pk").values_list("pk", flat=True).last() or 0
    sandbox.set_faults(latency_ms=100)

    def second_is_rate_limited(number):
        if number == 2:
            return errors.BrazeRateLimited("Rate limit exceeded", retry_after=30, status=429, body={}, duration_ms=1)
        return None

    wire = Wire(second_is_rate_limited)
    monkeypatch.setattr(delivery, "_post", wire)

    round_ = deliver(braze_connection, claim_everyone(members))

    assert round_.stop is not None and round_.stop.rate_limited
    assert wire.calls == 4  # the fifth never left
    states = {s.member.member_id: s for s in MemberSyncState.objects.select_related("member")}
    assert sorted(k for k, s in states.items() if s.status == SyncStatus.SYNCED) == ["m-stop-0", "m-stop-2",
                                                                                      "m-stop-3"]
    for pending in ("m-stop-1", "m-stop-4"):
        assert states[pending].status == SyncStatus.PENDING and states[pending].claim_token is None
        assert states[pending].attempts == 0
    outcomes = Counter(SyncRequest.objects.filter(pk__gt=before).values_list("outcome", flat=True))
    assert outcomes == {"success": 3, "rate_limited": 1}


def test_a_request_refused_whole_after_sending_stopped_sends_no_halves_and_the_rest_is_still_recorded(
        braze_connection, sandbox, monkeypatch, settings):
    """The first of three requests gets 500 (sending stops) while the second and third are out. The
    second is refused as a whole (400, halving would isolate the bad objects): its halves must not go to a
    Braze just found down, and its members wait for a later round. The third's 201 is recorded: its
    member is synced and its event sent once."""
    settings.BRAZE_REQUESTS_IN_FLIGHT = 4
    braze_connection.batch_size = 2
    members = [make_member(f"m-split-{i}") for i in range(4)]
    last = make_member("m-split-last")
    services.outbox_enqueue(member_id=last.pk, kind="event", dedupe_key="split-last",
                            payload={"name": "split", "time": "2026-12-02T10:00:00Z", "properties": {}})

    def answers(number):
        if number == 1:
            time.sleep(0.5)  # the others are on the wire when this answer comes back
            return errors.BrazeServerError("Internal Server Error", status=500, body={}, duration_ms=500)
        if number == 2:
            return errors.BrazeRequestRejected("Max Input Length Exceeded", status=400, body={}, duration_ms=1)
        return None

    wire = Wire(answers)
    monkeypatch.setattr(delivery, "_post", wire)

    round_ = deliver(braze_connection, claim_everyone([*members, last]))

    assert round_.stop is not None and round_.stop.reason == "Braze unavailable"
    assert wire.calls == 3  # no half of the second went out
    states = {s.member.member_id: s for s in MemberSyncState.objects.select_related("member")}
    assert states["m-split-last"].status == SyncStatus.SYNCED
    assert [e["name"] for e in sandbox.user("m-split-last")["events"]] == ["split"]
    assert last.braze_outbox.get().status == "sent"
    for member_id in ("m-split-2", "m-split-3"):  # refused as a whole: given back, no attempt counted
        assert states[member_id].status == SyncStatus.PENDING and states[member_id].claim_token is None
        assert states[member_id].attempts == 0
    for member_id in ("m-split-0", "m-split-1"):  # the 500: retried later
        assert states[member_id].status == SyncStatus.PENDING and states[member_id].attempts == 1
    assert not SyncRequest.objects.filter(outcome="sending").exists()

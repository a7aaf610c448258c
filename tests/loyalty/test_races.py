"""Requests that race for one new member id: each thread has its own database connection (PostgreSQL;
SQLite serialises writers, so these races cannot happen there).

A barrier inside the service pins the interleaving that loses: every request has looked the member up
(and found nothing) before any of them inserts it, so the unique index, not luck, decides the winner.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from loyaltysync.models import LoyaltyEvent, Member
from loyaltysync.services import events as event_services
from loyaltysync.services import members as member_services

pytestmark = [
    pytest.mark.usefixtures("transactional_db"),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite serialises writers: no race"),
]

THREADS = 6
EVENTS = "/api/v1/events"
MEMBERS = "/api/v1/members/"


def _race(work) -> list:
    """Runs ``work(index)`` in ``THREADS`` threads at once, each on its own connection; returns their results."""
    results: list = [None] * THREADS
    start = threading.Barrier(THREADS)

    def run(index: int) -> None:
        try:
            start.wait(10)
            results[index] = work(index)
        except Exception as error:  # reported to the test
            results[index] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(index,), daemon=True) for index in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    return results


@pytest.fixture
def client_for(api_user):
    """A new API client per thread (a client is not shared between threads)."""
    key = Token.objects.get_or_create(user=api_user)[0].key

    def make() -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        return client

    return make


@pytest.fixture
def inserts_meet(monkeypatch):
    """Every opt_in of a new member waits, just before inserting it, until all the threads are there."""
    meeting = threading.Barrier(THREADS)
    insert = event_services._member_insert

    def insert_when_all_looked(member):
        meeting.wait(10)
        insert(member)

    monkeypatch.setattr(event_services, "_member_insert", insert_when_all_looked)
    return meeting


def _opt_in(customer: str, first_name: str = "O") -> dict:
    return {"customer": customer, "action": "opt_in", "data": {"first_name": first_name}}


@pytest.mark.parametrize("idempotency_keys", [False, True], ids=["plain", "idempotency-key"])
def test_given_six_opt_ins_of_a_new_member_at_once_when_posted_then_each_is_recorded(
    client_for, loyalty_settings, tiers, inserts_meet, idempotency_keys
):
    def post(index: int):
        headers = {"HTTP_IDEMPOTENCY_KEY": f"race-{index}"} if idempotency_keys else {}
        return client_for().post(EVENTS, _opt_in("race-1"), format="json", **headers)

    responses = _race(post)

    assert [getattr(r, "status_code", r) for r in responses] == [201] * THREADS, [
        getattr(r, "content", r) for r in responses
    ]
    member = Member.objects.get(member_id="race-1")
    assert member.first_name == "O" and member.status == "active"
    assert LoyaltyEvent.objects.filter(member=member, action="opt_in").count() == THREADS
    assert {r.json()["event"]["id"] for r in responses} == set(
        LoyaltyEvent.objects.filter(member=member).values_list("id", flat=True)
    )


def test_given_six_bulk_requests_enrolling_one_new_member_at_once_then_every_event_is_recorded(
    client_for, loyalty_settings, tiers, inserts_meet
):
    def post(index: int):
        body = {"events": [_opt_in("race-2"), {"customer": "race-2", "action": "point_add", "data": {"points": 1}}]}
        return client_for().post(f"{EVENTS}/bulk", body, format="json")

    responses = _race(post)

    assert all(getattr(r, "status_code", None) == 200 for r in responses), responses
    statuses = [[result["status"] for result in r.json()["results"]] for r in responses]
    assert statuses == [[201, 201]] * THREADS, [r.json() for r in responses]
    member = Member.objects.get(member_id="race-2")
    assert LoyaltyEvent.objects.filter(member=member, action="opt_in").count() == THREADS
    assert member.points_spendable == THREADS


def test_given_six_creations_of_one_member_at_once_then_one_is_created_and_the_others_are_409_member_exists(
    client_for, loyalty_settings, tiers, monkeypatch
):
    # The first request creates and commits the member while the others have checked that it does not exist
    # and have not yet validated their profile: the interleaving that answered 400 instead of 409.
    checked = threading.Barrier(THREADS)
    first_committed = threading.Event()
    leader = threading.local()
    profile_apply = member_services._profile_apply

    def profile_apply_after_the_first_commit(member, **kwargs):
        leader.is_leader = checked.wait(10) == 0
        if not leader.is_leader:
            first_committed.wait(10)
        return profile_apply(member, **kwargs)

    monkeypatch.setattr(member_services, "_profile_apply", profile_apply_after_the_first_commit)

    def post(index: int):
        try:
            return client_for().post(MEMBERS, {"member_id": "race-3", "first_name": "R"}, format="json")
        finally:
            if getattr(leader, "is_leader", False):
                first_committed.set()

    responses = _race(post)

    statuses = sorted(getattr(r, "status_code", r) for r in responses)
    assert statuses == [201] + [409] * (THREADS - 1), [getattr(r, "content", r) for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "member_exists"
            assert response.json()["error"]["fields"] == {"member_id": ["A member with id 'race-3' exists already."]}
    assert Member.objects.filter(member_id="race-3").count() == 1

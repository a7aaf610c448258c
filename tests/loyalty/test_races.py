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

from loyaltysync.models import Member
from loyaltysync.services import members as member_services

pytestmark = [
    pytest.mark.usefixtures("transactional_db"),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite serialises writers: no race"),
]

THREADS = 6
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

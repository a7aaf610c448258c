"""The Idempotency-Key header of POST /events and /events/bulk: a retry never credits twice."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from loyaltysync.idempotency import KEY_TTL, idempotency_keys_prune
from loyaltysync.models import IdempotencyKey, LoyaltyEvent, Member
from loyaltysync.signals import loyalty_event_recorded
from tests.api_scopes import grant_every_api_scope

pytestmark = pytest.mark.django_db

EVENTS = "/api/v1/events"
BULK = "/api/v1/events/bulk"


def point_add(customer: str, points: int) -> dict:
    return {"customer": customer, "action": "point_add", "data": {"points": points}}


def post(client, url, body, key):
    return client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def spendable(member_id: str) -> int:
    return Member.objects.get(member_id=member_id).points_spendable


def client_of(username: str) -> APIClient:
    user = grant_every_api_scope(get_user_model().objects.create_user(username=username))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_the_same_key_and_body_again_returns_the_first_answer_and_credits_once(api, enrol):
    enrol("M-1")

    first = post(api, EVENTS, point_add("M-1", 5), "key-1")
    again = post(api, EVENTS, point_add("M-1", 5), "key-1")

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert spendable("M-1") == 5
    assert LoyaltyEvent.objects.filter(action="point_add").count() == 1


def test_a_refusal_is_remembered_too(api, enrol, record):
    enrol("M-1")
    refused = post(api, EVENTS, {"customer": "M-1", "action": "point_spend", "data": {"points": 10}}, "spend-1")
    record("M-1", "point_add", points=50)

    again = post(api, EVENTS, {"customer": "M-1", "action": "point_spend", "data": {"points": 10}}, "spend-1")

    assert refused.status_code == again.status_code == 409
    assert again.json() == refused.json() and again["Idempotent-Replayed"] == "true"
    assert spendable("M-1") == 50  # the replay spent nothing


def test_the_same_key_with_another_body_is_422_naming_the_header_and_changes_nothing(api, enrol):
    enrol("M-1")
    post(api, EVENTS, point_add("M-1", 5), "key-1")

    other = post(api, EVENTS, point_add("M-1", 500), "key-1")
    other_endpoint = post(api, BULK, {"events": [point_add("M-1", 5)]}, "key-1")

    for response in (other, other_endpoint):
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "idempotency_key_reused"
        assert list(error["fields"]) == ["Idempotency-Key"]
    assert spendable("M-1") == 5


def test_a_request_refused_as_a_whole_does_not_use_up_its_key(api, enrol):
    enrol("M-1")

    invalid = post(api, EVENTS, {"customer": "M-1", "action": "point_add", "data": "five"}, "key-1")
    fixed = post(api, EVENTS, point_add("M-1", 5), "key-1")

    assert invalid.status_code == 400 and fixed.status_code == 201
    assert spendable("M-1") == 5


def test_keys_belong_to_one_api_user(api, enrol):
    enrol("M-1")
    post(api, EVENTS, point_add("M-1", 5), "shared-key")

    other_user = post(client_of("another-shop"), EVENTS, point_add("M-1", 5), "shared-key")

    assert other_user.status_code == 201 and "Idempotent-Replayed" not in other_user
    assert spendable("M-1") == 10


@pytest.mark.parametrize("key", ["", "with space", "x" * 256, "naïve", "tab\there"])
def test_a_malformed_key_is_400_naming_the_header(api, enrol, key):
    enrol("M-1")

    response = post(api, EVENTS, point_add("M-1", 5), key)

    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]["fields"]
    assert spendable("M-1") == 0


def test_a_key_older_than_24_hours_may_be_used_again_and_is_pruned(api, enrol):
    enrol("M-1")
    post(api, EVENTS, point_add("M-1", 5), "old-key")
    post(api, EVENTS, point_add("M-1", 1), "new-key")
    IdempotencyKey.objects.filter(key="old-key").update(created_at=timezone.now() - KEY_TTL - dt.timedelta(minutes=1))

    reused = post(api, EVENTS, point_add("M-1", 7), "old-key")

    assert reused.status_code == 201 and "Idempotent-Replayed" not in reused
    assert spendable("M-1") == 13
    # Pruning deletes what is older than 24 hours, and only that.
    IdempotencyKey.objects.filter(key="new-key").update(created_at=timezone.now() - dt.timedelta(hours=25))
    assert idempotency_keys_prune() == 1
    assert set(IdempotencyKey.objects.values_list("key", flat=True)) == {"old-key"}


def test_bulk_again_with_the_same_key_replays_every_result_and_credits_once(api, enrol):
    enrol("M-1")
    body = {"events": [point_add("M-1", 5), point_add("M-404", 1), point_add("M-1", 7)]}

    first = post(api, BULK, body, "bulk-1")
    again = post(api, BULK, body, "bulk-1")

    assert first.status_code == again.status_code == 200
    assert [r["status"] for r in first.json()["results"]] == [201, 404, 201]
    assert [r.pop("replayed") for r in first.json()["results"]] == [False, False, False]
    assert [r.pop("replayed") for r in again.json()["results"]] == [True, True, True]
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert spendable("M-1") == 12


@pytest.mark.django_db(transaction=True)
def test_bulk_retried_after_an_event_failed_records_only_what_was_not_recorded(api, enrol):
    enrol("M-1")
    crashes = [True]

    def crash_once(sender, event, **kwargs):
        if event.data.get("points") == 7 and crashes:
            crashes.pop()
            raise RuntimeError("a bug")

    loyalty_event_recorded.connect(crash_once, dispatch_uid="test-crash-once")
    try:
        body = {"events": [point_add("M-1", 5), point_add("M-1", 7)]}
        first = post(api, BULK, body, "bulk-1")
        retry = post(api, BULK, body, "bulk-1")
    finally:
        loyalty_event_recorded.disconnect(dispatch_uid="test-crash-once")

    assert [r["status"] for r in first.json()["results"]] == [201, 500]
    assert [r["status"] for r in retry.json()["results"]] == [201, 201]
    assert [r.pop("replayed") for r in retry.json()["results"]] == [True, False]  # each says which it was
    assert [r.pop("replayed") for r in first.json()["results"]] == [False, False]
    assert retry.json()["results"][0] == first.json()["results"][0]  # replayed, not recorded again
    assert "Idempotent-Replayed" not in retry  # the second event was recorded now
    assert spendable("M-1") == 12


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_requests_with_the_same_key_record_the_event_once(api, enrol):
    enrol("M-1")
    inside, release = threading.Event(), threading.Event()

    def hold_first(sender, event, **kwargs):
        if not inside.is_set():
            inside.set()
            release.wait(10)

    answers = {}

    def send(name):
        try:
            answers[name] = post(api, EVENTS, point_add("M-1", 5), "same-key")
        finally:
            connections.close_all()

    loyalty_event_recorded.connect(hold_first, dispatch_uid="test-hold-first")
    try:
        first = threading.Thread(target=send, args=("first",))
        first.start()
        assert inside.wait(10)  # the first request is inside its transaction, its key part claimed
        second = threading.Thread(target=send, args=("second",))
        second.start()
        _wait_for_a_lock_wait()
        release.set()
        first.join(30)
        second.join(30)
    finally:
        release.set()
        loyalty_event_recorded.disconnect(dispatch_uid="test-hold-first")

    assert answers["first"].status_code == answers["second"].status_code == 201
    assert answers["second"].json() == answers["first"].json()
    assert answers["second"]["Idempotent-Replayed"] == "true"
    assert spendable("M-1") == 5
    assert LoyaltyEvent.objects.filter(action="point_add").count() == 1


def _wait_for_a_lock_wait(timeout: float = 10.0) -> None:
    """Until another backend waits for a lock (PostgreSQL); SQLite's writer waits in its busy handler."""
    if connection.vendor != "postgresql":
        time.sleep(0.5)
        return
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)
    raise AssertionError("the second request never waited for the first")


def test_the_schema_documents_the_header_and_the_422():
    schema = SchemaGenerator().get_schema(request=None, public=True)

    for path in ("/api/v1/events", "/api/v1/events/bulk"):
        operation = schema["paths"][path]["post"]
        headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
        assert headers["Idempotency-Key"].get("required", False) is False
        assert headers["Idempotency-Key"]["schema"]["maxLength"] == 255
        assert "422" in operation["responses"]

"""GET /api/v1/members/{member_id}/ledger: ledger rows with expiry, and the points expiring soon."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from loyaltysync import selectors
from loyaltysync.models import Member

pytestmark = pytest.mark.django_db


def days_ago(days: int) -> str:
    return (timezone.now() - dt.timedelta(days=days)).isoformat()


@pytest.fixture
def member_with_old_and_new_points(enrol, record):
    """M-1 earned 100 points 350 days ago (they expire in 15 days) and 40 today (in 365 days)."""
    enrol("M-1")
    record("M-1", "point_add", points=100, effective_timestamp=days_ago(350))
    record("M-1", "point_add", points=40)


def test_the_ledger_lists_rows_with_expiry_and_sums_what_expires_within_30_days(
    api, member_with_old_and_new_points
):
    """Given 100 points that expire in 15 days and 40 in a year, when the ledger is read, then every row has
    its expiry and `expiring` counts the 100 only."""
    body = api.get("/api/v1/members/M-1/ledger").json()

    assert (body["member_id"], body["points_spendable"], body["points_pending"]) == ("M-1", 140, 0)
    assert [(row["kind"], row["points"], row["remaining"]) for row in body["results"]] == [
        ("adjust", 40, 40),
        ("adjust", 100, 100),
    ]
    soon = parse_datetime(body["results"][1]["expires_at"]) - timezone.now()
    assert dt.timedelta(days=14) < soon < dt.timedelta(days=16)
    assert body["expiring"]["days"] == 30 and body["expiring"]["points"] == 100
    assert [lot["points"] for lot in body["expiring"]["lots"]] == [100]
    assert body["expiring"]["lots"][0]["expires_at"] == body["results"][1]["expires_at"]


def test_spending_takes_the_oldest_points_so_less_expires(api, member_with_old_and_new_points, record):
    """Given 100 points expiring soon, when 70 are spent, then only 30 are left to expire and the spend
    row is the newest in the ledger."""
    record("M-1", "point_spend", points=70)
    body = api.get("/api/v1/members/M-1/ledger").json()
    assert body["results"][0]["kind"] == "spend" and body["results"][0]["points"] == -70
    assert body["expiring"]["points"] == 30


def test_the_ledger_is_cursor_paginated(api, member_with_old_and_new_points, record):
    """Given three ledger rows, when they are read two at a time, then the next page has the third."""
    record("M-1", "point_spend", points=5)
    first = api.get("/api/v1/members/M-1/ledger", {"page_size": 2}).json()
    second = api.get(first["next"]).json()
    assert [row["points"] for row in first["results"] + second["results"]] == [-5, 40, 100]
    assert second["expiring"]["points"] == 95  # each page carries the summary


def test_an_unknown_member_has_no_ledger(api, db):
    """Given no member 'ghost', when its ledger is read, then the answer is 404 member_not_found."""
    response = api.get("/api/v1/members/ghost/ledger")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "member_not_found"


def test_the_selector_counts_due_points_the_job_has_not_expired_yet(enrol, record):
    """Given points whose expiry passed but that the expiry job has not taken, when the selector is asked,
    then they count as expiring (they go at the next run), and a longer window takes in later ones."""
    enrol("M-1")
    record("M-1", "point_add", points=10, effective_timestamp=days_ago(366))
    record("M-1", "point_add", points=20, effective_timestamp=days_ago(300))
    member = Member.objects.get(member_id="M-1")
    assert selectors.member_points_expiring(member=member).points == 10
    assert selectors.member_points_expiring(member=member, days=90).points == 30


def test_the_schema_documents_the_ledger(api):
    """Given the schema, when the ledger operation is read, then its answer has the rows and `expiring`."""
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/v1/members/{member_id}/ledger"]["get"]
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    assert {"expiring", "results", "next", "points_spendable"} <= set(schema["components"]["schemas"][ref]["properties"])
    assert {"400", "401", "403", "404", "429", "503"} <= set(operation["responses"])

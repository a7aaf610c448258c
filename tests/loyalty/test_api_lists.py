"""The API's lists: django-filter filters, unknown parameters refused, cursor pagination and page sizes."""

from __future__ import annotations

import datetime as dt
from base64 import b64decode, b64encode

import pytest
from django.utils import timezone

from loyaltysync.models import Member

pytestmark = pytest.mark.django_db

MEMBERS = "/api/v1/members/"


def ids(page: dict) -> list[str]:
    return [member["member_id"] for member in page["results"]]


def error_details(response) -> dict[str, list[str]]:
    """field -> codes of a 400 answer."""
    assert response.status_code == 400, response.content
    codes: dict[str, list[str]] = {}
    for detail in response.json()["error"]["details"]:
        codes.setdefault(detail["field"], []).append(detail["code"])
    return codes


def walk(api, url: str, params: dict) -> list[str]:
    """Every member id, following `next` links from the first page."""
    seen: list[str] = []
    page = api.get(url, params).json()
    seen += ids(page)
    while page["next"]:
        page = api.get(page["next"]).json()
        seen += ids(page)
    return seen


@pytest.fixture
def five_members(enrol):
    """M-1..M-5, changed on the first five days of January 2026."""
    for day in range(1, 6):
        enrol(f"M-{day}", first_name=f"Name{day}")
        Member.objects.filter(member_id=f"M-{day}").update(
            updated_at=dt.datetime(2026, 1, day, 12, tzinfo=dt.UTC)
        )


# --- filters ---------------------------------------------------------------------------------------------


def test_updated_since_returns_only_members_changed_from_then(api, five_members):
    """Given members changed on Jan 1-5, when the list asks for updated_since Jan 3, then only the members
    changed on Jan 3, 4 and 5 come back; a moment after all of them gives none (it once gave everyone)."""
    assert ids(api.get(MEMBERS, {"updated_since": "2026-01-03T00:00:00Z"}).json()) == ["M-3", "M-4", "M-5"]
    assert ids(api.get(MEMBERS, {"updated_since": "2030-01-01T00:00:00Z"}).json()) == []


def test_updated_since_must_be_an_iso_date_time(api, db):
    """Given a date that is not ISO 8601, when it is sent as updated_since, then a 400 names it."""
    assert error_details(api.get(MEMBERS, {"updated_since": "yesterday"})) == {"updated_since": ["invalid"]}


def test_a_parameter_given_twice_is_a_400_not_the_last_one_silently(api, db):
    assert error_details(api.get(f"{MEMBERS}?status=active&status=opted_out")) == {"status": ["repeated_parameter"]}
    assert error_details(api.get(f"{MEMBERS}?page_size=5&page_size=0")) == {"page_size": ["repeated_parameter"]}


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_updated_since_outside_the_years_utc_has_is_a_400_not_a_crash(api, db, moment):
    """Given a moment that is valid ISO 8601 but falls outside years 1-9999 in UTC, when it is sent as
    updated_since, then a 400 names it (it was a 500 from the database adapter)."""
    response = api.get(MEMBERS, {"updated_since": moment})
    assert response.status_code == 400
    assert error_details(response) == {"updated_since": ["invalid"]}
    assert "between 0001-01-01 and 9999-12-31" in response.json()["error"]["details"][0]["message"]


def test_status_and_tier_filter_and_a_bad_status_is_an_invalid_choice(api, enrol, record):
    """Given an opted-out member and a Silver one, when the list is filtered, then each filter keeps its
    members, and an unknown status answers 400 with the code invalid_choice."""
    enrol("M-1")
    enrol("M-2")
    record("M-1", "opt_out")
    record("M-2", "point_add", points=600)
    assert ids(api.get(MEMBERS, {"status": "opted_out"}).json()) == ["M-1"]
    assert ids(api.get(MEMBERS, {"tier": "SILVER"}).json()) == ["M-2"]
    assert error_details(api.get(MEMBERS, {"status": "sleeping"})) == {"status": ["invalid_choice"]}


def test_ordering_sorts_and_refuses_unknown_fields(api, five_members):
    """Given members changed on different days, when the list is ordered, then the order follows the field
    and direction; ordering by a field the list does not offer, or by a list of fields, is a 400."""
    Member.objects.filter(member_id="M-1").update(updated_at=dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
    assert ids(api.get(MEMBERS, {"ordering": "-member_id"}).json()) == ["M-5", "M-4", "M-3", "M-2", "M-1"]
    assert ids(api.get(MEMBERS, {"ordering": "updated_at"}).json()) == ["M-2", "M-3", "M-4", "M-5", "M-1"]
    assert error_details(api.get(MEMBERS, {"ordering": "points_spendable"})) == {"ordering": ["invalid_choice"]}
    assert error_details(api.get(MEMBERS, {"ordering": "updated_at,-member_id"})) == {"ordering": ["one_field"]}


@pytest.mark.parametrize("url", [MEMBERS, "/api/v1/members/M-1/events/", "/api/v1/members/M-1/ledger"])
def test_unknown_query_parameters_are_refused_by_name(api, enrol, url):
    """Given a list, when it is asked with a misspelt parameter, then the answer is 400 naming it (not the
    whole list, as the filter was silently ignored before)."""
    enrol("M-1")
    response = api.get(url, {"updated_sinse": "2030-01-01T00:00:00Z", "page_size": "1"})
    assert error_details(response) == {"updated_sinse": ["unknown_parameter"]}
    assert "accepts" in response.json()["error"]["fields"]["updated_sinse"][0]


# --- pagination --------------------------------------------------------------------------------------------


def test_page_size_is_honoured_and_next_links_walk_every_member_once(api, five_members):
    """Given five members, when the list is asked for pages of two, then each page has at most two and
    following next gives every member exactly once, in order."""
    first = api.get(MEMBERS, {"page_size": 2}).json()
    assert ids(first) == ["M-1", "M-2"] and first["next"] and first["previous"] is None
    assert walk(api, MEMBERS, {"page_size": 2}) == ["M-1", "M-2", "M-3", "M-4", "M-5"]


def test_the_cursor_is_stable_when_members_are_inserted_while_paging(api, five_members, enrol):
    """Given a client on the second page, when members are inserted before its position, then the next page
    neither repeats a member nor skips one (an offset-based page would shift by the inserted rows)."""
    first = api.get(MEMBERS, {"page_size": 2}).json()
    enrol("M-0")
    enrol("M-10")  # sorts between M-1 and M-2: before the cursor
    second = api.get(first["next"]).json()
    assert ids(second) == ["M-3", "M-4"]


def test_pages_ordered_by_a_shared_timestamp_still_give_everyone_once(api, five_members):
    """Given members that share one updated_at, when an incremental sync pages by updated_at, then the
    primary-key tie-breaker gives every member exactly once."""
    Member.objects.update(updated_at=timezone.now())
    seen = walk(api, MEMBERS, {"ordering": "updated_at", "page_size": 2})
    assert sorted(seen) == ["M-1", "M-2", "M-3", "M-4", "M-5"] and len(seen) == 5


@pytest.mark.parametrize(
    ("page_size", "code"), [("0", "min_value"), ("-3", "min_value"), ("ten", "invalid"), ("501", "max_value")]
)
def test_a_bad_page_size_is_a_400_with_its_code(api, db, page_size, code):
    """Given the maximum of 500, when a page size outside 1-500 or not a number is asked, then a 400 names
    page_size with the code of its problem."""
    assert error_details(api.get(MEMBERS, {"page_size": page_size})) == {"page_size": [code]}


def test_the_maximum_page_size_is_a_setting(api, five_members, settings):
    """Given API_MAX_PAGE_SIZE 3, when 3 are asked, then 3 come; when 4 are asked, then a 400."""
    settings.API_MAX_PAGE_SIZE = 3
    assert len(api.get(MEMBERS, {"page_size": 3}).json()["results"]) == 3
    assert error_details(api.get(MEMBERS, {"page_size": 4})) == {"page_size": ["max_value"]}


@pytest.mark.parametrize("other", ["updated_at", "-member_id", "-created_at"])
def test_a_cursor_reused_with_another_ordering_is_a_400_naming_the_cursor(api, five_members, other):
    """A position in member_id order read as updated_at failed in the database (a 400 naming the body),
    and read as -member_id it silently walked the wrong way."""
    from urllib.parse import parse_qs, urlsplit

    cursor = parse_qs(urlsplit(api.get(MEMBERS, {"ordering": "member_id", "page_size": 2}).json()["next"]).query)
    response = api.get(MEMBERS, {"ordering": other, "page_size": 2, "cursor": cursor["cursor"][0]})

    assert error_details(response) == {"cursor": ["invalid"]}
    assert "another ordering" in response.json()["error"]["details"][0]["message"]


@pytest.mark.parametrize("cursor", [
    "not-a-cursor",
    "AAAA", "====", " ",  # read as the first page before: base64 of nothing, or of NUL bytes
    b64encode(b"x=member_id&p=%00").decode(),  # a NUL in the position: PostgreSQL failed (500)
    b64encode(b"x=-updated_at%2C-id&p=2026-02-30").decode(),  # no such date: Django's words under "body"
])
def test_a_forged_cursor_is_a_400_naming_it(api, five_members, cursor):
    """Given a cursor no link gave, when the list is asked with it, then a 400 names cursor."""
    ordering = "member_id" if "member_id" in b64decode(cursor + "==").decode("latin-1") else "-updated_at"
    response = api.get(MEMBERS, {"cursor": cursor, "ordering": ordering})
    assert error_details(response) == {"cursor": ["invalid"]}, response.content


def test_the_schema_documents_filters_and_pagination(api):
    """Given the schema, when the member list is read, then its parameters are the filters and the cursor
    pagination's, with the page size's bounds."""
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    parameters = {p["name"]: p for p in schema["paths"]["/api/v1/members/"]["get"]["parameters"]}
    assert set(parameters) == {"updated_since", "status", "tier", "search", "ordering", "cursor", "page_size"}
    assert parameters["updated_since"]["schema"]["format"] == "date-time"
    assert (parameters["page_size"]["schema"]["minimum"], parameters["page_size"]["schema"]["maximum"]) == (1, 500)

"""The member page for staff: the custom fields editor by type, adjusting points and recording events
through the services."""

from __future__ import annotations

import json

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.urls import reverse

from loyaltysync.admin_custom_fields import custom_fields_schema, custom_fields_submitted
from loyaltysync.models import EventSource, LoyaltyEvent, Member, PointsTransaction
from tests.loyalty.test_admin import member_form

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser(username="admin", email="admin@example.com", password=None)
    client.force_login(user)
    return client


def change_url(member: Member) -> str:
    return reverse("admin:loyaltysync_member_change", args=[member.pk])


def editor_config(page: str) -> dict:
    """The django-jsonform editor's configuration on the page (its textarea's data attribute)."""
    import html
    import re

    match = re.search(r'name="custom_fields"[^>]*data-django-jsonform="([^"]*)"', page)
    assert match, "no custom fields editor on the page"
    return json.loads(html.unescape(match.group(1)))


# --- the custom fields editor --------------------------------------------------------------------------


def test_the_editor_has_an_input_by_type_for_each_custom_field(custom_fields):
    """Given custom fields of every type, when the editor's schema is built, then dates are date pickers,
    booleans checkboxes, numbers number inputs, arrays lists and objects key/value editors."""
    keys = custom_fields_schema()["keys"]
    assert keys["anniversary_date"] == {"type": "string", "format": "date", "title": "Anniversary Date (anniversary_date)"}
    assert keys["last_visit_at"]["format"] == "date-time"
    assert keys["newsletter"]["type"] == "boolean"
    assert (keys["shoe_size"]["type"], keys["avg_basket"]["type"]) == ("integer", "number")
    assert keys["interests"]["type"] == "array" and keys["interests"]["items"]["type"] == "string"
    assert keys["preferences"]["type"] == "object" and keys["preferences"]["additionalProperties"]
    assert keys["children"]["items"]["type"] == "object"


def test_the_member_page_shows_the_editor_with_the_member_s_values_and_local_scripts(
    staff_client, enrol, custom_fields
):
    """Given a member with custom values, when the page is opened, then the editor is there with the
    values, and its scripts come from this server's static files (no CDN)."""
    member = enrol("M-1", custom_fields={"shoe_size": 42, "newsletter": True})
    page = staff_client.get(change_url(member)).content.decode()
    config = editor_config(page)
    assert json.loads(config["data"]) == {"shoe_size": 42, "newsletter": True}
    assert set(config["schema"]["keys"]) == set(custom_fields)
    scripts = [src for src in __import__("re").findall(r'<script[^>]+src="([^"]+)"', page) if "jsonform" in src]
    assert scripts and all(src.startswith("/static/django_jsonform/") for src in scripts)


def test_what_the_editor_sends_is_saved_through_the_services(staff_client, enrol, custom_fields):
    """Given a member with a shoe size, when the editor sends every field (unticked boxes and empty inputs
    included), then new values are set, an emptied one is removed, untouched empty ones are not created,
    and the change is a profile event."""
    member = enrol("M-1", custom_fields={"shoe_size": 42, "favourite_store": "Mitte"})
    sent = {
        "shoe_size": 43,
        "favourite_store": "",
        "newsletter": False,
        "anniversary_date": "2021-06-30",
        "interests": ["yoga"],
        "preferences": {},
        "avg_basket": None,
    }
    response = staff_client.post(change_url(member), member_form(custom_fields=json.dumps(sent)))
    assert response.status_code == 302, response.context["adminform"].form.errors
    member.refresh_from_db()
    assert member.custom_fields == {"shoe_size": 43, "anniversary_date": "2021-06-30", "interests": ["yoga"]}
    assert LoyaltyEvent.objects.filter(member=member, action="profile", source=EventSource.ADMIN).exists()


def test_a_bad_value_is_refused_naming_the_field_in_the_form_and_the_editor(staff_client, enrol, custom_fields):
    """Given a member, when the editor sends a date in the wrong format, then nothing is saved and the
    services' message names custom_fields.anniversary_date, on the form and on the editor's input."""
    member = enrol("M-1")
    response = staff_client.post(
        change_url(member), member_form(custom_fields=json.dumps({"anniversary_date": "30.06.2021"}))
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["custom_fields"]
    assert any(e.startswith("custom_fields.anniversary_date:") and "YYYY-MM-DD" in e for e in errors), errors
    assert "YYYY-MM-DD" in " ".join(editor_config(response.content.decode())["errorMap"]["anniversary_date"])
    member.refresh_from_db()
    assert member.custom_fields == {}


def test_values_of_fields_no_longer_defined_are_kept():
    """Given a stored value whose field was deleted, when the editor (which no longer shows it) sends the
    others, then that value is kept, not cleared."""
    stored = {"old_field": "keep me", "shoe_size": 40}
    assert custom_fields_submitted({"shoe_size": 41}, stored, known={"shoe_size"}) == {
        "shoe_size": 41,
        "old_field": "keep me",
    }


# --- adjust points, record an event --------------------------------------------------------------------------


def test_staff_adjust_points_with_a_reason_through_the_services(staff_client, enrol):
    """Given a member, when staff add 50 points and then take 20 with reasons, then the balance follows,
    each is an admin event with its ledger row and reason, and the admin history names it."""
    member = enrol("M-1")
    url = reverse("admin:loyaltysync_member_adjust_points", args=[member.pk])
    assert staff_client.post(url, {"points": 50, "reason": "Goodwill: late delivery"}).status_code == 302
    assert staff_client.post(url, {"points": -20, "reason": "Wrongly credited"}).status_code == 302

    member.refresh_from_db()
    assert member.points_spendable == 30
    events = list(LoyaltyEvent.objects.filter(member=member, source=EventSource.ADMIN).order_by("id"))
    assert [(e.action, e.data["points"], e.data["reason"]) for e in events] == [
        ("point_add", 50, "Goodwill: late delivery"),
        ("point_spend", 20, "Wrongly credited"),
    ]
    assert set(PointsTransaction.objects.filter(member=member).values_list("note", flat=True)) >= {
        "Goodwill: late delivery",
        "Wrongly credited",
    }
    history = [entry.get_change_message() for entry in LogEntry.objects.filter(object_id=str(member.pk))]
    assert any("Adjusted points by +50: Goodwill: late delivery" in message for message in history), history
    page = staff_client.get(change_url(member)).content.decode()
    assert "Adjust points" in page and "point_spend" in page  # the link, and the event in the latest events


@pytest.mark.parametrize(
    ("form", "field", "words"),
    [
        ({"points": 10}, "reason", "required"),
        ({"points": 0, "reason": "x"}, "points", "other than 0"),
        ({"points": -500, "reason": "too much"}, "points", "Cannot spend 500 points"),
    ],
)
def test_a_refused_adjustment_says_why_next_to_the_field(staff_client, enrol, form, field, words):
    """Given a member with no points, when an adjustment lacks a reason, is 0, or spends more than the
    member has, then nothing is recorded and the form says why next to the field."""
    member = enrol("M-1")
    response = staff_client.post(reverse("admin:loyaltysync_member_adjust_points", args=[member.pk]), form)
    assert response.status_code == 200
    assert words in " ".join(response.context["form"].errors[field])
    assert not LoyaltyEvent.objects.filter(member=member, source=EventSource.ADMIN).exists()


def test_staff_record_an_event_as_the_api_would(staff_client, enrol):
    """Given a member, when staff record a checkout, then the services apply it (points earned) and the
    event is the member's with the source Admin; bad data is named by its path."""
    member = enrol("M-1")
    url = reverse("admin:loyaltysync_member_record_event", args=[member.pk])
    ok = staff_client.post(
        url, {"action": "checkout", "data": json.dumps({"transaction_id": "T-9", "total": 80, "currency": "EUR"})}
    )
    assert ok.status_code == 302
    member.refresh_from_db()
    assert member.purchase_count == 1 and member.points_earned == 80
    assert LoyaltyEvent.objects.get(member=member, action="checkout").source == EventSource.ADMIN

    bad = staff_client.post(url, {"action": "checkout", "data": json.dumps({"transaction_id": "T-10"})})
    assert bad.status_code == 200
    assert "data.total: is required." in bad.context["form"].errors["data"]


def test_only_staff_who_may_change_members_adjust_points(client, enrol):
    """Given staff who may only view members, when they open the adjust page, then they are refused."""
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user(username="viewer", password=None, is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_member"))
    client.force_login(user)
    member = enrol("M-1")
    assert client.get(reverse("admin:loyaltysync_member_adjust_points", args=[member.pk])).status_code == 403
    assert "Adjust points" not in client.get(change_url(member)).content.decode()

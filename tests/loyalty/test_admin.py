"""The admin: pages render, member saves go through the services, events are read-only."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model

from loyaltysync.admin import MemberAdmin
from loyaltysync.models import LoyaltyEvent, Member

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser(
        username="admin", email="admin@example.com", password=None
    )
    client.force_login(user)
    return client


def member_form(**values):
    form = {
        "member_id": "M-1",
        "status": "active",
        "first_name": "",
        "last_name": "",
        "email": "",
        "phone": "",
        "birth_date": "",
        "gender": "",
        "language": "",
        "country": "",
        "custom_fields": "{}",
    }
    form.update(values)
    return form


def test_member_admin_is_extendable_by_other_apps():
    """Given the admin site, when another app looks up the Member admin, then it finds MemberAdmin with
    plain lists to extend.
    """
    registered = admin.site._registry[Member]
    assert isinstance(registered, MemberAdmin)
    assert isinstance(MemberAdmin.readonly_fields, list | tuple)
    assert isinstance(MemberAdmin.fieldsets, list | tuple) and isinstance(MemberAdmin.actions, list | tuple)


def test_member_pages_render(staff_client, enrol, record):
    """Given a member with a checkout, when staff open the admin pages, then they render with the latest
    events and ledger rows.
    """
    enrol("M-1", first_name="Ada")
    record("M-1", "checkout", transaction_id="T-1", total=20, currency="EUR")
    member = Member.objects.get()
    assert staff_client.get("/admin/loyaltysync/member/?q=ada&status__exact=active").status_code == 200
    page = staff_client.get(f"/admin/loyaltysync/member/{member.pk}/change/")
    assert page.status_code == 200
    content = page.content.decode()
    assert "checkout</a>" in content and "Checkout T-1" in content, content[content.find("Latest 20") :][
        :3000
    ]  # latest events and ledger
    for url in (
        "/admin/loyaltysync/loyaltyevent/?action=checkout",
        "/admin/loyaltysync/pointstransaction/",
        "/admin/loyaltysync/tier/",
        "/admin/loyaltysync/customfield/",
        "/admin/loyaltysync/member/add/",
    ):
        assert staff_client.get(url).status_code == 200, url


def test_adding_a_member_in_the_admin_enrols_them(staff_client, tiers, loyalty_settings, custom_fields):
    """Given the add form, when staff add a member, then member_create enrols them (opt_in from the admin,
    converted custom values, entry tier).
    """
    response = staff_client.post(
        "/admin/loyaltysync/member/add/", member_form(first_name="Grace", custom_fields='{"shoe_size": "39"}')
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    member = Member.objects.get()
    assert member.custom_fields == {"shoe_size": 39} and member.tier.name == "Bronze"
    assert member.events.get(action="opt_in").source == "admin"


def test_changing_a_member_in_the_admin_goes_through_member_update(staff_client, enrol, custom_fields):
    """Given a member, when staff change the profile and custom fields, then member_update records a
    profile event with the changes.
    """
    enrol("M-1", custom_fields={"newsletter": True})
    member = Member.objects.get()
    response = staff_client.post(
        f"/admin/loyaltysync/member/{member.pk}/change/",
        member_form(last_name="Hopper", custom_fields='{"shoe_size": 41}'),
    )
    assert response.status_code == 302
    member.refresh_from_db()
    assert member.last_name == "Hopper" and member.custom_fields == {"shoe_size": 41}
    event = member.events.get(action="profile")
    assert (event.source, event.data) == (
        "admin",
        {"last_name": "Hopper", "custom_fields": {"shoe_size": 41, "newsletter": None}},
    )


def test_bad_custom_value_in_the_admin_is_shown_on_the_field(staff_client, enrol, custom_fields):
    """Given a member, when staff enter a bad custom value, then the form shows the error on the field and
    nothing is saved.
    """
    enrol("M-1")
    member = Member.objects.get()
    response = staff_client.post(
        f"/admin/loyaltysync/member/{member.pk}/change/", member_form(custom_fields='{"shoe_size": "huge"}')
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["custom_fields"] == ["custom_fields.shoe_size: Expected an integer."]
    assert Member.objects.get().custom_fields == {}


def test_events_cannot_be_added_changed_or_deleted(staff_client, enrol):
    """Given an event, when staff try to add, change or delete events, then the admin refuses and shows it
    read-only.
    """
    enrol("M-1")
    event = LoyaltyEvent.objects.first()
    assert staff_client.get("/admin/loyaltysync/loyaltyevent/add/").status_code == 403
    assert (
        staff_client.post(f"/admin/loyaltysync/loyaltyevent/{event.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    page = staff_client.get(f"/admin/loyaltysync/loyaltyevent/{event.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content


def test_recalculate_action_repairs_balances(staff_client, enrol, record):
    """Given a balance edited by hand, when the recalculate action runs, then the balance is the ledger's
    again.
    """
    enrol("M-1")
    record("M-1", "point_add", points=30)
    Member.objects.update(points_spendable=999)
    member = Member.objects.get()
    response = staff_client.post(
        "/admin/loyaltysync/member/", {"action": "recalculate_points", "_selected_action": [member.pk]}
    )
    assert response.status_code == 302
    assert Member.objects.get().points_spendable == 30

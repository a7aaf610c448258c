"""The member page as staff use it: custom fields edited with inputs that follow each field's type, and
points adjusted with a reason. Headless Chromium against the live server."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from loyaltysync import services
from loyaltysync.models import CustomAction, CustomField, FieldType, LoyaltyEvent, Member

from .conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("q_sync")]


@pytest.fixture
def member_with_custom_fields(transactional_db):
    for key, label, field_type in [
        ("anniversary_date", "Anniversary", FieldType.DATE),
        ("newsletter", "Newsletter", FieldType.BOOLEAN),
        ("shoe_size", "Shoe size", FieldType.INTEGER),
        ("interests", "Interests", FieldType.ARRAY),
    ]:
        CustomField.objects.create(key=key, label=label, type=field_type)
    CustomAction.objects.get_or_create(name="store_visit")
    member, _ = services.event_record(
        member_id="m-1", action="opt_in", data={"first_name": "Ada", "custom_fields": {"shoe_size": 38}},
        source="api",
    )
    return member


def test_custom_fields_are_edited_with_a_date_picker_a_checkbox_and_a_list(
    logged_in, live_server, member_with_custom_fields
):
    page = logged_in
    member = member_with_custom_fields
    page.goto(f"{live_server.url}/admin/loyaltysync/member/{member.pk}/change/")

    editor = page.locator("[data-django-jsonform-container]")
    expect(editor).to_be_visible()
    # Each type has its own input: no raw JSON to type.
    expect(editor.locator("input[type=date]")).to_have_count(1)
    expect(editor.locator("input[type=checkbox]")).to_have_count(1)
    expect(editor.locator("input[type=number]")).to_have_value("38")
    assert page.locator("textarea[name=custom_fields]").is_hidden()

    editor.locator("input[type=date]").fill("2021-06-30")
    editor.locator("input[type=checkbox]").check()
    editor.locator("input[type=number]").fill("39")
    editor.get_by_role("button", name="Add item").click()
    editor.locator("input[type=text]").last.fill("yoga")
    screenshot(page, "member-custom-fields", full_page=False)
    page.click("input[name=_continue]")

    expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")
    member.refresh_from_db()
    assert member.custom_fields == {
        "shoe_size": 39,
        "anniversary_date": "2021-06-30",
        "newsletter": True,
        "interests": ["yoga"],
    }
    assert LoyaltyEvent.objects.filter(member=member, action="profile", source="admin").exists()


def test_a_value_the_services_refuse_is_named_on_the_page(logged_in, live_server, member_with_custom_fields):
    page = logged_in
    member = member_with_custom_fields
    CustomField.objects.filter(key="shoe_size").update(type=FieldType.DATE)  # the stored 38 is no date now
    page.goto(f"{live_server.url}/admin/loyaltysync/member/{member.pk}/change/")
    page.locator("[data-django-jsonform-container] input[type=date]").first.fill("2021-06-30")
    page.click("input[name=_continue]")

    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".errorlist").first).to_contain_text("custom_fields.shoe_size")
    assert Member.objects.get(pk=member.pk).custom_fields == {"shoe_size": 38}


def test_staff_adjust_points_with_a_reason_and_see_it_in_the_history(
    logged_in, live_server, member_with_custom_fields
):
    page = logged_in
    member = member_with_custom_fields
    page.goto(f"{live_server.url}/admin/loyaltysync/member/{member.pk}/change/")
    page.click("#member-adjust-points")

    page.fill("#id_points", "25")
    page.click("input[name=_save]")
    expect(page.locator(".errorlist")).to_contain_text("This field is required")  # the reason

    page.fill("#id_reason", "Goodwill: late delivery")
    page.click("input[name=_save]")
    expect(page.locator("ul.messagelist")).to_contain_text("Adjusted points by +25")
    member.refresh_from_db()
    assert member.points_spendable == 25

    page.click("#member-record-event")
    page.fill("#id_action", "store_visit")
    page.fill("#id_data", '{"store": "Berlin Mitte"}')
    page.click("input[name=_save]")
    expect(page.locator("ul.messagelist")).to_contain_text("Recorded the event store_visit")
    page.locator("fieldset", has_text="Latest events").locator(".collapse-toggle, summary").first.click()
    expect(page.locator("fieldset", has_text="Latest events")).to_contain_text("point_add")
    expect(page.locator("fieldset", has_text="Latest events")).to_contain_text("store_visit")

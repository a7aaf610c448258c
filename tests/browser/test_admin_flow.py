"""The admin as a person uses it: headless Chromium against the live server, Braze played by the sandbox."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import requests
from playwright.sync_api import expect

from braze_integration.models import Connection, ConnectionStatus, FieldMapping, ResyncRun, ResyncStatus
from loyaltysync.models import Member
from tests.conftest import SANDBOX_KEY

from .conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("q_sync")]

# Loyalty field -> Braze attribute: one of each of integer, float, string, boolean, date, array, object.
MAPPINGS = [
    ("points_spendable", "loyalty_points"),
    ("purchase_total", "loyalty_purchase_total"),
    ("first_name", "loyalty_first_name"),
    ("opted_in", "loyalty_opted_in"),
    ("birth_date", "loyalty_birthday"),
    ("last_purchase_products", "loyalty_last_products"),
    ("loyalty_summary", "loyalty_summary"),
]


def messages(page) -> str:
    return " ".join(page.locator("ul.messagelist li").all_inner_texts())


def dashboard_figure(page, live_server, element_id: str) -> int:
    page.goto(f"{live_server.url}/admin/braze_integration/connection/dashboard/")
    return int(page.locator(f"#{element_id}").inner_text())


def test_connect_map_sync_and_watch_it_on_the_dashboard(logged_in, live_server, sandbox, browser_admin):
    page = logged_in
    for index in range(3):
        Member.objects.create(member_id=f"m-{index}", first_name="Ada", birth_date=dt.date(1990, 5, 17))

    # Connect: a custom URL (the sandbox), the key, save; then the Connect button.
    page.goto(f"{live_server.url}/admin/braze_integration/connection/add/")
    expect(page.locator("#id_instance_url")).to_be_hidden()  # only for "Custom URL"
    page.fill("#id_name", "Braze sandbox")
    page.select_option("#id_instance", "custom")
    page.fill("#id_instance_url", sandbox.url)
    page.fill("#id_new_api_key", SANDBOX_KEY)
    page.fill("#id_app_id", "loyalty-app")
    page.click("input[name=_save]")
    expect(page.locator("#braze-connection-state")).to_have_text("Never checked")
    assert page.input_value("#id_new_api_key") == ""  # the key is never rendered back
    page.click("button.braze-connect-button")
    expect(page.locator("#braze-connection-state")).to_have_text("Connected")
    assert "Connected: Braze accepted the API key" in messages(page)
    screenshot(page, "connect")

    # Sync fields: one row per mapping, then Save; the resync is offered with the dry run's figures.
    for index, (loyalty_field, remote_field) in enumerate(MAPPINGS):
        page.click("#mappings-group tr.add-row a")
        page.select_option(f"#id_mappings-{index}-loyalty_field", loyalty_field)
        page.fill(f"#id_mappings-{index}-remote_field", remote_field)
    screenshot(page, "sync-fields")
    page.click("input[name=_continue]")
    expect(page.locator("#dry-run-would-send")).to_have_text("3")
    assert page.locator("#dry-run-members").inner_text() == "3"
    assert FieldMapping.objects.count() == len(MAPPINGS)
    screenshot(page, "resync-offer")
    page.click("#braze-start-resync")
    expect(page.locator("ul.messagelist")).to_contain_text("started in the background")
    run = ResyncRun.objects.get()
    assert run.status == ResyncStatus.FINISHED and run.members_sent == 3
    assert sandbox.user("m-1")["attributes"]["loyalty_birthday"].startswith("1990-05-17")

    # The mapping page again, with the saved rows and their Braze types.
    connection = Connection.objects.get()
    page.goto(f"{live_server.url}/admin/braze_integration/connection/{connection.pk}/change/")
    expect(page.locator("#mappings-group")).to_contain_text(
        "array of objects"
    )  # a choice label in the dropdown
    screenshot(page, "sync-fields")

    # Edit a member in the admin: the change reaches Braze.
    member = Member.objects.get(member_id="m-1")
    page.goto(f"{live_server.url}/admin/loyaltysync/member/{member.pk}/change/")
    page.fill("#id_first_name", "Grace")
    page.click("input[name=_continue]")
    expect(page.locator("ul.messagelist")).to_contain_text("was changed successfully")
    assert sandbox.user("m-1")["attributes"]["loyalty_first_name"] == "Grace"
    expect(page.locator("fieldset", has_text="Braze sync")).to_contain_text("Synced")

    # A workflow on checkout that sends a Braze custom event, made in the admin.
    page.goto(f"{live_server.url}/admin/workflows/workflow/add/")
    page.fill("#id_name", "Last purchase to Braze")
    page.select_option("#id_triggers-0-kind", "event")
    page.fill("#id_triggers-0-action", "checkout")
    expect(page.locator("#id_triggers-0-frequency")).to_be_hidden()  # each kind shows only its own fields
    page.click("#actions-group .add-row a")
    page.select_option("#id_actions-0-kind", "wait")
    expect(page.locator("#id_actions-0-wait_days")).to_be_visible()
    expect(page.locator("#id_actions-0-event_name")).to_be_hidden()
    page.select_option("#id_actions-0-kind", "send_event")
    expect(page.locator("#id_actions-0-wait_days")).to_be_hidden()
    page.fill("#id_actions-0-event_name", "loyalty_last_purchase")
    page.click("input[name=_continue]")
    expect(page.locator("ul.messagelist")).to_contain_text("was added successfully")
    screenshot(page, "workflow")

    # A checkout through the API, with a DRF token: Braze hears of the purchase; the dashboard moves.
    requests_before = dashboard_figure(page, live_server, "braze-requests-today")
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=browser_admin)
    answer = requests.post(
        f"{live_server.url}/api/v1/events",
        timeout=10,
        headers={"Authorization": f"Token {token}"},
        json={
            "customer": "m-1",
            "action": "checkout",
            "data": {
                "transaction_id": "T-1001",
                "total": 80,
                "currency": "EUR",
                "items": [{"product_id": "sku-7", "product_name": "Shoes", "price": 80, "quantity": 1}],
            },
        },
    )
    assert answer.status_code == 201, answer.text
    attributes = sandbox.user("m-1")["attributes"]
    assert attributes["loyalty_purchase_total"] == 80 and attributes["loyalty_last_products"] == ["sku-7"]
    assert attributes["loyalty_points"] > 0
    assert [e["name"] for e in sandbox.user("m-1")["events"]] == ["loyalty_last_purchase"]
    page.goto(f"{live_server.url}/admin/workflows/workflowrun/")
    expect(page.locator("#result_list")).to_contain_text("Last purchase to Braze")
    expect(page.locator("#result_list")).to_contain_text("m-1")
    screenshot(page, "workflow-runs")

    assert dashboard_figure(page, live_server, "braze-requests-today") > requests_before
    assert int(page.locator("#braze-members-synced").inner_text()) == 3
    expect(page.locator("#braze-connection-state")).to_have_text("Connected")
    assert page.locator("svg.braze-chart rect.braze-chart__bar").count() >= 1
    screenshot(page, "dashboard")

    # The member page's Braze panel: Sync now, the requests that carried the member, the payload.
    page.goto(f"{live_server.url}/admin/loyaltysync/member/{member.pk}/change/")
    page.click("button.braze-sync-now")
    expect(page.locator("ul.messagelist")).to_contain_text(re.compile(r"sent to Braze|now 1 synced"))
    panel = page.locator("fieldset", has_text="Braze sync")
    expect(panel).to_contain_text("Last 20 requests")
    expect(panel).to_contain_text('"loyalty_first_name": "Grace"')
    panel.evaluate("element => element.scrollIntoView({block: 'start'})")
    screenshot(page, "member-page", full_page=False)

    # The request log.
    page.goto(f"{live_server.url}/admin/braze_integration/syncrequest/")
    expect(page.locator("#result_list")).to_contain_text("Success")
    screenshot(page, "request-log")


def test_wrong_credentials_show_a_readable_error_on_the_connect_screen(logged_in, live_server, sandbox):
    page = logged_in
    connection = Connection(name="Braze", instance_url=sandbox.url)
    connection.set_api_key("a-key-braze-does-not-know-1234")
    connection.save()

    page.goto(f"{live_server.url}/admin/braze_integration/connection/{connection.pk}/change/")
    page.click("button.braze-connect-button")

    expect(page.locator("#braze-connection-state")).to_have_text("Needs attention")
    expect(page.locator("ul.messagelist li.error")).to_contain_text("Braze does not accept this API key")
    # Braze's words once: in the message right after Connect, not repeated in the state panel.
    expect(page.get_by_text("Braze said: Invalid API Key (HTTP 401)")).to_have_count(1)
    assert Connection.objects.get().status == ConnectionStatus.NEEDS_ATTENTION
    screenshot(page, "connect-wrong-key", full_page=False)
    page.reload()  # later visits: the state panel keeps the last check's words
    expect(page.locator("#braze-connection-message")).to_contain_text("Braze said: Invalid API Key (HTTP 401)")


def test_a_hostile_url_is_refused_on_the_connect_screen(logged_in, live_server):
    page = logged_in
    page.goto(f"{live_server.url}/admin/braze_integration/connection/add/")
    page.select_option("#id_instance", "custom")
    page.fill("#id_instance_url", "http://169.254.169.254")
    page.fill("#id_new_api_key", "whatever-key-0000000000")
    page.click("input[name=_save]")

    expect(page.locator(".field-instance_url .errorlist")).to_contain_text("IP addresses are not allowed")
    expect(page.locator("#id_instance_url")).to_be_visible()
    assert page.input_value("#id_new_api_key") == ""
    assert not Connection.objects.exists()

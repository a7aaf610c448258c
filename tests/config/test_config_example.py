"""The hand-written example (fixtures/config-example.json) imported into a fresh database: member
saves reach the sandbox over real HTTP, with no connection made by hand.

The file names a real Braze instance; the sandbox's port is known only when the test runs, so the
test writes the example with the sandbox's URL in ``instance_url`` (everything else as written),
and gives the key through the variable the file names.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from braze_integration.models import Connection, MemberSyncState, SyncStatus
from loyaltysync import services as loyalty_services
from loyaltysync.models import CustomAction, EventSource, Member, Tier
from tests.conftest import SANDBOX_KEY

EXAMPLE = Path(django_settings.BASE_DIR) / "fixtures" / "config-example.json"

pytestmark = pytest.mark.usefixtures("q_sync")


@pytest.fixture
def imported_example(transactional_db, sandbox, sandbox_endpoint, monkeypatch, tmp_path):
    data = json.loads(EXAMPLE.read_text())
    monkeypatch.setenv(data["connection"]["api_key_env"], SANDBOX_KEY)
    data["connection"]["instance_url"] = sandbox.url
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data, indent=2))
    assert not Connection.objects.exists()
    CustomAction.objects.all().delete()  # the suite declares some in every test: the file must declare its own

    call_command("braze_config", "import", str(path), stdout=StringIO(), stderr=StringIO())

    return data


def test_the_example_maps_every_braze_type(transactional_db):
    out = StringIO()
    call_command("braze_fields", "--json", stdout=out)
    types = {row["field"]: row["type"] for row in json.loads(out.getvalue())}

    mapped = json.loads(EXAMPLE.read_text())["field_mappings"]

    assert {types[m["loyalty_field"]] for m in mapped} == {"integer", "float", "string", "boolean", "date", "array",
                                                           "object", "array_of_objects"}


def test_given_the_imported_example_when_a_member_is_saved_then_the_sandbox_holds_every_mapped_attribute(
        imported_example, sandbox):
    silver = Tier.objects.create(name="Silver", points_threshold=0)

    Member.objects.create(
        member_id="m-1", first_name="Ada", birth_date=dt.date(1990, 5, 17), points_spendable=120, tier=silver,
        purchase_total=Decimal("99.90"), email="ada@example.com", country="gb", gender="female",
        consent_email="opted_in", consent_sms="unsubscribed",
        last_purchase={"total": 99.9, "currency": "EUR", "items": [{"product_id": "sku-1", "price": 49.95}]})

    assert sandbox.user("m-1")["attributes"] == {
        "loyalty_points": 120,
        "loyalty_purchase_total": 99.9,
        "loyalty_tier": "Silver",
        "loyalty_opted_in": True,
        "loyalty_birthday": "1990-05-17",
        "loyalty_last_products": ["sku-1"],
        "loyalty_summary": {"tier": "Silver", "points": 120, "pending": 0, "purchases": 0},
        "loyalty_last_items": [{"product_id": "sku-1", "price": 49.95}],
        "email": "ada@example.com",
        "country": "GB",
        "gender": "F",
        "email_subscribe": "opted_in",
        "subscription_groups": {"0e3c4b7a-sms-marketing": "unsubscribed"},
    }
    assert MemberSyncState.objects.get(member__member_id="m-1").status == SyncStatus.SYNCED


def test_given_the_imported_example_when_a_member_reaches_gold_then_its_workflow_sends_the_event(
        imported_example, sandbox):
    silver = Tier.objects.create(name="Silver", points_threshold=0)
    gold = Tier.objects.create(name="Gold", points_threshold=2000)
    member = Member.objects.create(member_id="m-1", first_name="Ada", tier=silver)

    member.tier = gold
    member.save()

    events = sandbox.user("m-1")["events"]
    assert [(event["name"], event["properties"]) for event in events] == [
        ("loyalty_gold_reached", {"previous_tier": "Silver"})]
    assert sandbox.user("m-1")["attributes"]["loyalty_tier"] == "Gold"


def test_given_the_imported_example_when_a_member_visits_a_store_then_the_declared_action_reaches_braze(
        imported_example, sandbox):
    assert list(CustomAction.objects.values_list("name", "description")) == [
        ("store_visit", "A visit to one of the shops (data.store).")]
    Member.objects.create(member_id="m-1", first_name="Ada")

    loyalty_services.event_record(member_id="m-1", action="store_visit", data={"store": "Berlin"},
                                  source=EventSource.API)

    events = sandbox.user("m-1")["events"]
    assert [(event["name"], event["properties"]) for event in events] == [("loyalty_store_visit", {"store": "Berlin"})]

"""`braze_config` and the admin: mappings to Braze's standard attributes checked by their rules, and
subscription-group mappings in the file (``"kind": "subscription_group"``)."""

from __future__ import annotations

import json

import pytest

from braze_integration.models import FieldMapping, RemoteKind
from tests.admin.conftest import connection_form
from tests.config.test_braze_config import export, import_problems, no_key_in_environment, run, write  # noqa: F401

pytestmark = pytest.mark.django_db

CONNECTION = {"instance_url": "https://rest.fra-01.braze.eu", "api_key_env": "BRAZE_API_KEY"}


def test_given_a_standard_attribute_fed_by_the_wrong_field_when_imported_then_the_place_and_the_rule_are_named(
        tmp_path):
    path = write(tmp_path, {"connection": CONNECTION, "workflows": [], "field_mappings": [
        {"loyalty_field": "birth_date", "remote_field": "dob"},
        {"loyalty_field": "points_spendable", "remote_field": "dob_points"},
        {"loyalty_field": "first_name", "remote_field": "email_subscribe"},
        {"loyalty_field": "tier", "remote_field": "grp", "kind": "subscription_group"},
        {"loyalty_field": "consent_sms", "remote_field": "grp-2", "kind": "group"},
    ]})

    problems = import_problems(path)

    assert problems[:2] == [
        'field_mappings[2].remote_field: The mapping first_name → email_subscribe: Braze\'s standard attribute '
        '"email_subscribe" needs a consent field, such as consent_email, and first_name is a string field.',
        "field_mappings[3].remote_field: The mapping tier → subscription group grp: a subscription group needs a "
        "consent field (such as consent_sms), and tier is not one.",
    ]
    assert problems[2].startswith("field_mappings[4].kind: Value 'group' is not a valid choice.")
    assert len(problems) == 3
    assert not FieldMapping.objects.exists()


def test_subscription_group_mappings_round_trip_byte_identical_and_plain_attributes_carry_no_kind(tmp_path):
    path = write(tmp_path, {"connection": CONNECTION, "workflows": [], "field_mappings": [
        {"loyalty_field": "consent_email", "remote_field": "email_subscribe"},
        {"loyalty_field": "consent_sms", "remote_field": "6f0f5c43-sms", "kind": "subscription_group"},
    ]})
    out, _ = run("import", path)
    first = export()
    (tmp_path / "again.json").write_text(first)

    again, _ = run("import", str(tmp_path / "again.json"), "--dry-run")

    assert "field_mappings: added consent_sms -> subscription group 6f0f5c43-sms" in out
    assert json.loads(first)["field_mappings"] == [
        {"loyalty_field": "consent_email", "remote_field": "email_subscribe"},
        {"kind": "subscription_group", "loyalty_field": "consent_sms", "remote_field": "6f0f5c43-sms"},
    ]
    assert again.strip() == "No changes: the configuration is already the file's."
    assert FieldMapping.objects.get(remote_field="6f0f5c43-sms").remote_kind == RemoteKind.SUBSCRIPTION_GROUP
    assert export() == first


def test_the_admin_refuses_a_standard_attribute_fed_by_the_wrong_field_on_its_row(admin_client, braze_connection):
    data = connection_form(braze_connection, mappings=[("points_spendable", "dob")])

    response = admin_client.post(f"/admin/braze_integration/connection/{braze_connection.pk}/change/", data)

    assert response.status_code == 200
    assert ("The mapping points_spendable → dob: Braze&#x27;s standard attribute &quot;dob&quot; needs a date field "
            "(sent as YYYY-MM-DD), such as birth_date, and points_spendable is an integer field.") in \
        response.content.decode()
    assert not FieldMapping.objects.filter(remote_field="dob").exists()


def test_the_admin_saves_a_subscription_group_row(admin_client, braze_connection):
    data = connection_form(braze_connection, mappings=[("consent_sms", "6f0f5c43-sms")])
    index = braze_connection.mappings.count()
    data[f"mappings-{index}-remote_kind"] = "subscription_group"

    response = admin_client.post(f"/admin/braze_integration/connection/{braze_connection.pk}/change/", data)

    assert response.status_code == 302
    mapping = FieldMapping.objects.get(remote_field="6f0f5c43-sms")
    assert (mapping.loyalty_field, mapping.remote_kind) == ("consent_sms", RemoteKind.SUBSCRIPTION_GROUP)

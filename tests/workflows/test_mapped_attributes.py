"""One writer per Braze attribute: a workflow's "sync data" value never takes a mapped attribute's name
(in the admin, whichever is saved second, and in ``braze_config import``), and standard profile fields
are sent only with the type Braze takes."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.urls import reverse

from braze_integration.config import ConfigInvalid
from braze_integration.models import FieldMapping
from tests.admin.conftest import connection_form
from tests.workflows.factories import make_workflow
from workflows import config
from workflows.models import Action, ActionValue, TriggerKind, Workflow

from .test_models import _formset

COLLISION = ('The Braze attribute "loyalty_points" is both the field mapping of the loyalty field points_spendable '
             'and sent by workflow "Bonus", action 1 (sync data). Braze would keep whichever came last while the '
             "sync records the mapped value as sent, and a resync would not repair it: give one of them another "
             "name.")


def sync_data_action(kind: str = "sync_data") -> Action:
    workflow = make_workflow(name="Bonus", trigger_kind=TriggerKind.EVENT, trigger_action="checkout")
    return Action.objects.create(workflow=workflow, kind=kind, event_name="bonus" if kind == "send_event" else "")


def value_row(name: str, **fields) -> dict[str, str]:
    return {"position": "0", "name": name, "braze_type": "integer", "source": "constant", "constant": "5",
            "path": "", "template": "", **fields}


def action_form(action: Action, values: list[dict], kind: str | None = None) -> dict:
    return {"position": str(action.position), "kind": kind or action.kind, "event_name": action.event_name,
            "items_path": "items", "currency_path": "currency", **_formset("values", values)}


def test_the_admin_refuses_a_workflow_attribute_named_like_a_mapped_one(admin_client, braze_connection):
    action = sync_data_action()

    response = admin_client.post(reverse("admin:workflows_action_change", args=[action.pk]),
                                 action_form(action, [value_row("loyalty_points")]))

    assert response.status_code == 200
    assert response.context["inline_admin_formsets"][0].formset.errors == [{"name": [COLLISION]}]
    assert not ActionValue.objects.exists()


def test_the_admin_refuses_a_mapping_to_an_attribute_a_workflow_sends(admin_client, braze_connection):
    FieldMapping.objects.filter(remote_field="loyalty_points").delete()
    ActionValue.objects.create(action=sync_data_action(), name="loyalty_points", braze_type="integer",
                               source="constant", constant="5")

    response = admin_client.post(reverse("admin:braze_integration_connection_change", args=[braze_connection.pk]),
                                 connection_form(braze_connection, mappings=[("points_spendable", "loyalty_points")]))

    assert response.status_code == 200
    mapping_errors = [errors for errors in response.context["inline_admin_formsets"][0].formset.errors if errors]
    assert mapping_errors == [{"remote_field": [COLLISION]}]
    assert not FieldMapping.objects.filter(remote_field="loyalty_points").exists()


def test_an_action_turned_into_sync_data_is_refused_when_its_values_collide(braze_connection):
    action = sync_data_action(kind="send_event")
    ActionValue.objects.create(action=action, name="loyalty_points", braze_type="integer", source="constant",
                               constant="5")
    action.kind = "sync_data"

    with pytest.raises(ValidationError) as caught:
        action.full_clean()

    assert caught.value.message_dict == {"kind": [COLLISION]}


def test_event_properties_may_share_a_mapped_attribute_name(braze_connection):
    value = ActionValue(action=sync_data_action(kind="send_event"), name="loyalty_points", braze_type="integer",
                        source="constant", constant="5")

    value.full_clean()  # a property of a custom event is not a profile attribute


def _file_with_a_colliding_workflow() -> str:
    data = json.loads(config.config_export())
    data["workflows"] = [{"name": "Bonus", "trigger": {"kind": "event", "action": "checkout"}, "actions": [
        {"kind": "send_event", "event_name": "bonus", "values": []},
        {"kind": "sync_data", "values": [
            {"name": "bonus_note", "type": "string", "source": "constant", "constant": "x"},
            {"name": "loyalty_points", "type": "integer", "source": "constant", "constant": "5"}]}]}]
    return json.dumps(data)


def test_the_import_refuses_a_workflow_attribute_that_a_mapping_of_the_file_sends(braze_connection, tmp_path):
    text = _file_with_a_colliding_workflow()
    expected = ('workflows[0].actions[1].values[1].name: The Braze attribute "loyalty_points" is both the field '
                'mapping of the loyalty field points_spendable and sent by workflow "Bonus", action 2 (sync data).')
    path = tmp_path / "config.json"
    path.write_text(text)

    for dry_run in (True, False):
        with pytest.raises(ConfigInvalid) as caught:
            config.config_import(text=text, dry_run=dry_run)
        assert len(caught.value.problems) == 1
        assert caught.value.problems[0].startswith(expected)
        assert caught.value.problems[0].endswith("(the mapping is field_mappings[0])")
    with pytest.raises(CommandError) as failed:
        call_command("braze_config", "import", str(path), "--dry-run")
    assert expected in str(failed.value) and "nothing was changed" in str(failed.value)
    assert not Workflow.objects.exists()


def test_the_import_checks_the_files_mappings_not_the_ones_it_replaces(braze_connection):
    data = json.loads(_file_with_a_colliding_workflow())
    data["field_mappings"] = [m for m in data["field_mappings"] if m["remote_field"] != "loyalty_points"]

    config.config_import(text=json.dumps(data))

    assert ActionValue.objects.filter(name="loyalty_points").exists()
    assert not FieldMapping.objects.filter(remote_field="loyalty_points").exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "braze_type", "words"), [
    ("external_id", "string", "'external_id' is reserved by Braze"),
    ("_merge_objects", "boolean", "'_merge_objects' is reserved by Braze"),
    ("dob", "integer", '"dob" is a Braze standard profile field that takes date values, not integer'),
    ("email", "array", '"email" is a Braze standard profile field that takes string values, not array'),
])
def test_reserved_names_and_standard_fields_of_the_wrong_type_are_refused(name, braze_type, words):
    constant = {"integer": "5", "array": '["a"]', "boolean": "true"}.get(braze_type, "x")
    value = ActionValue(action=sync_data_action(), name=name, braze_type=braze_type, source="constant",
                        constant=constant)

    with pytest.raises(ValidationError) as caught:
        value.full_clean()

    assert words in caught.value.message_dict["name"][0]


@pytest.mark.django_db
def test_a_standard_profile_field_of_its_own_type_may_be_sent():
    ActionValue(action=sync_data_action(), name="email", braze_type="string", source="constant",
                constant="ada@example.com").full_clean()


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "constant", "words"), [
    ("country", "XX", "Braze would refuse it as country: 'XX' is not an ISO 3166-1 alpha-2 country code"),
    ("gender", "X", "Braze would refuse it as gender: 'X' is not a gender"),
    ("email_subscribe", "yes", "Braze would refuse it as email_subscribe: 'yes' is not a consent"),
    ("phone", "call me", "Braze would refuse it as phone: 'call me' is not a phone number"),
    ("time_zone", "Mars/Base", "Braze would refuse it as time_zone: 'Mars/Base' is not an IANA time zone name"),
])
def test_a_constant_braze_would_refuse_for_a_standard_field_is_refused_when_saved(name, constant, words):
    """It would fail every run; an import accepted these."""
    action = sync_data_action()
    value = ActionValue(action=action, name=name, braze_type="string", source="constant", constant=constant)

    with pytest.raises(ValidationError) as caught:
        value.full_clean()

    assert words in caught.value.message_dict["constant"][0]
    ActionValue(action=action, name="country", braze_type="string", source="constant", constant="de").full_clean()

"""`braze_config export|import`: the connection, mappings and workflows as one JSON file, and back."""

from __future__ import annotations

import datetime as dt
import json
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from braze_integration.models import Connection, FieldMapping, SendMode
from loyaltysync.models import CustomAction, CustomField, FieldType
from tests.conftest import EVERY_TYPE_MAPPINGS
from tests.workflows.factories import TRIGGER_FIELDS, trigger_of
from workflows import services as workflow_services
from workflows.models import Action, ActionValue, Condition, TriggerKind, Workflow

pytestmark = pytest.mark.django_db

KNOWN_KEY = "braze-rest-key-5f3c9e1a7b2d4c6e"
SHIPPED_WORKFLOWS = Path(django_settings.BASE_DIR) / "workflows" / "fixtures" / "workflows.json"


@pytest.fixture(autouse=True)
def no_key_in_environment(monkeypatch):
    monkeypatch.delenv("BRAZE_API_KEY", raising=False)


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("braze_config", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def export() -> str:
    return run("export")[0]


def write(tmp_path: Path, data: dict, name: str = "config.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data, indent=2))
    return str(path)


def import_problems(path: str) -> list[str]:
    with pytest.raises(CommandError) as caught:
        run("import", path)
    return [line.strip() for line in str(caught.value).splitlines()[1:]]


def add_workflow(name: str, kind: str, *, conditions=(), actions=(), **fields) -> Workflow:
    """A workflow with its rows, each validated as the admin would before it is saved."""
    trigger_fields = {name: fields.pop(name) for name in list(fields) if name in TRIGGER_FIELDS}
    workflow = Workflow(name=name, **fields)
    workflow.full_clean()
    workflow.save()
    trigger = trigger_of(trigger_kind=kind, **trigger_fields)
    trigger.workflow = workflow
    trigger.full_clean()
    trigger.save()
    for position, (attribute, operator, value) in enumerate(conditions):
        condition = Condition(workflow=workflow, position=position, attribute=attribute, operator=operator,
                              value=value)
        condition.full_clean()
        condition.save()
    for position, (action_fields, values) in enumerate(actions):
        action = Action(workflow=workflow, position=position, **action_fields)
        action.full_clean()
        action.save()
        for value_position, value_fields in enumerate(values):
            value = ActionValue(action=action, position=value_position, **value_fields)
            value.full_clean()
            value.save()
    return workflow


@pytest.fixture
def configuration(transactional_db):
    """A connection with mappings of every Braze type (custom fields too) and workflows of every trigger kind."""
    CustomField.objects.create(key="shoe_size", label="Shoe size", type=FieldType.INTEGER)
    CustomField.objects.create(key="member_since", label="Member since", type=FieldType.DATE)
    CustomField.objects.create(key="preferences", label="Preferences", type=FieldType.OBJECT)
    connection = Connection(name="Braze EU", instance_url="https://rest.fra-01.braze.eu", app_id="app-123",
                            send_mode=SendMode.CHANGED_FIELDS, batch_size=50, per_array_limit=True,
                            rate_limit_requests=1000, rate_limit_seconds=2, max_attempts=5)
    connection.set_api_key(KNOWN_KEY)
    connection.full_clean()
    connection.save()
    mappings = EVERY_TYPE_MAPPINGS + [("custom.shoe_size", "shoe_size"), ("custom.preferences", "preferences")]
    for position, (loyalty_field, remote_field) in enumerate(mappings):
        FieldMapping.objects.create(connection=connection, loyalty_field=loyalty_field, remote_field=remote_field,
                                    position=position)
    call_command("loaddata", str(SHIPPED_WORKFLOWS), verbosity=0)  # six event workflows
    member_value = {"braze_type": "integer", "source": "member", "path": "points_spendable"}
    add_workflow("Gold reached", TriggerKind.FIELD_CHANGE, trigger_field="tier", trigger_to="Gold", priority=5,
                 conditions=[("previous.tier", "in", "Bronze, Silver"), ("member.status", "equals", "active")],
                 actions=[({"kind": "send_event", "event_name": "loyalty_gold"}, [{"name": "points", **member_value}]),
                          ({"kind": "sync_data", "merge_objects": True},
                           [{"name": "loyalty_gold_since", "braze_type": "date", "source": "template",
                             "template": "{{ time }}"}])],
                 logic="or", description="Tier up to Gold.")
    add_workflow("Big spender", TriggerKind.FIELD_CHANGE, trigger_field="custom_fields.shoe_size",
                 trigger_from="40", active=False,
                 conditions=[("member.custom_fields.shoe_size", "gte", "44")],
                 actions=[({"kind": "sync_data"}, [{"name": "loyalty_big_feet", "braze_type": "boolean",
                                                    "source": "constant", "constant": "true", "required": True}])])
    add_workflow("Weekly digest", TriggerKind.DATE, schedule_frequency="weekly", schedule_weekday=4,
                 schedule_time=dt.time(7, 30), conditions=[("member.points_spendable", "gt", "100")],
                 actions=[({"kind": "send_event", "event_name": "loyalty_weekly"}, [{"name": "points", **member_value}])])
    add_workflow("New year", TriggerKind.DATE, schedule_frequency="yearly", schedule_day=1, schedule_month=1,
                 schedule_time=dt.time(0, 5, 30),
                 actions=[({"kind": "send_event", "event_name": "loyalty_new_year"},
                           [{"name": "tier", "braze_type": "string", "source": "member", "path": "tier"}])])
    add_workflow("Birthday", TriggerKind.ANNIVERSARY, trigger_field="birth_date",
                 conditions=[("trigger.years", "gte", "18")],
                 actions=[({"kind": "send_event", "event_name": "loyalty_birthday"},
                           [{"name": "age", "braze_type": "integer", "source": "template",
                             "template": "{{ trigger.years }}"}])])
    add_workflow("Membership anniversary", TriggerKind.ANNIVERSARY, trigger_field="custom_fields.member_since",
                 schedule_time=dt.time(10, 0),
                 actions=[({"kind": "send_event", "event_name": "loyalty_anniversary"},
                           [{"name": "years", "braze_type": "integer", "source": "template",
                             "template": "{{ trigger.years }}"}])])
    add_workflow("Purchases", TriggerKind.EVENT, trigger_action="checkout",
                 conditions=[("event.total", "gt", "0"), ("event.currency", "in", '["EUR", "USD"]')],
                 actions=[({"kind": "send_purchase", "items_path": "data.items", "currency_path": "data.currency"},
                           [{"name": "product_name", "braze_type": "string", "source": "item",
                             "path": "product_name"}])])
    workflow_services.workflow_config_changed()
    return connection


def configuration_delete() -> None:
    """What a fresh database holds of the configuration: nothing (the program's custom fields stay)."""
    Connection.objects.all().delete()
    Workflow.objects.all().delete()


def keys_in(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {key for item in value.values() for key in keys_in(item)}
    if isinstance(value, list):
        return {key for item in value for key in keys_in(item)}
    return set()


# --- export, then import into an empty database -----------------------------------------------------

def test_given_a_full_configuration_when_exported_imported_into_an_empty_database_and_exported_then_the_bytes_match(
        configuration, tmp_path):
    first = export()
    (tmp_path / "config.json").write_text(first)
    configuration_delete()

    out, _ = run("import", str(tmp_path / "config.json"))

    assert export() == first
    assert "Changed:" in out
    data = json.loads(first)
    assert {w["triggers"][0]["kind"] for w in data["workflows"]} == set(TriggerKind.values)
    assert all(sum(w["triggers"][0]["kind"] == kind for w in data["workflows"]) >= 2 for kind in TriggerKind.values)
    assert {m["loyalty_field"] for m in data["field_mappings"]} >= {"custom.shoe_size", "loyalty_summary"}
    assert len(data["field_mappings"]) == 11 and len(data["workflows"]) == 13
    assert Condition.objects.count() == 10 and ActionValue.objects.count() == 28


def test_the_export_is_sorted_has_no_database_ids_and_ends_with_a_newline(configuration):
    text = export()

    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True) + "\n"
    assert [w["name"] for w in data["workflows"]] == sorted(w["name"] for w in data["workflows"])
    assert not keys_in(data) & {"id", "pk", "workflow_id", "action_id", "connection_id", "position", "version"}
    assert data["connection"] == {
        "name": "Braze EU", "instance_url": "https://rest.fra-01.braze.eu", "app_id": "app-123", "active": True,
        "send_mode": "changed_fields", "batch_size": 50, "per_array_limit": True, "rate_limit_requests": 1000,
        "rate_limit_seconds": 2, "max_attempts": 5, "api_key_env": "BRAZE_API_KEY"}
    [digest] = [w for w in data["workflows"] if w["name"] == "Weekly digest"]
    assert digest["triggers"] == [{"kind": "date", "frequency": "weekly", "time": "07:30", "weekday": "friday",
                                   "day": None, "month": None}]


def test_given_the_same_configuration_when_imported_again_then_nothing_changes_not_even_versions(
        configuration, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(export())
    versions = dict(Workflow.objects.values_list("name", "version"))

    out, _ = run("import", str(path))

    assert out.startswith("No changes")
    assert dict(Workflow.objects.values_list("name", "version")) == versions
    assert export() == path.read_text()


def test_an_empty_configuration_exports_as_null_and_imports_into_an_empty_database(transactional_db, tmp_path):
    CustomAction.objects.all().delete()  # the suite declares some in every test
    text = export()
    (tmp_path / "empty.json").write_text(text)

    run("import", str(tmp_path / "empty.json"))

    assert json.loads(text) == {"connection": None, "field_mappings": [], "custom_actions": [], "workflows": []}
    assert export() == text


# --- the API key ---------------------------------------------------------------------------------

def test_the_api_key_never_appears_in_an_export(configuration, tmp_path):
    stored = Connection.objects.get()
    assert stored.api_key == KNOWN_KEY

    call_command("braze_config", "export", str(tmp_path / "config.json"), stderr=StringIO())

    for text in (export(), (tmp_path / "config.json").read_text()):
        assert KNOWN_KEY not in text
        assert KNOWN_KEY[-4:] not in text  # not even the hint the admin shows


def test_given_the_named_variable_when_imported_then_the_key_comes_from_it(configuration, tmp_path, monkeypatch):
    data = json.loads(export())
    data["connection"]["api_key_env"] = "STAGING_BRAZE_KEY"
    monkeypatch.setenv("STAGING_BRAZE_KEY", "  a-new-rest-key-0123456789  ")

    out, _ = run("import", write(tmp_path, data))

    assert Connection.objects.get().api_key == "a-new-rest-key-0123456789"
    assert "connection.api_key: replaced from the environment" in out
    assert "a-new-rest-key" not in out


def test_given_a_variable_holding_no_key_when_imported_then_nothing_changes_and_the_error_names_it(
        configuration, tmp_path, monkeypatch):
    """The admin's rule for the key holds for the file's variable too."""
    data = json.loads(export())
    data["connection"]["api_key_env"] = "STAGING_BRAZE_KEY"
    monkeypatch.setenv("STAGING_BRAZE_KEY", "first-half-of-a-key second-half")

    with pytest.raises(CommandError) as failure:
        run("import", write(tmp_path, data))

    assert ("connection.api_key_env: the REST API key in STAGING_BRAZE_KEY holds a space, a line break or a "
            "character outside printable ASCII" in str(failure.value))
    assert "first-half" not in str(failure.value)
    assert Connection.objects.get().api_key == KNOWN_KEY


def test_given_no_variable_when_imported_then_the_stored_key_is_kept(configuration, tmp_path):
    data = json.loads(export())
    data["connection"]["batch_size"] = 20

    run("import", write(tmp_path, data))

    connection = Connection.objects.get()
    assert connection.api_key == KNOWN_KEY
    assert connection.batch_size == 20


def test_given_no_variable_and_no_connection_when_imported_then_one_is_created_without_a_key_and_a_warning_says_so(
        transactional_db, tmp_path):
    data = {"connection": {"instance_url": "https://rest.fra-01.braze.eu", "api_key_env": "BRAZE_API_KEY"},
            "field_mappings": [{"loyalty_field": "points_spendable", "remote_field": "loyalty_points"}],
            "workflows": []}

    _, err = run("import", write(tmp_path, data))

    connection = Connection.objects.get()
    assert connection.api_key == "" and connection.active
    assert "set BRAZE_API_KEY and import again, or enter the key in the admin" in err


# --- errors ------------------------------------------------------------------------------------

def test_given_a_file_with_many_errors_when_imported_then_nothing_changes_and_each_error_names_its_place(
        configuration, tmp_path):
    before = export()
    data = json.loads(before)
    data["connection"]["batch_size"] = 500
    data["connection"]["sendmode"] = "changed_fields"
    data["field_mappings"][3]["loyalty_field"] = "pointz"
    data["field_mappings"][4]["remote_field"] = data["field_mappings"][0]["remote_field"]
    data["field_mappings"].append({"loyalty_field": "tier"})
    data["workflows"][0]["triggers"][0]["kind"] = "sometimes"
    data["workflows"][1]["conditions"] = [{"attribute": "member.tier", "operator": "gt", "value": "Gold"}]
    data["workflows"][2]["steps"][0]["values"][0]["type"] = "decimal"
    data["workflows"][3]["name"] = data["workflows"][4]["name"]
    data["workflows"][5]["priority"] = "high"
    weekly = [w["name"] for w in data["workflows"]].index("Weekly digest")
    data["workflows"][weekly]["triggers"][0]["weekday"] = "funday"
    data["workflows"].append({"name": "New", "trigger": {"kind": "event", "action": "checkout"}, "colour": "red"})
    data["extra"] = True

    problems = import_problems(write(tmp_path, data))

    assert export() == before
    places = [problem.split(": ", 1)[0] for problem in problems]
    assert places == [
        "extra",
        "connection.sendmode",
        "connection.batch_size",
        "field_mappings[3].loyalty_field",
        "field_mappings[4].remote_field",
        "field_mappings[11].remote_field",
        "workflows[0].triggers[0].kind",
        "workflows[1].conditions[0].operator",
        "workflows[2].steps[0].values[0].type",  # twice, as in the admin: the field's choices
        "workflows[2].steps[0].values[0].type",  # and the value spec each say so
        "workflows[4].name",
        "workflows[5].priority",
        f"workflows[{weekly}].triggers[0].weekday",
        "workflows[13].colour",
    ]
    assert 'field_mappings[3].loyalty_field: Unknown loyalty field "pointz".' in problems
    assert 'connection.sendmode: unknown key (did you mean "send_mode"?)' in problems
    assert "field_mappings[11].remote_field: required" in problems
    assert "workflows[5].priority: expected an integer, not a string" in problems


def test_the_command_fails_and_lists_the_problems(configuration, tmp_path):
    path = write(tmp_path, {"connection": None, "field_mappings": [], "workflows": []})

    with pytest.raises(CommandError, match=r"1 problem; nothing was changed.\n  connection: the file has no connection"):
        run("import", path)

    assert Connection.objects.get().active


def test_bad_json_is_reported_with_its_line_and_column(transactional_db, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "connection": null,\n  "workflows": [}\n')

    problems = import_problems(str(path))

    assert problems == ["line 3, column 17: Expecting value (not valid JSON)"]


@pytest.mark.parametrize(("url", "words"), [
    ("https://evil.example.com", "is not a Braze host"),
    ("http://169.254.169.254", "IP addresses are not allowed"),
    ("https://rest.fra-01.braze.eu@evil.example.com", "must not contain a user name"),
    ("http://127.0.0.1:9400", "allowed only when BRAZE_LOCAL_ENDPOINTS lists them"),
])
def test_a_hostile_instance_url_is_refused_as_in_the_admin(transactional_db, tmp_path, settings, url, words):
    settings.BRAZE_LOCAL_ENDPOINTS = []
    data = {"connection": {"instance_url": url}, "field_mappings": [], "workflows": []}

    [problem] = import_problems(write(tmp_path, data))

    assert problem.startswith("connection.instance_url: ")
    assert words in problem
    assert not Connection.objects.exists()


def test_workflows_are_identified_by_name_so_a_name_used_twice_is_an_error(transactional_db, tmp_path):
    workflow = {"name": "Welcome", "trigger": {"kind": "event", "action": "opt_in"}}
    data = {"connection": None, "field_mappings": [], "workflows": [workflow, dict(workflow)]}

    problems = import_problems(write(tmp_path, data))

    assert problems == ['workflows[1].name: "Welcome" is used twice (also workflows[0]): '
                        "workflows are identified by their names"]
    assert not Workflow.objects.exists()


# --- dry run -----------------------------------------------------------------------------------

def test_given_a_changed_file_when_imported_with_dry_run_then_it_prints_the_differences_and_changes_nothing(
        configuration, tmp_path):
    before = export()
    data = json.loads(before)
    data["connection"]["batch_size"] = 25
    data["connection"]["send_mode"] = "all_mapped_fields"
    removed = data["field_mappings"].pop(0)
    data["field_mappings"][0]["loyalty_field"] = "purchase_count"
    data["field_mappings"].append({"loyalty_field": "email", "remote_field": "loyalty_email"})
    data["workflows"] = [w for w in data["workflows"] if w["name"] != "Birthday"]
    [gold] = [w for w in data["workflows"] if w["name"] == "Gold reached"]
    gold["priority"] = 6
    gold["triggers"][0]["to"] = "Platinum"
    gold["conditions"].pop()
    data["workflows"].append({"name": "Refunds", "trigger": {"kind": "event", "action": "refund"}})

    out, _ = run("import", write(tmp_path, data), "--dry-run")

    assert export() == before
    assert out.splitlines() == [
        "Would change (dry run, nothing was changed):",
        "  connection.send_mode: \"changed_fields\" -> \"all_mapped_fields\"",
        "  connection.batch_size: 50 -> 25",
        "  field_mappings: changed loyalty_purchase_total: purchase_total -> purchase_count",
        "  field_mappings: added email -> loyalty_email",
        f"  field_mappings: removed {removed['loyalty_field']} -> {removed['remote_field']}",
        '  workflows: changed "Gold reached" (priority 5 -> 6, triggers[0].to "Gold" -> "Platinum", conditions)',
        '  workflows: added "Refunds"',
        '  workflows: removed "Birthday"',
    ]


def test_after_the_dry_run_the_import_applies_exactly_the_file(configuration, tmp_path):
    data = json.loads(export())
    data["workflows"] = [w for w in data["workflows"] if w["triggers"][0]["kind"] != "date"]
    path = write(tmp_path, data)
    run("import", path, "--dry-run")

    run("import", path)

    assert json.loads(export()) == data
    assert not Workflow.objects.filter(triggers__kind=TriggerKind.DATE).exists()

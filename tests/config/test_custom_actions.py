"""`braze_config`: the declared custom actions (``"custom_actions"``) exported and imported, and workflows
triggered by an action nobody declared refused with their place in the file."""

from __future__ import annotations

import json

import pytest

from loyaltysync.models import CustomAction
from tests.config.test_braze_config import export, import_problems, no_key_in_environment, run, write  # noqa: F401
from workflows.models import Workflow

pytestmark = pytest.mark.django_db

CONNECTION = {"instance_url": "https://rest.fra-01.braze.eu", "api_key_env": "BRAZE_API_KEY"}


def event_workflow(name: str, action: str) -> dict:
    return {"name": name, "trigger": {"kind": "event", "action": action},
            "actions": [{"kind": "send_event", "event_name": f"loyalty_{action}"}]}


def a_file(custom_actions: list[dict] | None, workflows: list[dict] = ()) -> dict:
    data = {"connection": CONNECTION, "field_mappings": [], "workflows": list(workflows)}
    if custom_actions is not None:
        data["custom_actions"] = custom_actions
    return data


@pytest.fixture(autouse=True)
def only_the_files_actions():
    CustomAction.objects.all().delete()  # the suite declares some in every test


def test_custom_actions_round_trip_byte_identical(tmp_path):
    run("import", write(tmp_path, a_file(
        [{"name": "store_visit", "description": "A visit to a shop."}, {"name": "app_review"}],
        [event_workflow("Visits", "store_visit")])))
    first = export()
    CustomAction.objects.all().delete()
    Workflow.objects.all().delete()
    (tmp_path / "export.json").write_text(first)

    run("import", str(tmp_path / "export.json"))

    assert json.loads(first)["custom_actions"] == [{"description": "", "name": "app_review"},
                                                   {"description": "A visit to a shop.", "name": "store_visit"}]
    assert export() == first


def test_dry_run_shows_the_custom_action_changes_and_changes_nothing(tmp_path):
    CustomAction.objects.create(name="store_visit", description="A visit.")
    CustomAction.objects.create(name="app_review")
    run("import", write(tmp_path, a_file(None)))  # the connection; without the key the actions stay
    assert CustomAction.objects.count() == 2

    out, _ = run("import", write(tmp_path, a_file(
        [{"name": "store_visit", "description": "A visit to one of the shops."}, {"name": "newsletter_read"}])),
        "--dry-run")

    assert out.splitlines() == [
        "Would change (dry run, nothing was changed):",
        '  custom_actions: added "newsletter_read"',
        '  custom_actions: changed "store_visit" (description)',
        '  custom_actions: removed "app_review"',
    ]
    assert sorted(CustomAction.objects.values_list("name", "description")) == [
        ("app_review", ""), ("store_visit", "A visit.")]

    run("import", write(tmp_path, a_file(
        [{"name": "store_visit", "description": "A visit to one of the shops."}, {"name": "newsletter_read"}])))

    assert sorted(CustomAction.objects.values_list("name", "description")) == [
        ("newsletter_read", ""), ("store_visit", "A visit to one of the shops.")]


def test_a_workflow_naming_an_undeclared_action_is_refused_with_its_place_and_nothing_changes(tmp_path):
    CustomAction.objects.create(name="store_visit")
    path = write(tmp_path, a_file(
        [{"name": "app_review"}],
        [event_workflow("Checkouts", "checkout"), event_workflow("Tiers", "tier_reached"),
         event_workflow("Reviews", "app_review"), event_workflow("Visits", "store_visit"),
         event_workflow("Typo", "chekout")]))

    problems = import_problems(path)

    assert problems == [
        'workflows[3].trigger.action: "store_visit" is not a built-in action, an engine event or a declared custom '
        "action: declare it in custom_actions.",
        'workflows[4].trigger.action: "chekout" is not a built-in action, an engine event or a declared custom '
        'action: declare it in custom_actions. Did you mean "checkout"?',
    ]
    assert list(CustomAction.objects.values_list("name", flat=True)) == ["store_visit"]
    assert not Workflow.objects.exists()


def test_without_the_key_workflows_are_checked_against_the_declared_actions(tmp_path):
    CustomAction.objects.create(name="store_visit")

    run("import", write(tmp_path, a_file(None, [event_workflow("Visits", "store_visit")])))
    problems = import_problems(write(tmp_path, a_file(None, [event_workflow("Reviews", "app_review")])))

    assert Workflow.objects.filter(name="Visits").exists()
    assert problems[0].startswith('workflows[0].trigger.action: "app_review" is not a built-in action')


def test_bad_custom_actions_are_refused_naming_each_place(tmp_path):
    problems = import_problems(write(tmp_path, a_file(
        [{"name": "Store Visit"}, {"name": "visit", "descripton": "x"}, {"name": "visit"}, "visit"])))

    assert problems == [
        "custom_actions[0].name: Use 1-64 lower-case letters, digits and underscores, starting with a letter.",
        'custom_actions[1].descripton: unknown key (did you mean "description"?)',
        'custom_actions[2].name: "visit" is declared twice (also custom_actions[1])',
        "custom_actions[3]: expected an object, not a string",
    ]
    assert not CustomAction.objects.exists()

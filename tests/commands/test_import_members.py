"""`import_members`: bulk create/update through the services; bad rows reported, good rows kept, then synced."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from braze_integration.models import MemberSyncState
from loyaltysync.models import CustomField, Member


def run(path) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_members", str(path), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def custom_fields(db):
    CustomField.objects.create(key="shoe_size", label="Shoe size", type="integer")
    CustomField.objects.create(key="interests", label="Interests", type="array")


def test_csv_rows_create_and_update_members_and_bad_rows_are_reported_with_their_line(tmp_path, custom_fields):
    Member.objects.create(member_id="m-2", first_name="Old")
    path = tmp_path / "members.csv"
    path.write_text(
        "member_id,first_name,email,birth_date,custom.shoe_size,custom.interests\n"
        'm-1,Ada,ada@example.com,1990-05-17,42,"[""yoga""]"\n'
        "m-2,Grace,,,,\n"
        "m-3,Bad,not-an-email,,,\n"
        "m-4,Shoe,,,forty-two,\n"
        ",NoId,,,,\n"
        "m-5,Linus,,1969-12-28,,\n")

    out, err = run(path)

    assert "2 created, 1 updated, 0 unchanged, 3 rejected" in out
    assert Member.objects.get(member_id="m-1").custom_fields == {"shoe_size": 42, "interests": ["yoga"]}
    assert Member.objects.get(member_id="m-2").first_name == "Grace"
    assert f"{path}:4: email" in err
    assert f"{path}:5: custom_fields.shoe_size" in err
    assert f"{path}:6: member_id" in err
    assert not Member.objects.filter(member_id__in=["m-3", "m-4"]).exists()


def test_json_lines_with_broken_lines_keep_the_good_ones(tmp_path, custom_fields):
    path = tmp_path / "members.jsonl"
    path.write_text("\n".join([
        json.dumps({"member_id": "j-1", "first_name": "Ada", "custom_fields": {"shoe_size": 38}}),
        "{not json",
        json.dumps(["not", "an", "object"]),
        json.dumps({"member_id": "j-2", "points_spendable": 1000}),  # computed: refused
        json.dumps({"member_id": "j-3", "custom.shoe_size": 40}),
    ]) + "\n")

    out, err = run(path)

    assert "2 created, 0 updated, 0 unchanged, 3 rejected" in out
    assert f"{path}:2: is not valid JSON" in err
    assert f"{path}:3: must be a JSON object" in err
    assert f"{path}:4: points_spendable" in err
    assert Member.objects.get(member_id="j-3").custom_fields == {"shoe_size": 40}


@pytest.mark.usefixtures("q_sync")
def test_imported_members_are_synced_like_any_change(tmp_path, braze_connection, sandbox):
    path = tmp_path / "members.csv"
    path.write_text("member_id,first_name\ni-1,Ada\ni-2,Grace\n")

    run(path)

    assert sandbox.user("i-1")["attributes"]["loyalty_first_name"] == "Ada"
    assert sandbox.user("i-2")["attributes"]["loyalty_first_name"] == "Grace"
    assert MemberSyncState.objects.filter(status="synced").count() == 2

"""`import_members`: bulk create/update through the services; bad rows reported, good rows kept, then synced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from braze_integration.models import MemberSyncState
from loyaltysync.models import CustomField, Member
from tests.delivery.conftest import database_url


def run(path, *, rejects: bool = True) -> tuple[str, str]:
    """Runs the command; with ``rejects`` it must fail (a rejected row makes it exit non-zero), and its
    message, which says the good rows were kept, is returned as part of the output."""
    out, err = StringIO(), StringIO()
    if not rejects:
        call_command("import_members", str(path), stdout=out, stderr=err)
        return out.getvalue(), err.getvalue()
    with pytest.raises(CommandError) as failure:
        call_command("import_members", str(path), stdout=out, stderr=err)
    assert "good row(s) were kept" in str(failure.value)
    return out.getvalue() + str(failure.value), err.getvalue()


@pytest.fixture
def custom_fields(db):
    CustomField.objects.create(key="shoe_size", label="Shoe size", type="integer")
    CustomField.objects.create(key="interests", label="Interests", type="array")


def test_a_quote_left_open_in_a_csv_rejects_the_lines_it_joined_and_names_them(tmp_path, db):
    """Read as CSV, the open quote of line 2 takes lines 2-4 into one row: Ann's name holding two lines
    of other rows, and Carl's e-mail. That row is refused as a whole, naming the lines."""
    path = tmp_path / "members.csv"
    path.write_text("member_id,first_name,email\n"
                    'q-1,"Ann,ann@example.com\n'
                    "q-2,Bob,bob@example.com\n"
                    'q-3,Carl",carl@example.com\n'
                    "q-4,Dan,dan@example.com\n")

    out, err = run(path)

    assert "1 created, 0 updated, 0 unchanged, 1 rejected" in out
    assert f"{path}:2: has a quoted first_name cell that runs on to line 4" in err
    assert "Lines 2-4 were not imported" in err
    assert list(Member.objects.values_list("member_id", "email")) == [("q-4", "dan@example.com")]


@pytest.mark.parametrize("text, rejected, kept", [
    # never closed: read on to the end of the file
    ('member_id,first_name,custom.note\nc-1,Ann,"hello\nc-2,Bob,world\nc-3,Carl,x\n',
     ":2: is not valid CSV up to line 4 (unexpected end of data; is a quote left open?). Lines 2-4 were not", []),
    # closed in a later row, before something other than a comma: c-1 was created with Carl's name
    ('member_id,custom.note,first_name\nc-1,"hello,Ann\nc-2,x,Bob\nc-3,"y,Carl\nc-4,z,Dan\n',
     ":2: is not valid CSV up to line 4 (',' expected after '\"'; is a quote left open?). Lines 2-4 were not",
     [("c-4", "Dan")]),
    # open on the last line, with no line break after it
    ('member_id,first_name,email\nc-1,Ann,a@example.com\nc-2,"Bob,b@example.com',
     ":3: is not valid CSV up to line 3 (unexpected end of data; is a quote left open?). Line 3 was not",
     [("c-1", "Ann")]),
])
def test_a_quote_left_open_in_any_column_rejects_the_lines_it_took(tmp_path, db, text, rejected, kept):
    CustomField.objects.create(key="note", label="Note", type="string")
    path = tmp_path / "members.csv"
    path.write_text(text)

    _, err = run(path)

    assert f"{path}{rejected} imported." in err
    assert list(Member.objects.order_by("member_id").values_list("member_id", "first_name")) == kept


def test_a_custom_text_field_may_hold_lines_in_a_quoted_csv_cell(tmp_path, db):
    CustomField.objects.create(key="note", label="Note", type="string")
    path = tmp_path / "members.csv"
    path.write_text('member_id,first_name,custom.note\nn-1,Ada,"first line\nsecond line"\nn-2,Bob,\n')

    run(path, rejects=False)

    assert Member.objects.get(member_id="n-1").custom_fields == {"note": "first line\nsecond line"}
    assert Member.objects.filter(member_id="n-2").exists()


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
        '{"member_id": "j-4", "first_name": "Ann", "first_name": "Bob"}',  # a key twice: the API refuses it too
    ]) + "\n")

    out, err = run(path)

    assert "2 created, 0 updated, 0 unchanged, 4 rejected" in out
    assert f"{path}:6: is not valid JSON (the key 'first_name' appears twice in one object)" in err
    assert f"{path}:2: is not valid JSON" in err
    assert f"{path}:3: must be a JSON object" in err
    assert f"{path}:4: points_spendable" in err
    assert Member.objects.get(member_id="j-3").custom_fields == {"shoe_size": 40}


@pytest.mark.usefixtures("q_sync")
def test_imported_members_are_synced_like_any_change(tmp_path, braze_connection, sandbox):
    path = tmp_path / "members.csv"
    path.write_text("member_id,first_name\ni-1,Ada\ni-2,Grace\n")

    run(path, rejects=False)

    assert sandbox.user("i-1")["attributes"]["loyalty_first_name"] == "Ada"
    assert sandbox.user("i-2")["attributes"]["loyalty_first_name"] == "Grace"
    assert MemberSyncState.objects.filter(status="synced").count() == 2


def test_a_rejected_row_makes_the_command_exit_non_zero_and_the_good_rows_stay(tmp_path, transactional_db):
    """Given a file with one good and one bad row, when the command runs as a process, then it exits 1, says
    that the good row was kept, and the good row is in the database."""
    path = tmp_path / "members.csv"
    path.write_text("member_id,email,consent_email\nok-1,ok@example.com,opted_in\nbad-1,x,maybe\n")

    result = subprocess.run(
        [sys.executable, "manage.py", "import_members", str(path)], cwd=settings.BASE_DIR, capture_output=True,
        text=True, timeout=120, env={**os.environ, "DATABASE_URL": database_url()})

    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 created, 0 updated, 0 unchanged, 1 rejected" in result.stderr
    assert "The 1 good row(s) were kept" in result.stderr
    assert f"{path}:3: consent_email: must be one of: opted_in, subscribed, unsubscribed" in result.stderr
    assert Member.objects.filter(member_id="ok-1", consent_email="opted_in").exists()


def test_a_json_member_id_that_is_a_number_is_reported_as_not_text(tmp_path, db):
    path = tmp_path / "members.jsonl"
    path.write_text(json.dumps({"member_id": 123}) + "\n")

    out, err = run(path)

    assert f"{path}:1: member_id: must be a string (text), not a number." in err
    assert "is missing or empty" not in err


def test_a_csv_line_that_is_not_utf8_is_rejected_alone_and_the_rows_around_it_are_kept(tmp_path, db):
    """Given 700 good rows (more than a batch), a Latin-1 row and one more good row, when the file is imported,
    then only the Latin-1 row is rejected, with its line and why, and the 701 others are members."""
    path = tmp_path / "members.csv"
    good = "".join(f"u8-{i},N{i}\n" for i in range(700))
    path.write_bytes(b"member_id,first_name\n" + good.encode() + b"u8-bad,\xe9t\xe9\nu8-after,M\n")

    out, err = run(path)

    assert "701 created, 0 updated, 0 unchanged, 1 rejected" in out
    assert f"{path}:702: is not UTF-8 text" in err
    assert Member.objects.filter(member_id__startswith="u8-").count() == 701
    assert Member.objects.filter(member_id="u8-after").exists()


def test_a_json_line_that_is_not_utf8_is_rejected_alone(tmp_path, db):
    path = tmp_path / "members.jsonl"
    path.write_bytes(b'{"member_id": "j-1"}\n{"member_id": "j-bad", "first_name": "\xe9t\xe9"}\n{"member_id": "j-2"}\n')

    out, err = run(path)

    assert "2 created, 0 updated, 0 unchanged, 1 rejected" in out
    assert f"{path}:2: is not UTF-8 text" in err
    assert set(Member.objects.values_list("member_id", flat=True)) == {"j-1", "j-2"}


def test_a_quoted_cell_over_two_lines_is_rejected_by_the_line_that_is_not_utf8(tmp_path, db):
    path = tmp_path / "members.csv"
    path.write_bytes(b'member_id,first_name\nq-1,"two\nlines \xe9"\nq-2,Ok\n')

    out, err = run(path)

    assert "1 created, 0 updated, 0 unchanged, 1 rejected" in out
    assert f"{path}:3: is not UTF-8 text" in err
    assert list(Member.objects.values_list("member_id", flat=True)) == ["q-2"]


@pytest.mark.parametrize(("content", "message"), [
    (b"member_id,first_name\xe9\nx-1,Ada\n", "the header (line 1) is not UTF-8 text (byte 0xe9"),
    ("member_id,first_name\nx-1,Ada\n".encode("utf-16"), "the file is UTF-16 text, not UTF-8"),
], ids=["latin-1 header", "utf-16"])
def test_a_file_that_is_not_utf8_from_its_first_line_is_refused_with_a_clear_error(tmp_path, db, content, message):
    path = tmp_path / "members.csv"
    path.write_bytes(content)

    with pytest.raises(CommandError) as failure:
        call_command("import_members", str(path), stdout=StringIO(), stderr=StringIO())

    assert message in str(failure.value)
    assert not Member.objects.exists()


def test_a_row_not_utf8_right_after_the_header_is_reported_not_a_traceback(tmp_path, db):
    path = tmp_path / "members.csv"
    path.write_bytes(b"member_id\n\xff\xfebad\n")

    out, err = run(path)

    assert "0 created, 0 updated, 0 unchanged, 1 rejected" in out
    assert f"{path}:2: is not UTF-8 text (byte 0xff at byte 1 of the line)" in err


def test_a_utf8_bom_is_still_read_as_the_start_of_the_header(tmp_path, db):
    path = tmp_path / "members.csv"
    path.write_bytes("\ufeffmember_id,first_name\nbom-1,Zoé\n".encode())

    run(path, rejects=False)

    assert Member.objects.get(member_id="bom-1").first_name == "Zoé"


def test_a_csv_header_naming_a_column_twice_is_refused_before_anything_is_imported(tmp_path, db):
    path = tmp_path / "members.csv"
    path.write_text("member_id,first_name,member_id\nd-1,Ada,d-2\n")

    with pytest.raises(CommandError) as failure:
        call_command("import_members", str(path), stdout=StringIO(), stderr=StringIO())

    assert "the CSV header names member_id more than once" in str(failure.value)
    assert not Member.objects.exists()

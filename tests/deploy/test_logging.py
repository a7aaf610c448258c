"""LOG_FORMAT=json: one JSON object per line, each line of a request with the request's id, secrets
still redacted; ADMINS and EMAIL_URL from the environment carry the error e-mails."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import datetime

import pytest
from django.core.exceptions import ImproperlyConfigured

from loyaltysync.settings import admins_parse

from .conftest import manage

KEY = "sk-json-log-" + secrets.token_hex(12)

SCRIPT = """
import logging, sys
from django.test import Client
from braze_integration.logging import secret_register

key = secret_register("{key}")
client = Client()
generated = client.get("/no-such-page/")["X-Request-ID"]
given = client.get("/no-such-page/", HTTP_X_REQUEST_ID="{given}")["X-Request-ID"]
forged = client.get("/no-such-page/", HTTP_X_REQUEST_ID="forged id")["X-Request-ID"]
try:
    raise RuntimeError("Braze refused " + key)
except RuntimeError:
    logging.getLogger("braze_integration").exception("sending with %s failed", key)
print("IDS", generated, given, forged)
"""


@pytest.fixture(scope="module")
def json_run():
    given = str(uuid.uuid4())
    result = manage("shell", "-c", SCRIPT.format(key=KEY, given=given), LOG_FORMAT="json", ALLOWED_HOSTS="testserver")
    assert result.returncode == 0, result.stderr
    ids = next(line for line in result.stdout.splitlines() if line.startswith("IDS")).split()[1:]
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    return given, ids, lines, result.stderr


def test_every_line_is_a_json_object_with_time_level_logger_and_message(json_run):
    _, _, lines, _ = json_run

    assert lines
    for line in lines:
        assert {"time", "level", "logger", "message", "request_id"} <= line.keys()
        assert datetime.fromisoformat(line["time"]).utcoffset() is not None  # ISO 8601 with the zone


def test_each_line_of_a_request_carries_its_request_id(json_run):
    given, (generated, answered_given, forged), lines, _ = json_run
    not_found = [line for line in lines if line["logger"] == "django.request"]

    assert [line["request_id"] for line in not_found] == [generated, given, forged]
    assert answered_given == given  # an incoming X-Request-ID (a UUID) is kept and answered
    assert forged != "forged id"  # anything else is replaced by a new id
    assert uuid.UUID(generated) and uuid.UUID(forged)


def test_the_api_key_stays_redacted_in_json_lines_and_tracebacks(json_run):
    _, _, lines, stderr = json_run
    failure = next(line for line in lines if line["logger"] == "braze_integration")

    assert KEY not in stderr
    assert "********" in failure["message"]
    assert "RuntimeError: Braze refused ********" in failure["exc_info"]
    assert failure["request_id"] is None  # outside a request


def test_admins_are_read_as_e_mail_headers_write_them():
    assert admins_parse("Ops <ops@example.com>, dev@example.com") == [
        ("Ops", "ops@example.com"), ("", "dev@example.com"),
    ]
    assert admins_parse("") == []
    with pytest.raises(ImproperlyConfigured, match="ADMINS"):
        admins_parse("Ops, Dev")


def test_unknown_log_format_is_refused_by_name():
    result = manage("check", LOG_FORMAT="xml")

    assert result.returncode != 0
    assert 'LOG_FORMAT: "xml" is not one of "plain", "json"' in result.stderr


def test_error_e_mails_go_to_admins_through_email_url(tmp_path):
    from cryptography.fernet import Fernet

    code = 'import logging; logging.getLogger("django.request").error("Internal Server Error: /boom")'
    result = manage(
        "shell", "-c", code,
        DEBUG="false", SECRET_KEY=secrets.token_urlsafe(50), BRAZE_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="example.com", ADMINS="Ops <ops@example.com>, dev@example.com", SERVER_EMAIL="loyalty@example.com",
        EMAIL_URL=f"filemail:///{tmp_path}",  # django-environ drops one slash: four for an absolute path
    )

    assert result.returncode == 0, result.stderr
    (mail,) = tmp_path.iterdir()
    message = mail.read_text()
    assert "To: ops@example.com, dev@example.com" in message
    assert "From: loyalty@example.com" in message
    assert "Subject: [loyaltysync] ERROR: Internal Server Error: /boom" in message

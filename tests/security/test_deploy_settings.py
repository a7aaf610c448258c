"""Production settings (DEBUG off, values from the environment) pass ``manage.py check --deploy``."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "BRAZE_", "SECURE_"))
        and key not in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS")
    }
    environment.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(60),
    "ALLOWED_HOSTS": "example.com",
    "BRAZE_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
}


def test_production_settings_pass_check_deploy_without_a_warning():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_local_endpoints_and_hide_secrets_in_reports():
    code = (
        "import json; from django.conf import settings as s; print(json.dumps({"
        "'local': s.BRAZE_LOCAL_ENDPOINTS, 'filter': s.DEFAULT_EXCEPTION_REPORTER_FILTER, "
        "'reporter': s.DEFAULT_EXCEPTION_REPORTER, 'hosts': s.ALLOWED_HOSTS, 'axes': s.AXES_ENABLED}))"
    )
    result = manage("shell", "-c", code, **PRODUCTION)

    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values == {
        "local": [],
        "filter": "braze_integration.logging.SecretsReporterFilter",
        "reporter": "braze_integration.logging.SecretsExceptionReporter",
        "hosts": ["example.com"],
        "axes": True,
    }


def test_production_refuses_to_start_without_a_secret_key_and_flags_a_weak_one():
    without = {name: value for name, value in PRODUCTION.items() if name != "SECRET_KEY"}

    missing = manage("check", **without)
    weak = manage("check", "--deploy", "--fail-level", "WARNING", **without, SECRET_KEY="short")

    assert missing.returncode != 0 and "SECRET_KEY" in missing.stderr
    assert weak.returncode != 0 and "security.W009" in weak.stderr + weak.stdout

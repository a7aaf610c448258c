"""The wheel carries everything the apps need at run time, not only their Python modules.

Given the wheel installed into a fresh virtualenv outside the checkout, when a script migrates a new
SQLite database and a staff user opens the admin with Django's test client, then the pages render
from the installed package's own templates and static files.
"""

from __future__ import annotations

import json
import zipfile

import pytest

pytestmark = pytest.mark.slow

RENDER_ADMIN = r"""
import json, sys
import django
django.setup()
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

import loyaltysync, braze_integration, workflows
from braze_integration.models import Connection
from loyaltysync.models import Member

call_command("migrate", verbosity=0)
call_command("loaddata", "workflows.json", verbosity=0)  # a fixture found in the installed package
user = get_user_model().objects.create_superuser("ops", "ops@example.com", "a-long-password-123")
connection = Connection.objects.create(instance_url="https://rest.fra-01.braze.eu", api_key="k" * 36)
member = Member.objects.create(member_id="m-1", first_name="Ada")
client = Client()
client.force_login(user)
pages = {}
for name, url in {
    "index": reverse("admin:index"),
    "connection": reverse("admin:braze_integration_connection_change", args=[connection.pk]),
    "member": reverse("admin:loyaltysync_member_change", args=[member.pk]),
}.items():
    response = client.get(url)
    pages[name] = {"status": response.status_code, "body": response.content.decode()}
print(json.dumps({
    "modules": [m.__file__ for m in (loyaltysync, braze_integration, workflows)],
    "static": [finders.find(p) for p in ("braze_integration/admin.css", "braze_integration/connection_form.js")],
    "workflows": __import__("workflows.models").models.Workflow.objects.count(),
    "pages": pages,
}))
"""


def test_the_wheel_holds_templates_static_files_and_fixtures(installed_wheel):
    names = zipfile.ZipFile(installed_wheel.wheel).namelist()

    assert "braze_integration/templates/admin/braze_integration/connection/change_form.html" in names
    assert "braze_integration/static/braze_integration/admin.css" in names
    assert "braze_integration/static/braze_integration/connection_form.js" in names
    assert "loyaltysync/fixtures/demo.json" in names
    assert "workflows/fixtures/workflows.json" in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)


def test_admin_pages_render_from_the_installed_wheel(installed_wheel):
    script = installed_wheel.workdir / "render_admin.py"
    script.write_text(RENDER_ADMIN)

    result = installed_wheel.run(
        installed_wheel.python, script,
        env=installed_wheel.env(
            DATABASE_URL=f"sqlite:///{installed_wheel.workdir / 'admin.sqlite3'}", ALLOWED_HOSTS="testserver"
        ),
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(str(installed_wheel.venv) in path for path in report["modules"]), report["modules"]
    assert all(path and str(installed_wheel.venv) in path for path in report["static"]), report["static"]
    assert report["workflows"] > 0
    pages = report["pages"]
    assert {name: page["status"] for name, page in pages.items()} == {"index": 200, "connection": 200, "member": 200}
    # Markers that exist only in the apps' own templates (not in Django's admin templates).
    assert "braze-dashboard-link" in pages["index"]["body"]
    assert 'id="braze-connection-state"' in pages["connection"]["body"]
    assert "braze_integration/connection_form.js" in pages["connection"]["body"]
    assert "braze-mappings" in pages["connection"]["body"]
    assert "braze_integration/admin.css" in pages["member"]["body"]
    assert "Braze sync" in pages["member"]["body"]


def test_the_console_script_runs_manage_commands(installed_wheel):
    result = installed_wheel.run(installed_wheel.bin("loyaltysync"), "check")

    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout

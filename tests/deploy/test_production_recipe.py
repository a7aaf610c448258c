"""The README's production recipe, from the wheel and with deploy/'s files: migrate, collectstatic,
check --deploy, gunicorn started as loyaltysync-web.service starts it (on a free port), a worker as
loyaltysync-worker@.service starts it, and the health endpoints answering.

SQLite, the ORM broker and the database cache: the recipe without Redis (the smallest production).
"""

from __future__ import annotations

import configparser
import os
import secrets
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet

from .conftest import CHECKOUT

pytestmark = pytest.mark.slow

DEPLOY = CHECKOUT / "deploy"
UNIT_VENV = "/opt/loyaltysync/venv/bin/"
UNIT_GUNICORN_CONF = "/etc/loyaltysync/gunicorn.conf.py"


UNITS = ("loyaltysync-web.service", "loyaltysync-worker@.service")


def unit_service(unit: str) -> configparser.SectionProxy:
    """The ``[Service]`` section of a unit in deploy/ (keys as written)."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read(DEPLOY / unit)
    return parser["Service"]


def exec_start(unit: str, installed_wheel) -> list[str]:
    """The unit's ExecStart, pointed at the test's virtualenv and the checkout's deploy/ files."""
    program, *args = shlex.split(unit_service(unit)["ExecStart"].replace(UNIT_GUNICORN_CONF, str(DEPLOY / "gunicorn.conf.py")))
    assert program.startswith(UNIT_VENV), program
    name = program.removeprefix(UNIT_VENV)
    if installed_wheel.bin(name).exists():  # the wheel's own script
        return [str(installed_wheel.bin(name)), *args]
    # A dependency's script is not in the test virtualenv (it borrows the packages, not their scripts).
    return [str(installed_wheel.python), "-m", name, *args]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, status: int, seconds: float) -> requests.Response:
    deadline = time.monotonic() + seconds
    last: requests.Response | Exception | None = None
    while time.monotonic() < deadline:
        try:
            last = requests.get(url, timeout=5, allow_redirects=False)
            if last.status_code == status:
                return last
        except requests.ConnectionError as err:
            last = err
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer {status} within {seconds} s; last: "
                         f"{getattr(last, 'status_code', last)} {getattr(last, 'text', '')[:500]}")


class Service:
    """A process started as its unit starts it, stopped as systemd stops it with the units'
    ``KillMode=mixed``: SIGTERM to the main process, SIGKILL to what is left."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path, log: Path):
        self.log = log.open("w")
        self.process = subprocess.Popen(command, env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text()

    def stop(self) -> bool:
        """True when the process stopped on SIGTERM (within 20 s; the units allow more)."""
        stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                stopped = False
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)
        self.log.close()
        return stopped


@pytest.fixture
def production_env(installed_wheel) -> dict[str, str]:
    var = installed_wheel.workdir / "var"
    env = installed_wheel.env(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1",
        BRAZE_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        DATABASE_URL=f"sqlite:///{var / 'production.sqlite3'}",
        STATIC_ROOT=str(var / "static"),
        LOG_FORMAT="json",
        WEB_CONCURRENCY="2",
        Q_WORKERS="1",
    )
    env.pop("REDIS_URL", None)
    return env


def test_the_production_recipe_runs_from_the_wheel(installed_wheel, production_env):
    env, workdir = production_env, installed_wheel.workdir
    loyaltysync = str(installed_wheel.bin("loyaltysync"))

    for step in (["migrate", "--noinput"], ["collectstatic", "--noinput"],
                 ["check", "--deploy", "--fail-level", "WARNING"]):
        result = installed_wheel.run(loyaltysync, *step, env=env)
        assert result.returncode == 0, f"{step}: {result.stdout}{result.stderr}"
    static = Path(env["STATIC_ROOT"])
    assert (static / "braze_integration" / "admin.css").exists()
    assert (static / "drf_spectacular_sidecar" / "swagger-ui-dist" / "swagger-ui-bundle.js").exists()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web = Service(exec_start("loyaltysync-web.service", installed_wheel), {**env, "GUNICORN_BIND": f"127.0.0.1:{port}"},
                  workdir, workdir / "web.log")
    worker = None
    try:
        alive = wait_for(f"{base}/healthz", 200, 60)
        assert alive.json() == {"status": "alive"}
        not_ready = wait_for(f"{base}/readyz", 503, 30)
        assert not not_ready.json()["checks"]["worker"]["ok"]

        worker = Service(exec_start("loyaltysync-worker@.service", installed_wheel), env, workdir,
                         workdir / "worker.log")
        ready = wait_for(f"{base}/readyz", 200, 60)
        assert ready.json()["status"] == "ready"
        # The app's log lines are JSON with the request id gunicorn's access log shows.
        not_found = requests.get(f"{base}/no-such-page/", headers={"X-Forwarded-Proto": "https"}, timeout=5,
                                 allow_redirects=False)
        assert not_found.status_code == 404
        request_id = not_found.headers["X-Request-ID"]
    finally:
        stopped = {name: service.stop() for name, service in (("worker", worker), ("web", web)) if service}
    assert stopped == {"worker": True, "web": True}
    web_log = web.output()
    assert f'"request_id": "{request_id}"' in web_log
    assert f"request_id={request_id}" in web_log
    assert "Booting worker" in web_log and "Shutting down: Master" in web_log


def test_every_variable_of_the_env_example_is_read_somewhere():
    readers = (CHECKOUT / "loyaltysync" / "settings.py").read_text() + (DEPLOY / "gunicorn.conf.py").read_text()
    names = [line.split("=", 1)[0] for line in (DEPLOY / "loyaltysync.env.example").read_text().splitlines()
             if line and not line.startswith("#")]

    assert "DATABASE_URL" in names and "ADMINS" in names
    assert [name for name in names if f'"{name}"' not in readers] == []


def test_both_units_read_the_env_file_and_run_as_the_service_user():
    for unit in UNITS:
        service = unit_service(unit)
        assert service["EnvironmentFile"] == "/etc/loyaltysync/loyaltysync.env", unit
        assert service["User"] == "loyaltysync" and service["WorkingDirectory"] == "/var/lib/loyaltysync", unit


@pytest.mark.parametrize("unit", UNITS)
def test_the_units_stop_the_main_process_first(unit):
    """qcluster and gunicorn stop their own processes on SIGTERM. A SIGTERM to every process of the unit
    at once (systemd's default, ``control-group``) reaches qcluster's children first, and an idle
    cluster then does not exit until the stop timeout's SIGKILL."""
    service = unit_service(unit)

    assert service["KillMode"] == "mixed"
    assert service.get("KillSignal", "SIGTERM") == "SIGTERM"

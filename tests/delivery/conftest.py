"""Real worker processes (`manage.py qcluster`) against the test database and the sandbox."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from braze_integration import building
from braze_integration.models import Connection, MemberChange, MemberSyncState, OutboxItem, SyncStatus
from loyaltysync.models import Member

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """The test database as a URL a child process can use."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


class Worker:
    """A `manage.py qcluster` process group, started and stopped (or killed) by the test."""

    def __init__(self, *, redis_url: str = "", workers: int = 2, extra_env: dict[str, str] | None = None):
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "REDIS_URL": redis_url,
            # The test's sandbox (listed by the sandbox_endpoint fixture) and nothing else on loopback.
            "BRAZE_LOCAL_ENDPOINTS": ",".join(settings.BRAZE_LOCAL_ENDPOINTS),
            "BRAZE_CLAIM_LEASE_SECONDS": "4",
            "BRAZE_HTTP_TIMEOUT": "2",
            "Q_WORKERS": str(workers),
            "Q_TIMEOUT": "30",
            "Q_RETRY": "40",
            "Q_POLL": "0.05",
            "PYTHONUNBUFFERED": "1",
            "DEBUG": "1",
            **(extra_env or {}),
        }
        self.process: subprocess.Popen | None = None
        self.log = open(Path(settings.VAR_DIR) / f"worker-{os.getpid()}-{id(self)}.log", "w")  # noqa: SIM115

    def start(self) -> Worker:
        self.process = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "qcluster"], env=self.env, cwd=ROOT,
                                        stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group: no clean-up, no acknowledgement."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()


@pytest.fixture
def start_worker():
    started: list[Worker] = []

    def start(**kwargs) -> Worker:
        worker = Worker(**kwargs).start()
        started.append(worker)
        return worker

    yield start
    # The test is over: nothing waits for a graceful stop (which lets a lingering flush task run out).
    for worker in started:
        worker.kill()


def wait_until(condition: Callable[[], bool], *, timeout: float = 60, interval: float = 0.2, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connection.close()  # see other processes' commits; survive a database restart
        try:
            if condition():
                return
        except Exception:  # the database may be restarting
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")


def all_synced() -> bool:
    """Every saved change folded and sent, and every outbox item sent."""
    return (not MemberChange.objects.exists() and not MemberSyncState.objects.exclude(status=SyncStatus.SYNCED).exists()
            and not OutboxItem.objects.filter(status="pending").exists())


def assert_sandbox_matches_database(sandbox) -> None:
    """Every member's profile in the sandbox equals the mapped values the database gives, and every
    custom event is there exactly once, or once more per send whose answer was lost (counted)."""
    conn = Connection.objects.get(active=True)
    plan = building.MappingPlan.load(conn)
    mismatches = []
    for row in Member.objects.values(*plan.columns):
        expected = {k: v for k, v in plan.values(row).items() if v is not None}
        profile = sandbox.user(row["member_id"]) or {"attributes": {}, "events": []}
        actual = {k: v for k, v in profile["attributes"].items() if k in expected or k in dict(plan.values(row))}
        if actual != expected:
            mismatches.append((row["member_id"], expected, actual))
        items = OutboxItem.objects.filter(member_id=row["id"], kind="event")
        expected_events = sum(1 + item.ambiguous_sends for item in items if item.status == "sent")
        names = {item.payload["name"] for item in items}
        got = [e for e in profile["events"] if e["name"] in names]
        lower = sum(1 for item in items if item.status == "sent")
        if not lower <= len(got) <= expected_events:
            mismatches.append((row["member_id"], f"events {len(got)} not within [{lower}, {expected_events}]"))
    assert not mismatches, mismatches[:5]


def require(condition: bool, reason: str) -> None:
    """Skip when a server is missing, unless CI said every service must be there."""
    if not condition:
        if os.environ.get("REQUIRE_SERVICES"):
            pytest.fail(f"{reason} (REQUIRE_SERVICES is set)")
        pytest.skip(reason)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of the test's own on a free port, so the test can stop and start it."""

    def __init__(self):
        import shutil

        self.binary = shutil.which("redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        import redis

        self.process = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: redis.Redis.from_url(self.url).ping(), timeout=10, what="redis to start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture
def private_redis(monkeypatch):
    import shutil

    require(shutil.which("redis-server") is not None, "redis-server is not installed")
    server = PrivateRedis()
    server.start()
    from django_q.conf import Conf

    # This process queues its flush tasks in the same Redis as the worker.
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", server.url)
    yield server
    server.stop()

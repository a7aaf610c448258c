"""Fixtures shared by the whole suite: the local Braze sandbox over real HTTP, and a connection to it."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import requests
from django.test import override_settings

from braze_integration.sandbox import SandboxConfig, SandboxServer

SANDBOX_KEY = "sandbox-test-key-0123456789abcdef"
NO_PERMISSION_KEY = "sandbox-no-permission-key-0000"

# Loyalty field -> (Braze attribute, Braze type): at least one mapping of every Braze type.
EVERY_TYPE_MAPPINGS = [
    ("points_spendable", "loyalty_points"),  # integer
    ("purchase_total", "loyalty_purchase_total"),  # float
    ("tier", "loyalty_tier"),  # string
    ("opted_in", "loyalty_opted_in"),  # boolean
    ("birth_date", "loyalty_birthday"),  # date
    ("last_purchase_products", "loyalty_last_products"),  # array
    ("loyalty_summary", "loyalty_summary"),  # object
    ("last_purchase_items", "loyalty_last_items"),  # array of objects
    ("first_name", "loyalty_first_name"),  # string
]


@pytest.fixture(scope="session", autouse=True)
def postgresql_flush_by_delete():
    """After each transactional test Django empties every table with one ``TRUNCATE``. On PostgreSQL that
    makes new files for the 50 tables and their indexes: 210 ms, after each of about 360 tests (over a
    minute of the run). The tests leave a few rows, so ``DELETE`` with the foreign keys checked at commit
    (Django makes them all deferrable) empties the same tables in 6-7 ms. Sequences are kept either way."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    truncate = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if reset_sequences or allow_cascade or not tables:
            return truncate(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        return ["SET CONSTRAINTS ALL DEFERRED",
                *(f"{style.SQL_KEYWORD('DELETE FROM')} {style.SQL_FIELD(self.quote_name(t))}" for t in tables)]

    DatabaseOperations.sql_flush = sql_flush
    yield
    DatabaseOperations.sql_flush = truncate


@pytest.fixture(autouse=True)
def resync_in_process():
    """No qcluster runs in most tests: `braze_resync` sends from its own process at once instead of
    waiting for a worker to take its parts (tests of the parallel resync set a pickup time).
    ``override_settings``, not the ``settings`` fixture: some tests name a parameter ``settings``."""
    with override_settings(BRAZE_RESYNC_PICKUP_SECONDS=0):
        yield


@pytest.fixture(autouse=True)
def no_flush_promise_read_before():
    """A worker's promise to look for changes that this process read (``queue.slot_watched``) was
    about an earlier test's database: each test starts without one."""
    from braze_integration import queue

    queue.slot_promise_forget()


@pytest.fixture(autouse=True)
def empty_redis_queue():
    """Each test starts with an empty task queue. On the ORM broker the database's reset empties it;
    a Redis list outlives the test, and the tasks earlier tests queued (with no worker to run them)
    would reach the next test's workers first: stale flushes and resync parts ahead of its own."""
    from django.conf import settings  # not the fixture: some tests name a parameter ``settings``

    if "redis" in settings.Q_CLUSTER:
        from django_q.brokers import get_broker

        get_broker().purge_queue()


class SandboxClient:
    """Reads the sandbox over HTTP, as a person or another program would."""

    def __init__(self, server: SandboxServer):
        self.server = server
        self.url = server.url
        self.session = requests.Session()

    def user(self, external_id: str) -> dict | None:
        response = self.session.get(f"{self.url}/sandbox/users/{quote(external_id, safe='')}", timeout=5)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict:
        return self.session.get(f"{self.url}/sandbox/stats", timeout=5).json()

    def requests(self, limit: int = 1000) -> list[dict]:
        return self.session.get(f"{self.url}/sandbox/requests", params={"limit": limit}, timeout=5).json()["requests"]

    def set_faults(self, **faults) -> dict:
        response = self.session.post(f"{self.url}/sandbox/faults", json=faults, timeout=5)
        response.raise_for_status()
        return response.json()

    def set_keys(self, api_keys: list[str], no_permission_keys: list[str] | None = None) -> None:
        self.session.post(f"{self.url}/sandbox/keys", json={"api_keys": api_keys,
                                                          "no_permission_keys": no_permission_keys or [],
                                                          "track_only_keys": []},
                          timeout=5).raise_for_status()

    def reset(self) -> None:
        self.session.post(f"{self.url}/sandbox/reset", timeout=5).raise_for_status()


# Custom actions the suite sends; an undeclared action is refused, as in production.
DECLARED_ACTIONS = ("store_visit", "visit", "x")


@pytest.fixture(autouse=True)
def declared_custom_actions(request):
    """Declares the suite's custom actions in every test that has a database."""
    if not ({"db", "transactional_db", "django_db_setup"} & set(request.fixturenames)
            or request.node.get_closest_marker("django_db")):
        return
    request.getfixturevalue("transactional_db" if "transactional_db" in request.fixturenames else "db")
    from loyaltysync.models import CustomAction

    for name in DECLARED_ACTIONS:
        CustomAction.objects.get_or_create(name=name)


@pytest.fixture(scope="session")
def sandbox_server():
    server = SandboxServer(SandboxConfig(api_keys={SANDBOX_KEY}, no_permission_keys={NO_PERMISSION_KEY}))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server) -> SandboxClient:
    client = SandboxClient(sandbox_server)
    client.reset()
    client.set_faults(error_rate=0, latency_ms=0, timeout_rate=0, fail_next=0, ack_lost_next=0, fail_external_ids=[],
                       rate_limit=None)
    client.set_keys([SANDBOX_KEY], [NO_PERMISSION_KEY])
    yield client
    client.reset()


@pytest.fixture
def sandbox_endpoint(sandbox, settings) -> str:
    """The test sandbox's URL (a random port) listed in BRAZE_LOCAL_ENDPOINTS, as the demo lists its own."""
    settings.BRAZE_LOCAL_ENDPOINTS = [*settings.BRAZE_LOCAL_ENDPOINTS, sandbox.url]
    return sandbox.url


@pytest.fixture
def braze_connection(transactional_db, sandbox, sandbox_endpoint):
    """An active connection to the sandbox, mapped with every Braze type."""
    from braze_integration import services
    from braze_integration.models import Connection, ConnectionStatus, FieldMapping

    connection = Connection(name="Sandbox", instance_url=sandbox.url, status=ConnectionStatus.CONNECTED)
    connection.set_api_key(SANDBOX_KEY)
    connection.full_clean()
    connection.save()
    for position, (loyalty_field, remote_field) in enumerate(EVERY_TYPE_MAPPINGS):
        FieldMapping.objects.create(connection=connection, loyalty_field=loyalty_field, remote_field=remote_field,
                                    position=position)
    services.sync_config_invalidate()
    yield connection
    services.sync_config_invalidate()


@pytest.fixture
def q_sync(monkeypatch):
    """Run django-q2 tasks inline, as soon as they are queued (after commit)."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)

"""Broker and database outages, and several worker processes at once."""

from __future__ import annotations

import os
import subprocess

import pytest
from django.db import connection

from braze_integration import services

from .conftest import all_synced, assert_sandbox_matches_database, require, wait_until
from .test_faults import create_members

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.mark.redis
def test_redis_stopped_while_members_are_saved_then_started_again_loses_nothing(
        braze_connection, sandbox, start_worker, private_redis):
    start_worker(redis_url=private_redis.url)
    create_members(30, prefix="before")
    wait_until(all_synced, timeout=60, what="the first members synced through Redis")

    private_redis.stop()
    create_members(30, prefix="during")  # saves keep working: the change is in the database, not in Redis
    assert services.sync_status_summary()["members"]["pending"] == 30  # as the dashboard shows them

    private_redis.start()  # empty: whatever was queued in it is gone
    create_members(1, prefix="after")  # the next change queues a flush, which sends everything pending

    wait_until(all_synced, timeout=90, what="every member synced after Redis came back")
    assert_sandbox_matches_database(sandbox)
    assert sandbox.stats()["users"] == 61


@pytest.mark.postgres
def test_postgresql_restarts_while_the_worker_runs(braze_connection, sandbox, start_worker):
    if connection.vendor != "postgresql":  # not a missing service: CI runs it in its PostgreSQL pass
        pytest.skip("runs on PostgreSQL (DATABASE_URL=postgres://...)")
    versions = os.listdir("/etc/postgresql") if os.path.isdir("/etc/postgresql") else []
    require(bool(versions) and os.geteuid() == 0, "needs a local PostgreSQL cluster it may restart (root)")
    sandbox.set_faults(latency_ms=100)
    create_members(200)
    start_worker()
    wait_until(lambda: sandbox.stats()["requests"] >= 1, timeout=30, what="the first request")

    connection.close()
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[0], "main", "restart"], check=True,
                   timeout=60)
    sandbox.set_faults(latency_ms=0)

    wait_until(all_synced, timeout=120, what="every member synced after the restart")
    assert_sandbox_matches_database(sandbox)


@pytest.mark.postgres
@pytest.mark.redis
def test_two_worker_processes_send_each_change_once_and_stay_under_the_rate_limit(
        braze_connection, sandbox, start_worker, private_redis):
    if connection.vendor != "postgresql":  # not a missing service: CI runs it in its PostgreSQL pass
        pytest.skip("scale-out runs on PostgreSQL (DATABASE_URL=postgres://...)")
    braze_connection.rate_limit_requests = 40
    braze_connection.rate_limit_seconds = 1
    braze_connection.batch_size = 10
    braze_connection.save()
    sandbox.set_faults(rate_limit="40/1s", latency_ms=20)
    for _ in range(2):
        start_worker(redis_url=private_redis.url, extra_env={"BRAZE_SYNC_CONCURRENCY": "4"})

    create_members(600, with_event=False)

    wait_until(all_synced, timeout=120, what="every member synced by two worker processes")
    assert_sandbox_matches_database(sandbox)
    stats = sandbox.stats()
    assert stats["rate_limited"] == 0
    assert stats["objects"]["attributes"] == 600  # no member sent twice for one change
    assert stats["max_objects_in_request"] <= 10

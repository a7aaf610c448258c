"""`make demo` on a fresh database: migrate, demo data, sandbox, worker, Connect and the initial sync."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_the_demo_sets_up_connects_and_syncs_every_member_on_a_fresh_database(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}", "DEBUG": "1", "REDIS_URL": ""}
    result = subprocess.run(
        [sys.executable, "manage.py", "demo", "--exit-after-sync", "--port", str(free_port()),
         "--sandbox-port", str(free_port())],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Connect: Connected" in result.stdout
    assert "Loaded the demo program: 40 members." in result.stdout
    assert "the sandbox holds 40 profiles; 0 members failed." in result.stdout

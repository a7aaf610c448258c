"""`make demo` on a fresh database: migrate, demo data, sandbox, worker, Connect and the initial sync."""

import os
import signal
import socket
import subprocess
import sys
import time
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


def stop_a_running_demo(tmp_path, stop) -> str:
    """Start the demo on free ports, wait until it runs, then ``stop(demo, output)`` it. Returns what
    it printed after that, once it has exited 0 and nothing listens on its ports any more."""
    port, sandbox_port = free_port(), free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}", "DEBUG": "1", "REDIS_URL": ""}
    demo = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--port", str(port), "--sandbox-port", str(sandbox_port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            output.append(line)
            if "demo is running" in line or not line:
                break
        assert "demo is running" in "".join(output), "".join(output)
        stop(demo, output)
        rest, _ = demo.communicate(timeout=40)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 0, "".join(output) + rest
    for busy in (port, sandbox_port):  # the web server and the sandbox are gone: nobody listens there
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # closed connections may linger in TIME_WAIT
            sock.bind(("127.0.0.1", busy))
    return "".join(output) + rest


@pytest.mark.slow
def test_sigterm_stops_the_demo_and_its_processes(tmp_path):
    """Given a running demo, when it gets SIGTERM (not Ctrl-C), then it stops its children and exits cleanly."""
    printed = stop_a_running_demo(tmp_path, lambda demo, output: demo.send_signal(signal.SIGTERM))
    assert "Stopping the demo" in printed


@pytest.mark.slow
def test_a_second_sigterm_while_stopping_ends_the_demo_without_a_traceback(tmp_path):
    """Given a demo stopping after SIGTERM, when a second SIGTERM comes (an impatient user), then the
    stop goes on and the demo exits cleanly, with no traceback."""
    def twice(demo, output):
        demo.send_signal(signal.SIGTERM)
        while "Stopping the demo" not in (line := demo.stdout.readline()):
            output.append(line)
            assert line, "".join(output)
        output.append(line)
        demo.send_signal(signal.SIGTERM)

    printed = stop_a_running_demo(tmp_path, twice)
    assert "Stopping the demo" in printed
    assert "Traceback" not in printed, printed

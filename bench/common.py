"""Shared set-up for the benchmarks: a fresh database, the sandbox in its own process, a connection.

Each benchmark is a script: `python bench/<name>.py [--database sqlite|postgres]`. It prints its
figures; nothing here asserts a speed.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SANDBOX_KEY = "bench-sandbox-key-0123456789"
PG_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/loyaltysync_bench")

# Ten mapped fields of mixed Braze types.
BENCH_MAPPINGS = [
    ("first_name", "first_name"),  # string
    ("email", "email"),  # string
    ("birth_date", "dob"),  # date
    ("points_spendable", "loyalty_points"),  # integer
    ("purchase_total", "loyalty_purchase_total"),  # float
    ("opted_in", "loyalty_opted_in"),  # boolean
    ("tier", "loyalty_tier"),  # string
    ("custom.interests", "loyalty_interests"),  # array
    ("custom.preferences", "loyalty_preferences"),  # object
    ("custom.children", "loyalty_children"),  # array of objects
]


# Measured as deployed: DEBUG off (with DEBUG on, Django formats and keeps every statement it runs).
# The API is called in-process over plain HTTP, so no HTTPS redirect.
PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "bench-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz",
    "BRAZE_ENCRYPTION_KEYS": "YmVuY2gtb25seS1rZXktMDEyMzQ1Njc4OWFiY2RlZmc=",
    "ALLOWED_HOSTS": "testserver,localhost,127.0.0.1",
    "SECURE_SSL_REDIRECT": "0",
}


def database_url(kind: str) -> str:
    if kind == "postgres":
        return PG_URL
    return f"sqlite:///{ROOT / 'var' / 'bench.sqlite3'}"


def setup_django(kind: str, *, redis_url: str = "", fresh: bool = True) -> None:
    """Point Django at a fresh benchmark database and migrate it."""
    url = database_url(kind)
    os.environ.update({"DATABASE_URL": url, "REDIS_URL": redis_url, "LOG_LEVEL": "WARNING",
                       "DJANGO_SETTINGS_MODULE": "loyaltysync.settings", **PRODUCTION_ENV})
    if fresh:
        if kind == "postgres":
            name = url.rsplit("/", 1)[1].split("?")[0]
            admin = url.rsplit("/", 1)[0] + "/postgres"
            subprocess.run(["psql", admin, "-qc", f"DROP DATABASE IF EXISTS {name}"], check=True,
                           stdout=subprocess.DEVNULL)
            subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {name}"], check=True, stdout=subprocess.DEVNULL)
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def allow_local_endpoint(url: str) -> None:
    """Let the connection (here, and in workers started from here) use the sandbox at ``url``."""
    from django.conf import settings

    os.environ["BRAZE_LOCAL_ENDPOINTS"] = url
    if settings.configured:
        settings.BRAZE_LOCAL_ENDPOINTS = [url]


@contextmanager
def sandbox_process(*extra: str):
    """The sandbox in a process of its own (its own core, not this one's GIL)."""
    import requests

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "braze_integration.sandbox", "--port", str(port),
                                "--api-key", SANDBOX_KEY, "--rate-limit", "1000000/1s", *extra],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    allow_local_endpoint(url)
    deadline = time.monotonic() + 20
    while True:
        try:
            requests.get(f"{url}/sandbox/stats", timeout=1)
            break
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(10)


def create_custom_fields() -> None:
    from loyaltysync.models import CustomField

    for key, label, kind in (("interests", "Interests", "array"), ("preferences", "Preferences", "object"),
                             ("children", "Children", "array_of_objects")):
        CustomField.objects.get_or_create(key=key, defaults={"label": label, "type": kind})


def create_connection(url: str, *, rate_limit: tuple[int, int] = (3000, 3)):
    from braze_integration import services
    from braze_integration.models import Connection, ConnectionStatus, FieldMapping

    create_custom_fields()
    Connection.objects.filter(active=True).update(active=False)
    connection = Connection(name="bench", instance_url=url, status=ConnectionStatus.CONNECTED,
                            rate_limit_requests=rate_limit[0], rate_limit_seconds=rate_limit[1])
    connection.set_api_key(SANDBOX_KEY)
    connection.save()
    FieldMapping.objects.bulk_create(FieldMapping(connection=connection, loyalty_field=f, remote_field=r, position=i)
                                     for i, (f, r) in enumerate(BENCH_MAPPINGS))
    services.sync_config_invalidate()
    return connection


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def _wait_for_cluster(timeout: float = 60.0) -> None:
    """Until the cluster has run a task: its workers are up and polling (a fixed sleep was sometimes
    too short, and the first measured run then included the cluster's start)."""
    from django_q.tasks import async_task, result

    task_id = async_task("time.time", q_options={"task_name": "bench-cluster-ready"})
    if result(task_id, wait=int(timeout * 1000)) is None:
        raise RuntimeError(f"the qcluster ran no task within {timeout:.0f} s (see var/bench-worker.log)")


@contextmanager
def worker_process(*, redis_url: str = "", workers: int = 2):
    """A `manage.py qcluster` on the benchmark database."""
    env = {**os.environ, "REDIS_URL": redis_url, "Q_WORKERS": str(workers), "Q_POLL": "0.05"}
    log = open(ROOT / "var" / "bench-worker.log", "a")  # noqa: SIM115
    process = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "qcluster"], cwd=ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    _wait_for_cluster()
    try:
        yield process
    finally:
        import signal

        process.send_signal(signal.SIGTERM)  # to qcluster itself, as systemd does (deploy/): it stops the rest
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def descendants_cpu_seconds() -> float:
    """CPU time (user + system) used so far by this process's descendants that still run: the
    sandbox, the qcluster and its workers (Linux: read from /proc; 0.0 elsewhere)."""
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0.0
    parents, ticks = {}, {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[pid], ticks[pid] = int(fields[1]), int(fields[11]) + int(fields[12])
    mine, frontier = set(), [os.getpid()]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in mine]
        mine.update(children)
        frontier.extend(children)
    return sum(ticks[pid] for pid in mine) / os.sysconf("SC_CLK_TCK")

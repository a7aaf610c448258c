"""`make demo`: everything on the embedded defaults (SQLite, django-q2's ORM broker), no servers needed.

Migrates, loads the demo program, starts the local Braze sandbox, a django-q2 worker and the web
server, connects to the sandbox with mappings of every Braze type, runs the initial sync and
prints where to look. Ctrl-C stops everything.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from braze_integration import queue, services
from braze_integration.models import Connection, FieldMapping, MemberSyncState, SyncStatus
from loyaltysync.models import Member

DEMO_KEY = "demo-sandbox-key-0000-1111-2222"
DEMO_MAPPINGS = [
    ("first_name", "first_name"),
    ("email", "email"),
    ("points_spendable", "loyalty_points"),
    ("points_pending", "loyalty_points_pending"),
    ("purchase_total", "loyalty_purchase_total"),
    ("tier", "loyalty_tier"),
    ("opted_in", "loyalty_opted_in"),
    ("tier_since", "loyalty_tier_since"),
    ("last_purchase_products", "loyalty_last_products"),
    ("loyalty_summary", "loyalty_summary"),
    ("last_purchase_items", "loyalty_last_items"),
    ("points_to_next_tier", "loyalty_points_to_next_tier"),
]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Command(BaseCommand):
    help = "Run the demo: sandbox, worker and web server with demo data (Ctrl-C stops it)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000, help="web server port (default 8000)")
        parser.add_argument(
            "--sandbox-port", type=int, default=9400, help="Braze sandbox port (default 9400)"
        )
        parser.add_argument(
            "--exit-after-sync",
            action="store_true",
            help="stop once the initial sync is done (used by the tests)",
        )

    def handle(self, *args, port: int, sandbox_port: int, exit_after_sync: bool, **options):
        # SIGTERM (a service manager, `kill`) stops the demo like Ctrl-C, at any stage: children are stopped too;
        # a second signal while it stops is let pass (see _stop_on_signal).
        global _stopping
        _stopping = False
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _stop_on_signal)
        for name, number in (("--port", port), ("--sandbox-port", sandbox_port)):
            if not _port_free(number):
                raise CommandError(
                    f"Port {number} is in use ({name}); stop what runs there or pick another port."
                )
        sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        # The sandbox's URL only: any other loopback port stays refused.
        settings.BRAZE_LOCAL_ENDPOINTS = [sandbox_url]
        call_command("migrate", verbosity=0)
        self._load_demo_data()
        password = self._ensure_admin()
        token = self._ensure_token()

        env = {**os.environ, "BRAZE_LOCAL_ENDPOINTS": sandbox_url, "PYTHONUNBUFFERED": "1"}
        manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
        children: list[subprocess.Popen] = []
        try:
            children.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "braze_integration.sandbox",
                        "--port",
                        str(sandbox_port),
                        "--api-key",
                        DEMO_KEY,
                    ],
                    env=env,
                    cwd=settings.BASE_DIR,
                )
            )
            self._wait_for(f"{sandbox_url}/sandbox/stats", "the Braze sandbox")
            connection = self._ensure_connection(sandbox_url)
            result = services.connection_verify(connection=connection)
            self.stdout.write(f"Connect: {result.message}")
            children.append(subprocess.Popen([*manage, "qcluster"], env=env, cwd=settings.BASE_DIR))
            if not exit_after_sync:
                children.append(
                    subprocess.Popen(
                        [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"],
                        env=env,
                        cwd=settings.BASE_DIR,
                    )
                )
            self._initial_sync(sandbox_url)
            if exit_after_sync:
                return
            self._wait_for(f"http://127.0.0.1:{port}/admin/login/", "the web server")
            self._banner(port, sandbox_url, password, token)
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
            raise CommandError("A demo process stopped unexpectedly; see its output above.")
        except KeyboardInterrupt:
            self.stdout.write("\nStopping the demo…")
        finally:
            _stop(children)

    def _load_demo_data(self) -> None:
        if Member.objects.exists():
            self.stdout.write("Demo data already loaded.")
            return
        call_command("loaddata", "demo.json", "workflows.json", verbosity=0)  # the apps' fixtures/ (package data)
        self.stdout.write(f"Loaded the demo program: {Member.objects.count()} members.")

    def _ensure_admin(self) -> str:
        User = get_user_model()
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.com", "admin")
            return "admin"
        return "(the password you set)"

    def _ensure_token(self) -> str:
        """The token of the demo shop's API user: it may send events, read and write members (the API's scopes),
        and nothing else."""
        from django.contrib.auth.models import Group, Permission
        from rest_framework.authtoken.models import Token

        user, created = get_user_model().objects.get_or_create(username="demo-shop")
        if created:
            user.set_unusable_password()  # an API user: it never logs in to the admin
            user.save(update_fields=["password"])
        user.groups.add(*Group.objects.filter(name__in=["API: events sender", "API: members reader"]))
        user.user_permissions.add(Permission.objects.get(content_type__app_label="loyaltysync", codename="write_members"))
        return Token.objects.get_or_create(user=user)[0].key

    def _ensure_connection(self, sandbox_url: str) -> Connection:
        with transaction.atomic():
            connection = Connection.objects.filter(active=True).first() or Connection(
                name="Braze sandbox (demo)"
            )
            connection.instance_url = sandbox_url
            connection.set_api_key(DEMO_KEY)
            connection.app_id = "demo-app"
            connection.full_clean()
            connection.save()
            if not connection.mappings.exists():
                FieldMapping.objects.bulk_create(
                    FieldMapping(
                        connection=connection, loyalty_field=field, remote_field=remote, position=index
                    )
                    for index, (field, remote) in enumerate(DEMO_MAPPINGS)
                )
                for index, key in enumerate(
                    ("favourite_store", "shoe_size", "newsletter", "interests", "preferences", "children")
                ):
                    if Member.objects.filter(custom_fields__has_key=key).exists():
                        FieldMapping.objects.get_or_create(
                            connection=connection,
                            remote_field=f"loyalty_{key}",
                            defaults={"loyalty_field": f"custom.{key}", "position": 100 + index},
                        )
        services.sync_config_invalidate()
        return connection

    def _initial_sync(self, sandbox_url: str) -> None:
        ids = list(Member.objects.values_list("pk", flat=True))
        with transaction.atomic():
            services.member_sync_enqueue(member_ids=ids)
        self.stdout.write(f"Initial sync of {len(ids)} members through the worker…")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            queue.changes_fold_for_reading()
            pending = MemberSyncState.objects.filter(status=SyncStatus.PENDING).count()
            if not pending:
                break
            time.sleep(0.5)
        users = requests.get(f"{sandbox_url}/sandbox/stats", timeout=5).json().get("users")
        failed = MemberSyncState.objects.filter(status__in=[SyncStatus.FAILED, SyncStatus.DEAD]).count()
        self.stdout.write(f"Initial sync done: the sandbox holds {users} profiles; {failed} members failed.")

    def _wait_for(self, url: str, what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                requests.get(url, timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.2)
        raise CommandError(f"{what} did not start within {timeout:.0f}s at {url}")

    def _banner(self, port: int, sandbox_url: str, password: str, token: str) -> None:
        self.stdout.write(
            self.style.SUCCESS(f"""
loyaltysync demo is running (Ctrl-C stops it)
  Admin:            http://127.0.0.1:{port}/admin/   login admin / {password}
  Braze dashboard:  http://127.0.0.1:{port}/admin/braze_integration/connection/
  Braze sandbox:    {sandbox_url}/sandbox/   (the profiles Braze would hold)
  REST API docs:    http://127.0.0.1:{port}/api/docs/   token {token}
Try: edit a member's first name or points in the admin, then reload its profile in the sandbox; or
  curl -H 'Authorization: Token {token}' -H 'Content-Type: application/json' \\
       -d '{{"customer": "demo-001", "action": "checkout", "data": {{"transaction_id": "t-{int(time.time())}", "total": 80, "currency": "EUR", "items": []}}}}' \\
       http://127.0.0.1:{port}/api/v1/events
""")
        )


_stopping = False


def _stop_on_signal(signum, frame):
    """Ctrl-C or SIGTERM: the first one stops the demo (``KeyboardInterrupt``, caught in ``handle``).
    Another one while it stops (an impatient user, a terminal that signals the whole group) is let
    pass: raising again in the middle of stopping would leave a traceback and could leave the worker's
    processes behind. Each process still has at most 10 s to finish."""
    global _stopping
    if not _stopping:
        _stopping = True
        raise KeyboardInterrupt


def _stop(children: list[subprocess.Popen]) -> None:
    """Stop the demo's processes, each given 10 s to finish."""
    global _stopping
    _stopping = True
    for child in children:
        child.terminate()
    for child in children:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()

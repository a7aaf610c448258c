"""`manage.py braze_status`: the sync's health in numbers (the same as the admin dashboard)."""

import json

from django.core.management.base import BaseCommand

from braze_integration import services


class Command(BaseCommand):
    help = ("Print pending members, the oldest pending age, failures by kind, dead letters, the connection's "
            "state, when a worker last ran, the last successful send and any alarm.")

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print JSON")

    def handle(self, *args, **options):
        summary = services.sync_status_summary()
        if options["json"]:
            self.stdout.write(json.dumps(summary, indent=2, sort_keys=True))
            return
        c, m = summary["connection"], summary["members"]
        self.stdout.write(
            f"Connection:      {c['name'] or '-'}: {c['status']}"
            + (f" — {c['message']}" if c["message"] else "")
        )
        if c["paused_until"]:
            self.stdout.write(f"Paused until:    {c['paused_until']}")
        self.stdout.write(
            f"Members:         {m['synced']} synced, {m['pending']} pending, {m['failed']} failed, "
            f"{m['dead']} dead letters"
        )
        self.stdout.write(f"Oldest pending:  {summary['oldest_pending_seconds']:.0f}s")
        self.stdout.write(
            f"Outbox pending:  {summary['outbox_pending']} events, purchases or ad-hoc attributes not yet sent; "
            f"oldest {summary['oldest_outbox_pending_seconds']:.0f}s"
        )
        for name, backlog in summary["upstream"].items():
            self.stdout.write(f"{name + ':':<16} {backlog['waiting']} not yet run; oldest {backlog['oldest_seconds']:.0f}s")
        self.stdout.write(f"Worker seen:     {_ago(summary['worker_last_seen'], summary['worker_last_seen_seconds'])}")
        self.stdout.write(f"Last success:    {_ago(summary['last_success'], summary['last_success_seconds'])}")
        outbox = summary["outbox"]
        self.stdout.write(
            f"Events/outbox:   {outbox.get('sent', 0)} sent, {outbox.get('pending', 0)} pending, "
            f"{outbox.get('failed', 0)} failed, {outbox.get('dead', 0)} dead; "
            f"{summary['ambiguous_event_sends']} possibly duplicated (answer lost)"
        )
        self.stdout.write(
            f"Today:           {summary['requests_today']} requests, {summary['objects_today']} objects"
        )
        errors = ", ".join(f"{k} {v}" for k, v in sorted(summary["errors_today"].items()) if v) or "none"
        self.stdout.write(f"Errors today:    {errors}")
        for message in summary["alarms"].values():
            self.stdout.write(self.style.ERROR(f"ALARM:           {message}"))


def _ago(when: str | None, seconds: float | None) -> str:
    return f"{seconds:.0f}s ago ({when})" if when and seconds is not None else "never"

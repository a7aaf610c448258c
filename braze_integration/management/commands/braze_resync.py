"""`manage.py braze_resync`: push members to Braze again (after a new mapping, a workspace move, an outage)."""

from __future__ import annotations

import json
from datetime import datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.timezone import make_aware
from tqdm import tqdm

from braze_integration import interrupts, resync, resync_parallel
from loyaltysync import collector


def _parse_since(text: str):
    try:  # Django's parsers raise ValueError for a date written right that does not exist (2026-02-30)
        parsed = parse_datetime(text)
        day = parse_date(text) if parsed is None else None
    except ValueError as err:
        raise CommandError(f"--since: {text!r} is no date or time that exists ({err}).") from None
    if parsed is None:
        if day is None:
            raise CommandError(f"--since: {text!r} is not a date (YYYY-MM-DD) or an ISO date-time.")
        parsed = datetime(day.year, day.month, day.day)
    return parsed if parsed.tzinfo else make_aware(parsed)


class Command(BaseCommand):
    help = "Send members' mapped fields to Braze again: all of them or a selection."

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="every member")
        parser.add_argument("--member", nargs="+", default=[], metavar="ID", help="these member ids")
        parser.add_argument("--since", help="members changed since DATE (YYYY-MM-DD or ISO date-time)")
        parser.add_argument("--tier", help="members of this tier (by name)")
        parser.add_argument(
            "--fields", help="only these mapped fields (comma-separated Braze attribute names)"
        )
        parser.add_argument(
            "--clear", metavar="ATTR[,ATTR]",
            help="remove these attributes (no longer mapped) from Braze: null to every member it was sent to",
        )
        parser.add_argument("--force", action="store_true", help="send even what Braze already has")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="send nothing: print how many members, requests and data points it would take",
        )
        parser.add_argument(
            "--batch-size", type=int, help="objects per request (1-75; default the connection's)"
        )
        parser.add_argument("--resume", action="store_true", help="go on with the last interrupted resync")
        parser.add_argument(
            "--in-process",
            action="store_true",
            help="send from this process only (by default the members are split into key ranges that every "
            "qcluster worker sends; with no worker running this process sends them)",
        )

    def handle(self, *args, **options):
        batch_size = options["batch_size"]
        if batch_size is not None and not 1 <= batch_size <= 75:
            raise CommandError(
                "--batch-size must be between 1 and 75 (Braze takes at most 75 objects a request)."
            )
        try:
            if options["resume"]:
                run = resync.resync_last_interrupted()
                if run is None:
                    raise CommandError("--resume: there is no interrupted resync to go on with.")
                self.stdout.write(
                    f"Resuming resync #{run.pk} after {run.members_done} of {run.total} members."
                )
            else:
                selection = resync.Selection(
                    all=options["all"],
                    member_ids=options["member"],
                    since=_parse_since(options["since"]) if options["since"] else None,
                    tier=options["tier"],
                    fields=[f.strip() for f in (options["fields"] or "").split(",") if f.strip()],
                    clear=[f.strip() for f in (options["clear"] or "").split(",") if f.strip()],
                )
                if options["clear"] is not None and not selection.clear:
                    raise CommandError("--clear: name the attributes to remove, e.g. --clear loyalty_points,vip.")
                if options["dry_run"]:
                    return self._dry_run(selection, options["force"], batch_size)
                run = resync.resync_start(selection=selection, force=options["force"], batch_size=batch_size)
                if selection.clear_alone and run.total == 0:
                    self.stderr.write(f"--clear: no member's profile was sent {', '.join(selection.clear)}, so there "
                                      "is nothing to remove (is a name misspelt?).")
            self._execute(run, in_process=options["in_process"])
        except resync.ResyncError as err:
            raise CommandError(str(err)) from None

    def _dry_run(self, selection, force, batch_size):
        report = resync.resync_dry_run(selection=selection, force=force, batch_size=batch_size)
        self.stdout.write(
            f"Dry run (nothing sent): {report.members} members selected; {report.would_send} would be sent, "
            f"{report.unchanged} unchanged, {report.unsendable} cannot be sent; "
            f"{report.requests} requests, {report.data_points} data points."
        )
        if report.member_ids:
            more = report.would_send - len(report.member_ids)
            self.stdout.write("Members: " + ", ".join(report.member_ids) + (f" and {more} more" if more else ""))
        for error in report.errors:
            self.stdout.write(f"  cannot send {error}")
        if report.sample:
            self.stdout.write("Sample payload:\n" + json.dumps(report.sample, indent=2, ensure_ascii=False))

    def _execute(self, run, *, in_process: bool):
        bar = tqdm(
            total=run.total,
            initial=run.members_done,
            unit="member",
            dynamic_ncols=True,
            disable=None,
            file=self.stderr._out,
        )

        def progress(done, current):
            bar.update(done)
            bar.set_postfix(sent=current.members_sent, failed=current.members_failed, refresh=False)

        # A run started in one process goes on in one process (its cursor is the run's own); one started as
        # parts goes on as parts, here when --in-process (or parts are off) and its cursor means nothing.
        on_workers = not in_process and settings.BRAZE_RESYNC_PICKUP_SECONDS > 0
        has_parts = run.parts.exists()
        parallel = has_parts or (on_workers and run.members_done == 0 and resync_parallel.workers_running())
        try:
            # SIGTERM (systemd, a container's stop, ``kill``) stops the run as Ctrl-C does, and either stops
            # it where nothing is half done: the answers on their way are recorded, the claims given back and
            # the run marked interrupted, ready for --resume.
            with interrupts.stopping_at_safe_points():
                if parallel:
                    run = resync_parallel.resync_parallel_execute(run=run, progress=progress, local=not on_workers)
                else:
                    collector.freeze_startup()  # this process sends: full collections skip Django's objects
                    run = resync.resync_execute(run=run, progress=progress)
        except KeyboardInterrupt:
            bar.close()
            self.stderr.write(
                f"Interrupted after {run.members_done} of {run.total} members; "
                "run `manage.py braze_resync --resume` to go on."
            )
            raise SystemExit(130) from None
        finally:
            bar.close()
        rate = run.members_done / run.elapsed_seconds if run.elapsed_seconds else 0.0
        self.stdout.write(
            self.style.SUCCESS(
                f"Resync #{run.pk} done: {run.members_done} members in {run.elapsed_seconds:.1f}s ({rate:,.0f}/s); "
                f"sent {run.members_sent}, unchanged {run.members_unchanged}, failed {run.members_failed}; "
                f"{run.requests} requests, {run.data_points} data points."
            )
        )

"""`manage.py braze_config export|import`: the connection, field mappings and workflows as one JSON file."""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from braze_integration.config import API_KEY_ENV_DEFAULT, WORKSPACE_CHANGED, ConfigInvalid
from workflows import config


class Command(BaseCommand):
    help = (
        "Configuration as code: export the Braze connection (without its API key), field mappings and workflows "
        "as JSON, or import such a file (validated as in the admin; all or nothing)."
    )

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="{export,import}")
        export = actions.add_parser("export", help="write the configuration as JSON (stdout without FILE)")
        export.add_argument("file", nargs="?", metavar="FILE")
        export.add_argument(
            "--api-key-env", default=API_KEY_ENV_DEFAULT, metavar="NAME",
            help=f"the environment variable the file names for the API key (default {API_KEY_ENV_DEFAULT})",
        )
        apply = actions.add_parser("import", help="apply a configuration file (FILE, or - for stdin)")
        apply.add_argument("file", metavar="FILE")
        apply.add_argument("--dry-run", action="store_true", help="print what would change and change nothing")

    def handle(self, *args, **options):
        if options["action"] == "export":
            self._export(options["file"], options["api_key_env"])
        else:
            self._import(options["file"], dry_run=options["dry_run"])

    def _export(self, path: str | None, api_key_env: str) -> None:
        text = config.config_export(api_key_env=api_key_env)
        if path is None:
            self.stdout.write(text, ending="")
            return
        Path(path).write_text(text, encoding="utf-8")
        self.stderr.write(f"Wrote {path}.")

    def _import(self, path: str, *, dry_run: bool) -> None:
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise CommandError(f"Cannot read {path}: {err}") from None
        try:
            report = config.config_import(text=text, dry_run=dry_run)
        except ConfigInvalid as err:
            count = len(err.problems)
            lines = "\n".join(f"  {problem}" for problem in err.problems)
            noun = "problem" if count == 1 else "problems"
            raise CommandError(f"{path}: {count} {noun}; nothing was changed.\n{lines}") from None
        for warning in report.warnings:
            self.stderr.write(self.style.WARNING(f"Warning: {warning}"))
        if not report.changes:
            self.stdout.write("No changes: the configuration is already the file's.")
            return
        self.stdout.write("Would change (dry run, nothing was changed):" if dry_run else "Changed:")
        for change in report.changes:
            self.stdout.write(f"  {change}")
        if report.workspace_changed:
            self.stdout.write(self.style.WARNING(WORKSPACE_CHANGED))
            self.stdout.write(f"{'After importing, s' if dry_run else 'S'}end every member: `python manage.py "
                              f"braze_resync --all` ({report.full_resync_cost}).")
            return  # the full resync covers the new mappings too
        if report.remote_fields_to_resync:
            fields = ",".join(report.remote_fields_to_resync)
            self.stdout.write(
                f"Braze does not have the values of new or changed mappings for existing members yet: "
                f"{'after importing, ' if dry_run else ''}check with `python manage.py braze_resync --all "
                f"--fields {fields} --dry-run`, then run it without --dry-run."
            )
        if report.remote_fields_to_clear:
            names = ",".join(report.remote_fields_to_clear)
            self.stdout.write(
                f"Removed mappings leave their attributes in Braze's profiles: {'after importing, ' if dry_run else ''}"
                f"check with `python manage.py braze_resync --clear {names} --dry-run`, then run it without --dry-run."
            )

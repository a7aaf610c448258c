"""`manage.py import_members FILE`: create or update members in bulk from CSV or JSON lines.

Every row goes through ``services.member_import_row`` (the same validation as the API and the
admin), each in its own savepoint: a bad row is reported with its line number and the reason and never stops
the good ones. Saved members are synced like any other change. The command exits non-zero when any row was
rejected (after keeping the good ones, and saying so), so scripts notice.

CSV: a header row; `member_id` plus the profile attributes' columns (``attributes.PROFILE_FIELDS``)
and custom fields as `custom.<key>` columns. An
empty cell leaves the value as it is. JSON lines: one object a line with the same keys, custom
fields either as `custom.<key>` keys or in a `custom_fields` object.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from loyaltysync import services
from loyaltysync.errors import LoyaltyError
from loyaltysync.models import CustomField

BATCH = 500  # rows per transaction; each row has its own savepoint inside it


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


def _rows(path: Path, fmt: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, row) pairs; a row that cannot be read at all comes as its error message."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        if fmt == "csv":
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "member_id" not in reader.fieldnames:
                raise CommandError(f"{path}: the CSV header must have a member_id column.")
            for row in reader:
                if None in row:
                    yield reader.line_num, "has more cells than the header"
                    continue
                yield reader.line_num, {k: v for k, v in row.items() if v not in ("", None)}
        else:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    yield number, f"is not valid JSON ({err.msg} at column {err.colno})"
                    continue
                if not isinstance(row, dict):
                    yield number, "must be a JSON object"
                    continue
                yield number, row


def _describe(err: LoyaltyError) -> str:
    errors = getattr(err, "field_errors", None) or err.errors
    if errors:
        return "; ".join(f"{path}: {' '.join(messages)}" for path, messages in errors.items())
    return err.message


def import_rows(rows: Iterator[tuple[int, dict[str, Any] | str]], *, progress=None) -> ImportReport:
    report = ImportReport()
    custom_types = dict(CustomField.objects.values_list("key", "type"))
    batch: list[tuple[int, dict[str, Any] | str]] = []

    def flush() -> None:
        with transaction.atomic():
            for number, row in batch:
                if isinstance(row, str):
                    report.errors.append((number, row))
                    continue
                try:
                    with transaction.atomic():  # a savepoint: a bad row rolls back alone
                        outcome = services.member_import_row(row=row, custom_types=custom_types)
                    setattr(report, outcome, getattr(report, outcome) + 1)
                except LoyaltyError as err:
                    report.errors.append((number, _describe(err)))
        if progress is not None:
            progress.update(len(batch))
        batch.clear()

    for item in rows:
        batch.append(item)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    return report


class Command(BaseCommand):
    help = ("Create or update members from a CSV or JSON lines file; bad rows are reported and skipped, and the "
            "command then exits non-zero.")

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--format", choices=["csv", "jsonl"], help="default: from the file name (.csv, .jsonl)")

    def handle(self, *args, file: Path, format: str | None, **options):  # noqa: A002 (the option's name)
        if not file.is_file():
            raise CommandError(f"{file}: no such file.")
        suffix = file.suffix.lower()
        fmt = format or {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}.get(suffix)
        if fmt is None:
            raise CommandError(f"{file}: cannot tell the format from the name; pass --format csv or --format jsonl.")
        with file.open("rb") as handle:
            total = max(0, sum(1 for _ in handle) - (1 if fmt == "csv" else 0))
        with tqdm(total=total, unit="row", disable=None, file=self.stderr._out) as progress:
            report = import_rows(_rows(file, fmt), progress=progress)
        for number, reason in report.errors:
            self.stderr.write(f"{file}:{number}: {reason}")
        summary = (f"Imported {file}: {report.created} created, {report.updated} updated, {report.unchanged} unchanged, "
                   f"{len(report.errors)} rejected.")
        if report.errors:
            kept = report.created + report.updated + report.unchanged
            raise CommandError(f"{summary} The {kept} good row(s) were kept; fix the rejected rows and import them again.")
        self.stdout.write(self.style.SUCCESS(summary))

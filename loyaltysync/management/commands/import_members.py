"""`manage.py import_members FILE`: create or update members in bulk from CSV or JSON lines.

Every row goes through ``services.member_import_row`` (the same validation as the API and the
admin), each in its own savepoint: a bad row is reported with its line number and the reason and never stops
the good ones. Saved members are synced like any other change. The command exits non-zero when any row was
rejected (after keeping the good ones, and saying so), so scripts notice.

CSV: a header row, each column named once; `member_id` plus the profile attributes' columns (``attributes.PROFILE_FIELDS``)
and custom fields as `custom.<key>` columns. An
empty cell leaves the value as it is. JSON lines: one object a line with the same keys, custom
fields either as `custom.<key>` keys or in a `custom_fields` object.

The file must be UTF-8 (a BOM is fine). Each line is checked on its own: a row with a line that is not UTF-8 is
a bad row like any other; a header that is not UTF-8, or a UTF-16 file, is refused before anything is imported.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from loyaltysync import services
from loyaltysync.api.parsers import object_without_repeated_keys
from loyaltysync.attributes import CUSTOM_FIELDS
from loyaltysync.errors import LoyaltyError
from loyaltysync.models import CustomField
from loyaltysync.services.members import IMPORT_CUSTOM_PREFIX

BATCH = 500  # rows per transaction; each row has its own savepoint inside it


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


# Bad bytes are read as lone surrogates (``surrogateescape``), so a line that is not UTF-8 costs only its own row;
# valid UTF-8 never decodes to these code points.
_NOT_UTF8 = re.compile("[\udc80-\udcff]")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _utf8_problem(line: str) -> str | None:
    """Why a line read with ``surrogateescape`` is not UTF-8 text, or None when it is."""
    if not _NOT_UTF8.search(line):
        return None
    raw = line.encode("utf-8", "surrogateescape")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return f"is not UTF-8 text (byte 0x{raw[err.start]:02x} at byte {err.start + 1} of the line); save the file as UTF-8"
    return "is not UTF-8 text; save the file as UTF-8"


def _checked_lines(handle: Iterator[str], problems: dict[int, str]) -> Iterator[str]:
    """The file's lines, noting in ``problems`` (by line number) each one that is not UTF-8."""
    for number, line in enumerate(handle, start=1):
        problem = _utf8_problem(line)
        if problem:
            problems[number] = problem
        yield line


def _rows(path: Path, fmt: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, row) pairs; a row that cannot be read at all comes as its error message."""
    with path.open("rb") as raw:
        if raw.read(2) in _UTF16_BOMS:
            raise CommandError(f"{path}: the file is UTF-16 text, not UTF-8; save it as UTF-8 and import it again.")
    problems: dict[int, str] = {}
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        lines = _checked_lines(handle, problems)
        if fmt == "csv":
            yield from _csv_rows(path, lines, problems)
            return
        for number, line in enumerate(lines, start=1):
            if number in problems:
                yield number, problems[number]
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line, object_pairs_hook=object_without_repeated_keys)
            except json.JSONDecodeError as err:
                yield number, f"is not valid JSON ({err.msg} at column {err.colno})"
                continue
            except ValueError as err:  # a key twice: the last value would win without a word, as in the API
                yield number, f"is not valid JSON ({err})"
                continue
            except RecursionError:
                yield number, "is not valid JSON (nested too deeply)"
                continue
            if not isinstance(row, dict):
                yield number, "must be a JSON object"
                continue
            yield number, row


def _csv_rows(path: Path, lines: Iterator[str], problems: dict[int, str]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    # strict: a quote that is never closed, or closed before anything but a comma (a quote left open that
    # ran into a later row), is an error rather than text read on into the rows after it.
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as err:
        raise CommandError(f"{path}: the header is not valid CSV ({err}). Nothing was imported.") from None
    if problems:
        raise CommandError(f"{path}: the header (line 1) {problems[min(problems)]} and import it again.")
    if not header or "member_id" not in header:
        raise CommandError(f"{path}: the CSV header must have a member_id column.")
    # With a column named twice, one of the two values would be dropped without a word.
    duplicated = sorted({name for name in header if name.strip() and header.count(name) > 1})
    if duplicated:
        raise CommandError(f"{path}: the CSV header names {', '.join(duplicated)} more than once; "
                           "each column must appear once. Nothing was imported.")
    last = reader.line_num
    while True:
        # A quoted cell may span lines: the record is lines first .. reader.line_num.
        first = last + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            last = reader.line_num
            span = f"Lines {first}-{last} were" if last > first else f"Line {first} was"
            yield first, f"is not valid CSV up to line {last} ({err}; is a quote left open?). {span} not imported."
            continue
        bad = [number for number in range(first, reader.line_num + 1) if number in problems]
        last = reader.line_num
        if bad:
            yield bad[0], problems[bad[0]]
            continue
        if not cells:
            continue
        if reader.line_num > first and (spanning := _spanning_cell(header, cells)):
            # A quote left open reads the lines after it into one cell, and the row's other cells from
            # a later line: refuse the record rather than create a member of pieces of several.
            yield first, (f"has a quoted {spanning} cell that runs on to line {reader.line_num} (is its closing "
                          f"quote missing?); a {spanning} is one line. Lines {first}-{reader.line_num} were not imported.")
            continue
        if len(cells) > len(header):
            yield reader.line_num, "has more cells than the header"
            continue
        yield reader.line_num, {name: value for name, value in zip(header, cells, strict=False) if value != ""}


def _spanning_cell(header: list[str], cells: list[str]) -> str | None:
    """The first column whose cell holds a line break but cannot (custom fields' text may)."""
    for name, value in zip(header, cells, strict=False):
        if ("\n" in value or "\r" in value) and not name.startswith((IMPORT_CUSTOM_PREFIX, CUSTOM_FIELDS)):
            return name
    return None


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

"""`manage.py erase_members ID... | --file F`: erase members (the right to be forgotten).

Each id goes through ``services.member_erase`` (the same policy as the API and the admin). An id that
matches no member is reported and the others are still erased; the command then exits non-zero.
"""

from __future__ import annotations

import getpass
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from loyaltysync import services
from loyaltysync.errors import LoyaltyError
from loyaltysync.models import EventSource


class Command(BaseCommand):
    help = "Erase members: delete their personal data and history, and their Braze profiles. Cannot be undone."

    def add_arguments(self, parser):
        parser.add_argument("member_ids", nargs="*", metavar="ID")
        parser.add_argument("--file", type=Path, help="A file with one member id a line.")
        parser.add_argument("--by", default="", help="Who asked (kept in the erasure log; default: the OS user).")

    def handle(self, *args, member_ids: list[str], file: Path | None, by: str, **options):
        ids = list(member_ids)
        if file is not None:
            if file.is_dir():
                raise CommandError(f"--file {file}: is a directory; give a file with one member id a line.")
            if not file.is_file():
                raise CommandError(f"--file {file}: no such file.")
            try:
                text = file.read_text(encoding="utf-8-sig")
            except UnicodeDecodeError as err:
                line = file.read_bytes()[:err.start].count(b"\n") + 1
                raise CommandError(f"--file {file}: line {line} is not UTF-8 text; save the file as UTF-8. "
                                   "Nobody was erased.") from None
            ids += [line.strip() for line in text.splitlines() if line.strip()]
        if not ids:
            raise CommandError("Name the members to erase: erase_members ID ... or --file FILE.")
        erased_by = by or f"{getpass.getuser()} (command)"
        failed = []
        for member_id in dict.fromkeys(ids):  # each once, in the order given
            try:
                services.member_erase(member_id=member_id, erased_by=erased_by, source=EventSource.SHELL)
            except LoyaltyError as error:
                failed.append(member_id)
                self.stderr.write(f"{member_id}: {error.message}")
            else:
                self.stdout.write(f"{member_id}: erased")
        erased = len(dict.fromkeys(ids)) - len(failed)
        if failed:
            raise CommandError(f"Erased {erased} member(s); {len(failed)} not found: {', '.join(failed)}.")
        self.stdout.write(self.style.SUCCESS(f"Erased {erased} member(s)."))

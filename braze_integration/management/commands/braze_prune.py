"""`manage.py braze_prune`: delete the sync's old log rows (what the daily schedule runs)."""

from django.core.management.base import BaseCommand, CommandError

from braze_integration import pruning

LABELS = {
    "request_members": "per-member request rows",
    "requests": "sync requests",
    "sent_outbox": "sent outbox items",
    "resync_runs": "finished resync runs",
    "idempotency_keys": "idempotency keys (older than 24 h)",
}


class Command(BaseCommand):
    help = ("Delete sync requests, per-member request rows, sent outbox items and finished resync runs older "
            "than their retention (BRAZE_RETAIN_*_DAYS), and expired idempotency keys. Pending, failed and "
            "dead-lettered work, members' latest requests and unfinished resyncs are kept.")

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted; delete nothing")
        parser.add_argument("--batch-size", type=int, default=None, help="rows per DELETE (BRAZE_PRUNE_BATCH_SIZE)")

    def handle(self, *args, **options):
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError("--batch-size must be 1 or more.")
        report = pruning.sync_prune(dry_run=options["dry_run"], batch_size=options["batch_size"])
        verb = "Would delete" if report.dry_run else "Deleted"
        for kind, count in report.deleted.items():
            days = report.retention_days.get(kind)
            kept = " (kept for ever)" if days == 0 else (f" (older than {days} days)" if days else "")
            self.stdout.write(f"{verb} {count} {LABELS[kind]}{kept}")
        self.stdout.write(f"{verb} {sum(report.deleted.values())} rows in all.")

"""`manage.py braze_alerts`: check the alarms and e-mail ADMINS about each change (run it from cron
when nothing scrapes /metrics: the "no worker" alarm needs a clock that is not a worker)."""

from django.core.management.base import BaseCommand

from braze_integration import alerts


class Command(BaseCommand):
    help = "E-mail ADMINS once when a sync alarm is raised or cleared (connection needs attention, stalled work)."

    def handle(self, *args, **options):
        sent = alerts.alerts_check()
        for subject in sent:
            self.stdout.write(f"Sent: {subject}")
        if not sent:
            self.stdout.write("No change to report.")

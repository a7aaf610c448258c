"""`manage.py braze_check`: the admin's Connect button, from the shell."""

from django.core.management.base import BaseCommand, CommandError

from braze_integration import services


class Command(BaseCommand):
    help = "Check the active Braze connection's URL and API key without writing data."

    def handle(self, *args, **options):
        connection = services.connection_active()
        if connection is None:
            raise CommandError(
                "There is no active Braze connection; add one in the admin or with braze_config import."
            )
        result = services.connection_verify(connection=connection)
        self.stdout.write(f"{connection.name} ({connection.instance_url}), key {connection.api_key_display}")
        if not result.ok:
            raise CommandError(result.message)
        self.stdout.write(self.style.SUCCESS(result.message))

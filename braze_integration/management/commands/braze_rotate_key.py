"""`manage.py braze_rotate_key`: re-encrypt stored API keys with the newest BRAZE_ENCRYPTION_KEYS entry."""

from django.core.management.base import BaseCommand
from django.db import transaction

from braze_integration.models import Connection


class Command(BaseCommand):
    help = "Re-encrypt every stored Braze API key with the first key of BRAZE_ENCRYPTION_KEYS."

    def handle(self, *args, **options):
        rotated = 0
        with transaction.atomic():
            # Loading decrypts with any listed key; saving encrypts with the first (newest) one.
            for connection in Connection.objects.exclude(api_key=""):
                connection.save(update_fields=["api_key"])
                rotated += 1
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {rotated} Braze API key(s) with the newest key."))

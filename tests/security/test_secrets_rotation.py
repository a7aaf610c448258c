"""The API key at rest: encrypted, and re-encrypted by braze_rotate_key."""

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection as db

from braze_integration.models import Connection

pytestmark = pytest.mark.django_db

SECRET = "braze-rest-key-rotation-1234567890"


def stored_ciphertext(pk: int) -> str:
    with db.cursor() as cursor:
        cursor.execute(f"SELECT api_key FROM {Connection._meta.db_table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_the_key_is_stored_encrypted_and_read_back_in_clear(settings):
    settings.BRAZE_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    connection = Connection(name="x", instance_url="https://rest.fra-01.braze.eu")
    connection.set_api_key(SECRET)
    connection.save()

    assert SECRET not in stored_ciphertext(connection.pk)
    assert Connection.objects.get(pk=connection.pk).api_key == SECRET
    assert repr(Connection.objects.get(pk=connection.pk).api_key) == "'********'"


def test_rotation_re_encrypts_with_the_new_key_so_the_old_one_can_be_dropped(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.BRAZE_ENCRYPTION_KEYS = [old]
    connection = Connection(name="x", instance_url="https://rest.fra-01.braze.eu")
    connection.set_api_key(SECRET)
    connection.save()

    settings.BRAZE_ENCRYPTION_KEYS = [new, old]
    call_command("braze_rotate_key", verbosity=0)
    settings.BRAZE_ENCRYPTION_KEYS = [new]

    assert Fernet(new.encode()).decrypt(stored_ciphertext(connection.pk).encode()).decode() == SECRET
    assert Connection.objects.get(pk=connection.pk).api_key == SECRET

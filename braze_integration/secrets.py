"""The Braze API key at rest: encrypted with Fernet (AES + HMAC) from the ``cryptography`` package.

Keys come from ``BRAZE_ENCRYPTION_KEYS`` (newest first). ``MultiFernet`` decrypts with any of them
and encrypts with the first, so rotation is: put a new key in front, run
``manage.py braze_rotate_key``, then remove the old key. In development, when no key is set and
DEBUG is on, settings derive a key from SECRET_KEY so nothing needs setting up.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


def _fernet() -> MultiFernet:
    keys = list(settings.BRAZE_ENCRYPTION_KEYS)
    if not keys:
        raise ImproperlyConfigured("Set BRAZE_ENCRYPTION_KEYS (a Fernet key; see README) to store Braze API keys.")
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as err:
        raise ImproperlyConfigured("BRAZE_ENCRYPTION_KEYS holds a value that is not a Fernet key.") from err


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as err:
        raise ImproperlyConfigured(
            "The stored Braze API key cannot be decrypted with BRAZE_ENCRYPTION_KEYS (was a key removed too early?)."
        ) from err


def rotate(token: str) -> str:
    """Re-encrypt ``token`` with the newest key."""
    return _fernet().rotate(token.encode()).decode()


class SecretString(str):
    """A decrypted secret that does not show itself in reprs, logs or tracebacks."""

    def __repr__(self) -> str:
        return "'********'"


class EncryptedTextField(models.TextField):
    """Stores ciphertext; the Python value is the plaintext wrapped in ``SecretString``.

    Serializers (``dumpdata``) read ``value_to_string``, which gives the ciphertext, never the plaintext.
    """

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return value
        return SecretString(decrypt(value))

    def get_prep_value(self, value):
        if value in (None, ""):
            return value
        return encrypt(str(value))

    def value_to_string(self, obj):
        value = self.value_from_object(obj)
        return "" if value in (None, "") else "<encrypted>"

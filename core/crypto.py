"""Encryption at rest for secrets we must be able to use again (provider API keys, webhook
secrets). Fernet (AES-128-CBC + HMAC-SHA256) with keys from `FIELD_ENCRYPTION_KEYS`
(comma-separated; the first encrypts, all decrypt, so keys can be rotated) or, when unset,
one derived from SECRET_KEY."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from core.exceptions import ApplicationError


class SecretUnreadable(ApplicationError):
    code = "secret_unreadable"
    status = 500


def _fernet() -> MultiFernet:
    keys = [k.strip() for k in settings.FIELD_ENCRYPTION_KEYS if k.strip()]
    if not keys:
        digest = hashlib.sha256(("field-encryption:" + str(settings.SECRET_KEY)).encode()).digest()
        keys = [base64.urlsafe_b64encode(digest).decode()]
    return MultiFernet([Fernet(key) for key in keys])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable(
            "A stored secret cannot be decrypted with the configured FIELD_ENCRYPTION_KEYS."
        ) from exc


def mask(secret: str) -> str:
    """What a page may show of a secret: its last four characters."""
    return "••••" + secret[-4:] if len(secret) > 8 else "••••"

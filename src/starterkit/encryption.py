"""Encryption at rest for the secrets starterkit must read back (TOTP secrets), with rotation.

ENCRYPTION_KEYS lists Fernet keys, newest first: the newest encrypts, every one decrypts
(``cryptography``'s MultiFernet). Rotating is three steps: put a new key first
(``starterkit genkey --encryption-key`` makes one), run ``starterkit reencrypt`` so every stored
secret is encrypted with it, then drop the old key. Without ENCRYPTION_KEYS one key is derived
from SECRET_KEY (HKDF-SHA256), so a fresh install needs no extra step; changing SECRET_KEY then
makes the stored secrets unreadable, which ``starterkit check`` warns about in production.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# Binds the derived key to its use: the same SECRET_KEY also signs tokens.
_DERIVATION_INFO = b"starterkit encryption key v1"


class UndecryptableSecret(Exception):
    """No key of ENCRYPTION_KEYS decrypts a stored secret (a key was dropped too early)."""


def new_encryption_key() -> str:
    """A new random key for ENCRYPTION_KEYS."""
    return Fernet.generate_key().decode()


def derived_key(secret_key: str) -> str:
    """The key used when ENCRYPTION_KEYS is empty, derived from SECRET_KEY."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_DERIVATION_INFO).derive(
        secret_key.encode()
    )
    return base64.urlsafe_b64encode(key).decode()


class SecretBox:
    """Encrypts with the first key, decrypts with any of them."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is needed")
        self._fernets = [Fernet(key.encode()) for key in keys]
        self._multi = MultiFernet(self._fernets)

    def encrypt(self, plaintext: str) -> str:
        """The ciphertext of ``plaintext`` under the newest key."""
        return self._multi.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        """The plaintext, whichever key encrypted it.

        Raises:
            UndecryptableSecret: no key decrypts it.
        """
        try:
            return self._multi.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise UndecryptableSecret from None

    def needs_rotation(self, ciphertext: str) -> bool:
        """Whether ``ciphertext`` was encrypted with a key other than the newest."""
        try:
            self._fernets[0].decrypt(ciphertext.encode())
        except InvalidToken:
            return True
        return False

    def rotate(self, ciphertext: str) -> str:
        """``ciphertext`` encrypted again under the newest key.

        Raises:
            UndecryptableSecret: no key decrypts it.
        """
        try:
            return self._multi.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise UndecryptableSecret from None

"""Credentials at rest (SOURCES.md §A): `PRGATE_ENCRYPTION_KEY` is a comma-separated list of Fernet
keys; the first encrypts, every one decrypts, so a key rotates by putting the new one first and
dropping the old one once every stored credential was re-encrypted (a reconnect re-encrypts).
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

VARIABLE = "PRGATE_ENCRYPTION_KEY"


class InvalidEncryptionKey(ValueError):
    """A key that is not a Fernet key (urlsafe base64 of 32 bytes)."""


class CannotDecrypt(Exception):
    """The ciphertext was written under a key that is no longer listed (or is not ours)."""


def check_keys(keys: Sequence[str]) -> None:
    """Raise ValueError naming the position of the first key that is not a Fernet key (never the key)."""
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            raise InvalidEncryptionKey(
                f"entry {position} of {VARIABLE} is not a Fernet key (urlsafe base64 of 32 bytes; "
                "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)"
            ) from None


class Vault:
    """Encrypts with the first key, decrypts with any. Holds no key in its repr."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise InvalidEncryptionKey(f"{VARIABLE} is not set")
        check_keys(keys)
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    def __repr__(self) -> str:
        return "Vault(…)"

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, ciphertext: bytes) -> str:
        try:
            return self._fernet.decrypt(ciphertext).decode()
        except InvalidToken:
            raise CannotDecrypt(
                f"a stored credential was encrypted with a key no longer in {VARIABLE}; put that key back "
                "(after the first) or reconnect the tenant"
            ) from None

    def rotate(self, ciphertext: bytes) -> bytes:
        """The same plaintext under the first key (MultiFernet.rotate)."""
        try:
            return self._fernet.rotate(ciphertext)
        except InvalidToken:
            raise CannotDecrypt(f"a stored credential was encrypted with a key no longer in {VARIABLE}") from None

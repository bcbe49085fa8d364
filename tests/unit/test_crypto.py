"""PRGATE_ENCRYPTION_KEY: the first key encrypts, every key decrypts, so keys rotate."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from backend_api.crypto import CannotDecrypt, InvalidEncryptionKey, Vault
from backend_api.settings import BackendSettings


def _key() -> str:
    return Fernet.generate_key().decode()


def test_round_trip_and_no_plaintext_in_ciphertext() -> None:
    vault = Vault([_key()])
    ciphertext = vault.encrypt("bb-token-123")
    assert b"bb-token-123" not in ciphertext
    assert vault.decrypt(ciphertext) == "bb-token-123"
    assert "bb-token" not in repr(vault)


def test_rotation_new_key_first_old_still_decrypts_then_dropped() -> None:
    old, new = _key(), _key()
    written_under_old = Vault([old]).encrypt("t1")
    rotating = Vault([new, old])
    assert rotating.decrypt(written_under_old) == "t1"
    written_under_new = rotating.encrypt("t2")
    # the first key encrypts: without the old key the new ciphertext still opens, the old one does not
    after = Vault([new])
    assert after.decrypt(written_under_new) == "t2"
    with pytest.raises(CannotDecrypt):
        after.decrypt(written_under_old)
    assert after.decrypt(rotating.rotate(written_under_old)) == "t1"
    with pytest.raises(CannotDecrypt):
        Vault([old]).decrypt(written_under_new)


@pytest.mark.parametrize("keys", [[], ["not-a-key"], [Fernet.generate_key().decode(), "short"]])
def test_invalid_keys_refused(keys: list[str]) -> None:
    with pytest.raises(InvalidEncryptionKey):
        Vault(keys)


def test_settings_read_the_list_once_and_refuse_a_bad_entry_without_echoing_it() -> None:
    a, b = _key(), _key()
    settings = BackendSettings.model_validate({"PRGATE_ENCRYPTION_KEY": f"{a}, {b}"})
    assert settings.encryption_keys == [a, b]
    vault = settings.vault()
    assert vault is not None
    assert Vault([a]).decrypt(vault.encrypt("x")) == "x"
    assert BackendSettings.model_validate({}).vault() is None
    with pytest.raises(ValidationError) as caught:
        BackendSettings.model_validate({"PRGATE_ENCRYPTION_KEY": f"{a},sekrit-value"})
    assert "entry 2 of PRGATE_ENCRYPTION_KEY" in str(caught.value)

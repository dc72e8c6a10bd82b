"""Encryption at rest of the secrets Samosval keeps (issue 21): secret environment
variables of deployments and the secret parts of notification channels.

Values are sealed with Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``).
The key is ``SAMOSVAL_ENCRYPTION_KEY`` when set (any string: it goes through HKDF,
so a passphrase works as well as ``Fernet.generate_key()``'s output); without it,
a key derived by HKDF from the instance's secret key. Old keys
(``SAMOSVAL_ENCRYPTION_OLD_KEYS``, comma-separated, and always the key derived from
the secret key) still open values, so a key can be changed first and every value
re-sealed afterwards: ``flask --app app rotate-encryption-key``.

No Flask here: callers pass the configuration values in.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_SECRETS_SALT = b"samosval-secrets-at-rest"
_SECRETS_INFO = b"sealed configuration v1"


class SealError(Exception):
    """A sealed value that no known key opens (the key changed and was not kept)."""


def hkdf_fernet(material: str | bytes, salt: bytes, info: bytes) -> Fernet:
    """A Fernet whose key HKDF-SHA256 derives from ``material``: the one derivation of
    every sealing key (webhook tokens use it too, with their own salt and info)."""
    if isinstance(material, str):
        material = material.encode("utf-8")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(material)
    return Fernet(base64.urlsafe_b64encode(key))


class Keyring:
    """The current key (seals) and every key that may still open a value."""

    def __init__(self, current: Fernet, older: list[Fernet]):
        self.current = current
        self._all = MultiFernet([current, *older])

    def seal(self, value: str) -> str:
        return self.current.encrypt(value.encode("utf-8")).decode("ascii")

    def open(self, sealed: str) -> str:
        try:
            return self._all.decrypt(sealed.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError) as exc:
            raise SealError("no known key opens this value") from exc

    def reseal(self, sealed: str) -> str:
        """The same value sealed under the current key."""
        try:
            return self._all.rotate(sealed.encode("ascii")).decode("ascii")
        except (InvalidToken, ValueError) as exc:
            raise SealError("no known key opens this value") from exc


def keyring(
    secret_key: str | bytes, encryption_key: str | None = None, old_keys: str | list[str] | None = None
) -> Keyring:
    """The keyring of a configuration: ``ENCRYPTION_KEY`` (or the secret key) seals;
    ``ENCRYPTION_OLD_KEYS`` and the secret key's own derivation still open."""
    derived = hkdf_fernet(secret_key, _SECRETS_SALT, _SECRETS_INFO)
    if isinstance(old_keys, str):
        old_keys = [k for k in (part.strip() for part in old_keys.split(",")) if k]
    older = [hkdf_fernet(k, _SECRETS_SALT, _SECRETS_INFO) for k in (old_keys or [])]
    if encryption_key:
        return Keyring(hkdf_fernet(encryption_key, _SECRETS_SALT, _SECRETS_INFO), [*older, derived])
    return Keyring(derived, older)


def app_keyring(config) -> Keyring:
    """The keyring of a Flask config mapping (or any dict with the same keys)."""
    return keyring(config["SECRET_KEY"], config.get("ENCRYPTION_KEY"), config.get("ENCRYPTION_OLD_KEYS"))

"""Private keys at rest: AES-256-GCM under a key-encryption key (SPEC §5).

The KEK never enters the database; each ciphertext names the KEK that sealed it (``kek_id``) so
``rewrap`` can re-encrypt under a new one, and binds the signing key's ``kid`` as associated data
so a ciphertext moved to another row fails to open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEK_BYTES = 32
NONCE_BYTES = 12


class KeyUnwrapError(Exception):
    """A sealed key could not be opened (wrong KEK, wrong kid, or tampered data)."""


@dataclass(frozen=True, slots=True)
class Kek:
    id: str
    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) != KEK_BYTES:
            raise ValueError("the key-encryption key must be exactly 32 bytes (AES-256)")

    def __repr__(self) -> str:  # never print the key
        return f"Kek(id={self.id!r})"

    @classmethod
    def from_key(cls, key: bytes) -> Kek:
        return cls(id=kek_id(key), key=key)

    @classmethod
    def parse(cls, text: str) -> Kek:
        """Parse a base64url (or standard base64) encoded 32-byte KEK, as in ``TOKENRY_KEK``."""
        cleaned = text.strip()
        try:
            key = base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
        except (binascii.Error, ValueError):
            raise ValueError("TOKENRY_KEK is not valid base64url") from None
        return cls.from_key(key)

    @classmethod
    def generate(cls) -> Kek:
        return cls.from_key(os.urandom(KEK_BYTES))

    def encoded(self) -> str:
        return base64.urlsafe_b64encode(self.key).rstrip(b"=").decode()


def kek_id(key: bytes) -> str:
    return hashlib.sha256(b"tokenry-kek-id:" + key).hexdigest()[:16]


def seal(kek: Kek, kid: str, plaintext: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(kek.key).encrypt(nonce, plaintext, kid.encode())


def open_sealed(kek: Kek, kid: str, sealed: bytes) -> bytes:
    if len(sealed) <= NONCE_BYTES:
        raise KeyUnwrapError("sealed key is truncated")
    try:
        return AESGCM(kek.key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], kid.encode())
    except InvalidTag:
        raise KeyUnwrapError(f"cannot open the private key of {kid} with KEK {kek.id}") from None

"""Private keys at rest: AES-256-GCM under a key-encryption key (docs/spec.md §5).

The KEK never enters the database; each ciphertext names the KEK that sealed it (``kek_id``) so
``rewrap`` can re-encrypt under a new one, and binds the signing key's ``kid`` as associated data
so a ciphertext moved to another row fails to open.

Sealed format (v1): ``b"tkw1" || nonce (12 bytes) || AES-256-GCM ciphertext and tag``. The magic
prefix lets the schema refuse anything else in the column (a PEM starts ``-----``, a JWK ``{``,
a PKCS#8 DER ``0x30``), so a plaintext private key cannot be stored by mistake. Blobs sealed by
the walking skeleton (no prefix) still open, and ``tokenry keys rewrap`` upgrades them.

During a KEK change the services hold a :class:`KekRing`: the KEK they seal new keys with and the
ones they may still open with (``TOKENRY_KEK`` and ``TOKENRY_KEK_NEW``, see docs/keys.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tokenry.core import b64url
from tokenry.core.errors import KeyUnwrapError as KeyUnwrapError  # noqa: PLC0414 - re-export

KEK_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
SEAL_MAGIC = b"tkw1"


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
        return b64url.encode(self.key)


def kek_id(key: bytes) -> str:
    return hashlib.sha256(b"tokenry-kek-id:" + key).hexdigest()[:16]


def seal(kek: Kek, kid: str, plaintext: bytes) -> bytes:
    """Encrypt ``plaintext`` (a PKCS#8 DER private key) under ``kek``, bound to ``kid``."""
    nonce = os.urandom(NONCE_BYTES)
    return SEAL_MAGIC + nonce + AESGCM(kek.key).encrypt(nonce, plaintext, kid.encode())


def is_sealed(blob: bytes) -> bool:
    """True when ``blob`` has the shape of a v1 sealed key (what the schema also checks)."""
    return blob.startswith(SEAL_MAGIC) and len(blob) > len(SEAL_MAGIC) + NONCE_BYTES + TAG_BYTES


def open_sealed(kek: Kek, kid: str, sealed: bytes) -> bytes:
    """Decrypt a sealed key; raises :class:`KeyUnwrapError` on any mismatch (never leaks why)."""
    body = sealed[len(SEAL_MAGIC) :] if sealed.startswith(SEAL_MAGIC) else sealed
    if len(body) <= NONCE_BYTES + TAG_BYTES:
        raise KeyUnwrapError("sealed key is truncated")
    try:
        return AESGCM(kek.key).decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], kid.encode())
    except InvalidTag:
        if body is not sealed:
            # A skeleton-era blob whose random nonce happened to start with the magic.
            try:
                return AESGCM(kek.key).decrypt(
                    sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], kid.encode()
                )
            except InvalidTag:
                pass
        raise KeyUnwrapError(f"cannot open the private key of {kid} with KEK {kek.id}") from None


@dataclass(frozen=True, slots=True)
class KekRing:
    """The KEKs a service holds: ``primary`` seals new keys; any of them opens.

    Holding two during a KEK change is what makes ``tokenry keys rewrap`` downtime-free: a row
    opens whether or not it has been rewrapped yet.
    """

    primary: Kek
    others: tuple[Kek, ...] = ()

    def __repr__(self) -> str:
        return f"KekRing(primary={self.primary.id!r}, others={[k.id for k in self.others]!r})"

    @classmethod
    def of(cls, kek: Kek | KekRing) -> KekRing:
        return kek if isinstance(kek, KekRing) else cls(kek)

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.primary.id, *(k.id for k in self.others))

    def get(self, kek_id: str) -> Kek | None:
        for kek in (self.primary, *self.others):
            if kek.id == kek_id:
                return kek
        return None

    def seal(self, kid: str, plaintext: bytes) -> tuple[bytes, str]:
        """(sealed blob, kek id) under the primary KEK."""
        return seal(self.primary, kid, plaintext), self.primary.id

    def open(self, kid: str, kek_id: str, sealed: bytes) -> bytes:
        kek = self.get(kek_id)
        if kek is None:
            raise KeyUnwrapError(f"the private key of {kid} is sealed under KEK {kek_id}, not held")
        return open_sealed(kek, kid, sealed)


def secret_text(env: Mapping[str, str], name: str) -> str | None:
    """A secret from ``name`` or from the file named by ``name_FILE`` (ValueError if unreadable)."""
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ValueError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
    return None


def kek_from_env(env: Mapping[str, str], name: str) -> Kek | None:
    """The KEK in ``name`` or in the file named by ``name_FILE``; None when neither is set.

    Raises:
        ValueError: the value is not a base64url 32-byte key (the message never holds it).
    """
    text = secret_text(env, name)
    if text is None:
        return None
    try:
        return Kek.parse(text)
    except ValueError:
        raise ValueError(f"{name} must be a base64url-encoded 32-byte key") from None


def kek_ring(current: Kek, env: Mapping[str, str]) -> KekRing:
    """The ring a service holds: ``TOKENRY_KEK_NEW`` (when set) seals, and both open.

    Outside a KEK change only ``TOKENRY_KEK`` is set and the ring is just that key.
    """
    new = kek_from_env(env, "TOKENRY_KEK_NEW")
    if new is None or new.id == current.id:
        return KekRing(current)
    return KekRing(new, (current,))

"""Identifiers: ``jti`` and ``gid`` are 128 random bits, base64url without padding
(docs/spec.md §2)."""

from __future__ import annotations

import secrets

from tokenry.core import b64url

ID_BYTES = 16  # 128 bits -> 22 base64url characters


def new_jti() -> str:
    return secrets.token_urlsafe(ID_BYTES)


def new_gid() -> str:
    return secrets.token_urlsafe(ID_BYTES)


def new_jti_and_gid() -> tuple[str, str]:
    """A fresh jti and gid from one read of the OS CSPRNG (one system call, not two)."""
    both = secrets.token_bytes(2 * ID_BYTES)
    return _b64(both[:ID_BYTES]), _b64(both[ID_BYTES:])


def _b64(raw: bytes) -> str:
    return b64url.encode(raw)

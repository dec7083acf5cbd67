"""Identifiers: ``jti`` and ``gid`` are 128 random bits, base64url without padding (SPEC §2)."""

from __future__ import annotations

import secrets

ID_BYTES = 16  # 128 bits -> 22 base64url characters


def new_jti() -> str:
    return secrets.token_urlsafe(ID_BYTES)


def new_gid() -> str:
    return secrets.token_urlsafe(ID_BYTES)

"""Identifiers: ``jti`` and ``gid`` are 128 random bits, base64url without padding
(docs/spec.md §2)."""

from __future__ import annotations

import secrets
from binascii import b2a_base64
from os import urandom
from typing import Final

from tokenry.core.b64url import URLSAFE_TRANSLATION

ID_BYTES = 16  # 128 bits -> 22 base64url characters
ID_CHARS = 22
#: Two zero bytes close the jti's last 3-byte group so the gid starts on a group boundary.
_GAP: Final = b"\0\0"


def new_jti() -> str:
    return secrets.token_urlsafe(ID_BYTES)


def new_gid() -> str:
    return secrets.token_urlsafe(ID_BYTES)


def new_jti_and_gid() -> tuple[str, str]:
    """A fresh jti and gid from one read of the OS CSPRNG (one system call, not two), encoded in
    one pass: base64 of ``jti + 00 00 + gid`` is base64(jti) (22 characters; the zero bytes only
    add "AA" after it), then "AA", then base64(gid) (its 18-byte offset is a whole number of
    3-byte groups), so each is the same text ``b64url.encode`` makes of its 16 bytes."""
    raw = urandom(2 * ID_BYTES)
    text = (
        b2a_base64(raw[:ID_BYTES] + _GAP + raw[ID_BYTES:], newline=False)
        .translate(URLSAFE_TRANSLATION)
        .decode("ascii")
    )
    return text[:ID_CHARS], text[ID_CHARS + 2 : 2 * ID_CHARS + 2]

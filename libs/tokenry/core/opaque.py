"""Opaque tokens (docs/spec.md §3): prefix, 256 bits of randomness, a checksum suffix; stored as
SHA-256.

::

    tkr_at_<43 base64url chars = 32 bytes><6 base62 chars = CRC32 of everything before>

The prefix (``tkr_at_`` access token, ``tkr_rt_`` refresh token, ``tkr_ac_`` authorization
code, ``tkr_lc_`` login challenge) lets secret scanners find leaked tokens; the checksum lets
the introspector and the issuer reject garbage without a database hit (it is not a MAC: the
security is the 256 random bits). Only :func:`token_hash` is ever stored (fosite keys its
storage by signature the same way), so a database dump grants nothing.

A refresh token's successor is not random but derived (docs/spec.md §3 grace rule):
``derive(key, spent)`` = HMAC-SHA-256 under a server key, so a retried refresh recomputes the
same successor without the plaintext ever being stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from typing import Final

from tokenry.core import b64url

ACCESS: Final = "tkr_at_"
REFRESH: Final = "tkr_rt_"
CODE: Final = "tkr_ac_"
LOGIN_CHALLENGE: Final = "tkr_lc_"
PREFIXES: Final = frozenset({ACCESS, REFRESH, CODE, LOGIN_CHALLENGE})

BODY_BYTES: Final = 32  # 256 bits
BODY_CHARS: Final = 43
CHECKSUM_CHARS: Final = 6
TOKEN_LENGTH: Final = 7 + BODY_CHARS + CHECKSUM_CHARS
_BASE62: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SHAPE: Final = re.compile(r"(tkr_(?:at|rt|ac|lc)_)([A-Za-z0-9_-]{43})([0-9A-Za-z]{6})")


def _checksum(head: str) -> str:
    value = zlib.crc32(head.encode("ascii"))
    out = []
    for _ in range(CHECKSUM_CHARS):
        value, digit = divmod(value, 62)
        out.append(_BASE62[digit])
    return "".join(reversed(out))


def _assemble(prefix: str, body: bytes) -> str:
    if prefix not in PREFIXES:
        raise ValueError(f"unknown opaque token prefix {prefix!r}")
    head = prefix + b64url.encode(body)
    return head + _checksum(head)


def new_token(prefix: str) -> str:
    """A fresh random token of the kind named by ``prefix``."""
    return _assemble(prefix, secrets.token_bytes(BODY_BYTES))


def derive(prefix: str, key: bytes, seed: str) -> str:
    """A token derived from ``seed`` under ``key`` (HMAC-SHA-256): the same inputs, the same token.

    Used for refresh-token successors and the access token minted with them (docs/spec.md §3), with
    a distinct ``prefix`` per kind so no derived value is ever valid as another kind.
    """
    mac = hmac.new(key, prefix.encode("ascii") + seed.encode("utf-8"), hashlib.sha256).digest()
    return _assemble(prefix, mac)


def kind_of(token: str) -> str | None:
    """The prefix of a well-formed token whose checksum matches, else None (no database hit)."""
    if len(token) != TOKEN_LENGTH:
        return None
    match = _SHAPE.fullmatch(token)
    if match is None:
        return None
    head = match.group(1) + match.group(2)
    if not hmac.compare_digest(_checksum(head), match.group(3)):
        return None
    return match.group(1)


def looks_opaque(token: str) -> bool:
    return token.startswith(("tkr_at_", "tkr_rt_", "tkr_ac_", "tkr_lc_"))


def token_hash(token: str) -> bytes:
    """What is stored and looked up: SHA-256 of the whole token (docs/spec.md §3)."""
    return hashlib.sha256(token.encode("utf-8")).digest()

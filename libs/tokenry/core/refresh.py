"""Refresh-token rotation (OAuth 2.1 §4.3.1, RFC 6819 §5.2.2.3) with the grace rule of
docs/spec.md §3.

Every use rotates the token. Presenting a spent token again is reuse: someone holds a copy, so
the whole family is revoked. One exception keeps retries safe: within ``grace`` seconds of the
rotation, while its successor is still unused, the same client presenting the just-spent token
gets the *same* successor again, never a second new one. The successor is derived
(HMAC under a server key, :func:`successor_of`), so nothing secret is stored to make that work,
and the access token is re-minted with the ``jti``, ``iat`` and ``exp`` recorded at rotation.

:func:`decide` is the pure decision; the store evaluates it on the row it locked, so under
concurrent requests exactly one rotates and the others replay its outcome.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import Enum
from typing import Final

from tokenry.core import opaque

DEFAULT_GRACE: Final = 10


class Outcome(Enum):
    ROTATE = "rotate"  # first use: spend it, mint the derived successor
    REPLAY = "replay"  # a retry inside the grace: the same successor again
    REUSE = "reuse"  # a spent token presented again: revoke the family
    INVALID = "invalid"  # expired, revoked, or not this client's: invalid_grant, nothing written


@dataclass(frozen=True, slots=True)
class RefreshState:
    """What the store knows about the presented token (locked for the transaction)."""

    client_id: str
    expires_at: int
    revoked: bool
    used_at: int | None
    successor_used: bool


def decide(
    state: RefreshState, *, client_id: str, now: float, grace: int = DEFAULT_GRACE
) -> Outcome:
    # RFC 6749 §6: the refresh token is bound to the client it was issued to.
    if state.client_id != client_id or state.revoked:
        return Outcome.INVALID
    if state.used_at is None:
        return Outcome.INVALID if now >= state.expires_at else Outcome.ROTATE
    if now - state.used_at <= grace and not state.successor_used:
        return Outcome.REPLAY
    return Outcome.REUSE


def derivation_key(server_key: bytes) -> bytes:
    """The refresh-successor key, separated by label from every other use of ``server_key``."""
    return hmac.new(server_key, b"tokenry/refresh-successor/v1", hashlib.sha256).digest()


def successor_of(key: bytes, spent: str) -> str:
    """The refresh token that replaces ``spent``: HMAC(key, spent) with prefix and checksum."""
    return opaque.derive(opaque.REFRESH, key, spent)


def access_token_of(key: bytes, spent: str) -> str:
    """The opaque access token minted with the successor, derived the same way (other prefix)."""
    return opaque.derive(opaque.ACCESS, key, spent)

"""The gateway's login sessions: who signed in on this browser, and when.

A session lets a later ``/oauth2/authorize`` skip the login page (OIDC Core §3.1.2.1: ``prompt``
and ``max_age`` decide when it may not) and carries the ``auth_time`` of the sign-in into the
ID token. It lives in PostgreSQL (table ``login_sessions``, migration 0009), so every gateway
replica sees it and logout ends it everywhere at once. The browser holds a random 256-bit token
in an ``HttpOnly`` cookie; the table holds only its SHA-256 (a database read gives no session).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import asyncpg

from tokenry.core.clock import Clock

__all__ = ["DEFAULT_SESSION_TTL", "LoginSession", "LoginSessions"]

#: how long a sign-in is remembered (absolute; a new sign-in starts a new session)
DEFAULT_SESSION_TTL = 12 * 3600
_MAX_TOKEN = 128


@dataclass(frozen=True, slots=True)
class LoginSession:
    subject: str
    auth_time: int

    def __repr__(self) -> str:
        return f"LoginSession(subject={self.subject!r}, auth_time={self.auth_time})"


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class LoginSessions:
    def __init__(self, pool: asyncpg.Pool, clock: Clock, ttl: int = DEFAULT_SESSION_TTL) -> None:
        self._pool = pool
        self._clock = clock
        self.ttl = ttl

    def now(self) -> int:
        return int(self._clock.now())

    async def start(self, subject: str, auth_time: int) -> str:
        """A new session; returns the token for the cookie (a sign-in never reuses one: no
        session fixation)."""
        token = secrets.token_urlsafe(32)
        await self._pool.execute(
            "INSERT INTO login_sessions (token_hash, subject, auth_time, expires_at)"
            " VALUES ($1, $2, $3, $4)",
            _hash(token),
            subject,
            auth_time,
            int(self._clock.now()) + self.ttl,
        )
        return token

    async def get(self, token: str) -> LoginSession | None:
        if not token or len(token) > _MAX_TOKEN or not token.isascii():
            return None
        row = await self._pool.fetchrow(
            "SELECT subject, auth_time FROM login_sessions WHERE token_hash = $1"
            " AND expires_at > $2",
            _hash(token),
            int(self._clock.now()),
        )
        return None if row is None else LoginSession(row["subject"], row["auth_time"])

    async def end(self, token: str) -> None:
        if token and len(token) <= _MAX_TOKEN and token.isascii():
            await self._pool.execute(
                "DELETE FROM login_sessions WHERE token_hash = $1", _hash(token)
            )

    async def sweep(self) -> None:
        await self._pool.execute(
            "DELETE FROM login_sessions WHERE expires_at <= $1", int(self._clock.now())
        )

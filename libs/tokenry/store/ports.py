"""The storage ports of the token flows (:mod:`tokenry.flows`), as structural Protocols.

Modelled on ory/fosite ``handler/oauth2/storage.go``: one small interface per concern, composed
where a flow needs several, each citing the rule it stores for. Every token, code and login
challenge is stored by its SHA-256 only (docs/spec.md §3).

Two adapters implement every port, and ``tests/contract`` runs one suite against both:

- PostgreSQL: :class:`tokenry.store.clients.ClientStore`,
  :class:`tokenry.store.assertion_jtis.AssertionJtiStore`,
  :class:`tokenry.store.auth_codes.AuthCodeStore` (login challenges),
  :class:`tokenry.store.opaque_tokens.OpaqueTokenWriter`,
  :class:`tokenry.store.revocation_checks.RevocationChecks`, and
  :mod:`tokenry.store.postgres` (the unit of work, the token/grant reader, the revocation log);
- memory: :class:`tokenry.store.memory.MemoryStore`, one object implementing them all (fosite's
  ``storage/memory.go``).

The transaction boundary is explicit (hydra's ``Persister.Transaction``):
:meth:`Transactional.transaction` opens a :class:`UnitOfWork`; what it writes commits together
when the block exits normally and not at all when it raises. Rows a unit of work reads with
``lock=True`` (and codes it reads with :meth:`AuthorizeCodeStorage.lock_code`) stay locked
until it ends, so concurrent redemptions of one code or one refresh token are serialised by the
store, never decided in a process. Ports outside a unit of work are single statements.

Errors: a port raises only what its adapter's driver raises when the store is unreachable
(``tokenry.store.db.UNAVAILABLE_ERRORS`` for PostgreSQL); "not found" is ``None``, never an
exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from tokenry.core.clientauth import AssertionReplay, ClientLookup
from tokenry.core.revocations import Revocation
from tokenry.store.records import (
    AuthCodeRecord,
    AuthRequestRecord,
    GrantRecord,
    OpaqueTokenRecord,
    Watermark,
)

__all__ = [
    "AccessTokenWriter",
    "AssertionReplay",
    "AuthorizeCodeStorage",
    "AuthorizeRequestStorage",
    "ClientLookup",
    "GrantStorage",
    "RevocationLog",
    "RevocationLookup",
    "TokenReader",
    "TokenStorage",
    "Transactional",
    "UnitOfWork",
    "WatermarkSource",
]


# --- outside a unit of work ----------------------------------------------------------------------


class AuthorizeRequestStorage(Protocol):
    """Authorization requests parked behind a login challenge (RFC 6749 §4.1.1, Hydra's login
    flow); taken back, once, by :meth:`AuthorizeCodeStorage.take_request`."""

    async def save_request(self, req: AuthRequestRecord) -> None:
        """Store a pending request under its challenge's hash."""
        ...


class AccessTokenWriter(Protocol):
    """Opaque access tokens minted outside any other write (client credentials, RFC 6749 §4.4).

    The PostgreSQL adapter group-commits concurrent writes (one INSERT per batch)."""

    async def write_access_token(self, record: OpaqueTokenRecord) -> None:
        """Return once the row is durable: the token is usable as soon as it is handed out."""
        ...


class TokenReader(Protocol):
    """Single-statement reads of tokens and families (RFC 8693 subject tokens, introspection)."""

    async def get_token(self, token_hash: bytes) -> OpaqueTokenRecord | None:
        """The opaque token stored under ``token_hash`` (its own ``revoked`` flag only)."""
        ...

    async def get_grant(self, gid: str) -> GrantRecord | None:
        """The grant family ``gid``."""
        ...


class RevocationLookup(Protocol):
    """Whether a revocation covers a token, asked of the durable record (docs/spec.md §4.5: the
    issuer never decides on event-fed state)."""

    async def revoked_kind(
        self,
        *,
        jti: str | None,
        gid: str | None,
        subject: str | None,
        client_id: str | None,
        issued_at: int,
    ) -> str | None:
        """The kind (``jti``, ``grant``, ``subject``, ``client``) of a revocation covering a
        token with these claims, or None. Subject and client revocations cover tokens with
        ``issued_at < not_before`` (docs/spec.md §4)."""
        ...


class WatermarkSource(Protocol):
    """Subject and client watermarks still ahead: no token is minted that would be born
    revoked (docs/spec.md §4)."""

    async def future_watermarks(self, now: int) -> list[Watermark]:
        """Subject and client revocations whose ``not_before`` is after ``now``."""
        ...


class RevocationLog(Protocol):
    """The durable revocation record (docs/spec.md §4.1), as the issuer writes to it on abuse: a
    reused code (RFC 6749 §4.1.2, §10.5) or refresh token (OAuth 2.1 §4.3.1) revokes its family."""

    async def revoke(self, rev: Revocation, actor: str, now: float) -> int:
        """Record ``rev`` and its event in one transaction and return the event's seq.

        An equal or stronger live revocation already recorded is not written again (RFC 7009
        §2.2: revoking twice succeeds) and its seq is returned. A grant revocation also ends the
        family (the grant and its opaque tokens are revoked); a subject or client revocation
        ends the families of that subject or client begun before its ``not_before``.
        """
        ...


# --- inside a unit of work -----------------------------------------------------------------------


class AuthorizeCodeStorage(Protocol):
    """Login challenges and authorization codes (RFC 6749 §4.1.2, RFC 7636 §4.4).

    A challenge is consumed once; a code is single-use and stays recorded once used, so that a
    second use is recognised and revokes its family (RFC 6749 §4.1.2) instead of looking unknown.
    """

    async def take_request(self, challenge_hash: bytes, now: int) -> AuthRequestRecord | None:
        """Consume a pending request: None when unknown, already taken or expired at ``now``
        (an expired one is consumed too)."""
        ...

    async def save_code(self, code: AuthCodeRecord) -> None:
        """Store a new code under its hash."""
        ...

    async def lock_code(self, code_hash: bytes) -> AuthCodeRecord | None:
        """The code, locked until the unit of work ends (concurrent redemptions serialise)."""
        ...

    async def mark_code_used(self, code_hash: bytes, now: int) -> None:
        """Record the redemption (``used_at``)."""
        ...


class GrantStorage(Protocol):
    """Grant families (``gid``): one row per authorization, ended as one (docs/spec.md §3)."""

    async def create_grant(self, grant: GrantRecord) -> None:
        """Store a new family."""
        ...

    async def get_grant(self, gid: str) -> GrantRecord | None:
        """The family ``gid``."""
        ...

    async def revoke_family(self, gid: str) -> None:
        """Mark the family and every opaque token in it revoked (idempotent)."""
        ...


class TokenStorage(Protocol):
    """Opaque access and refresh tokens by hash, with the refresh rotation state (OAuth 2.1
    §4.3.1: ``used_at``, the derived successor's hash and what the rotation minted)."""

    async def get_token(self, token_hash: bytes, *, lock: bool = False) -> OpaqueTokenRecord | None:
        """The token; with ``lock``, locked until the unit of work ends."""
        ...

    async def insert_tokens(self, records: Sequence[OpaqueTokenRecord]) -> None:
        """Store new tokens (none stored under the same hash yet)."""
        ...

    async def mark_spent(
        self,
        token_hash: bytes,
        *,
        used_at: int,
        successor_hash: bytes,
        minted: dict[str, Any],
    ) -> None:
        """Record a refresh token's rotation. ``minted`` holds JSON values only; it reads back
        as JSON does (lists, not tuples)."""
        ...


class UnitOfWork(AuthorizeCodeStorage, GrantStorage, TokenStorage, RevocationLookup, Protocol):
    """The ports a flow uses inside one transaction."""


class Transactional(Protocol):
    """The transaction boundary (hydra ``persistence/definitions.go::Persister.Transaction``)."""

    def transaction(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """Open a unit of work: committed when the block exits normally, rolled back when it
        raises."""
        ...

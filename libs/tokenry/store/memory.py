"""The in-memory reference store: every port of :mod:`tokenry.store.ports` in one object.

Modelled on ory/fosite ``storage/memory.go``: a real implementation, not a mock. The contract
suite (``tests/contract``) runs the same cases against it and against PostgreSQL, so flows
tested over it behave as they do in production. Uses: unit tests of :mod:`tokenry.flows`
without a server, and a single-process development setup.

Concurrency: one asyncio lock stands for PostgreSQL's row locks. A unit of work holds it from
start to end (so concurrent redemptions of one code or refresh token serialise, as
``SELECT … FOR UPDATE`` makes them), and every write outside a unit of work takes it for its
one step. Reads outside a unit of work take no lock, so they could see what a unit of work in
progress has written (PostgreSQL would not show it); no flow reads outside its own open unit of
work. A unit of work that raises is rolled back from its undo log. Tokens and codes are kept by
hash only, as in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Hashable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, Final

from tokenry.core.clients import Client
from tokenry.core.clock import Clock
from tokenry.core.revocations import Revocation, RevocationKind, RevocationSet
from tokenry.store.errors import DuplicateRow
from tokenry.store.records import (
    MAX_PENDING_REQUESTS_PER_CLIENT,
    AuthCodeRecord,
    AuthRequestRecord,
    GrantRecord,
    OpaqueTokenRecord,
    Watermark,
    too_many_pending,
)

__all__ = ["DuplicateRow", "MemoryStore", "MemoryUnitOfWork"]

_ABSENT: Final = object()
_WATERMARK_KINDS: Final = (RevocationKind.SUBJECT.value, RevocationKind.CLIENT.value)


def _json(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a ``jsonb`` column gives back: a copy, lists for tuples."""
    return None if value is None else json.loads(json.dumps(value))


class MemoryStore:
    """All the ports, over dicts.

    Args:
        clock: the clock of :meth:`first_use` (assertion ids are remembered until their exp).
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = asyncio.Lock()
        self.clients: dict[str, Client] = {}
        self.assertion_jtis: dict[tuple[str, str], int] = {}
        self.requests: dict[bytes, AuthRequestRecord] = {}
        self.codes: dict[bytes, AuthCodeRecord] = {}
        self.grants: dict[str, GrantRecord] = {}
        self.tokens: dict[bytes, OpaqueTokenRecord] = {}
        # (kind, value) -> (revocation, seq of the event that last recorded it)
        self.revocations: dict[tuple[str, str], tuple[Revocation, int]] = {}
        # The same rows as a set, for the one Python revocation rule (RevocationSet.check).
        self.revocation_set = RevocationSet()
        # The outbox: (seq, revocation, actor), gap-free in commit order.
        self.events: list[tuple[int, Revocation, str]] = []

    def __repr__(self) -> str:
        return f"MemoryStore(clients={len(self.clients)}, tokens={len(self.tokens)})"

    # --- the client registry (ClientLookup) ------------------------------------------------------

    async def get_client(self, client_id: str) -> Client | None:
        return self.clients.get(client_id)

    async def upsert_client(self, client: Client) -> None:
        """Create or replace a client (``ClientStore.upsert``)."""
        async with self._lock:
            self.clients[client.client_id] = client

    async def delete_client(self, client_id: str) -> bool:
        async with self._lock:
            return self.clients.pop(client_id, None) is not None

    # --- private_key_jwt replay (AssertionReplay, RFC 7523 §3 item 7) ---------------------------

    async def first_use(self, client_id: str, jti: str, remember_until: int) -> bool:
        now = int(self._clock.now())
        async with self._lock:
            seen = self.assertion_jtis.get((client_id, jti))
            if seen is not None and seen > now:
                return False
            self.assertion_jtis[(client_id, jti)] = remember_until
            return True

    # --- outside a unit of work ------------------------------------------------------------------

    async def save_request(self, req: AuthRequestRecord) -> None:
        async with self._lock:
            if req.challenge_hash in self.requests:
                raise DuplicateRow("auth_requests")
            now = self._clock.now()
            live = sum(
                1
                for r in self.requests.values()
                if r.client_id == req.client_id and r.expires_at > now
            )
            if live >= MAX_PENDING_REQUESTS_PER_CLIENT:
                raise too_many_pending()
            self.requests[req.challenge_hash] = req

    async def write_access_token(self, record: OpaqueTokenRecord) -> None:
        async with self._lock:
            _insert_token(self.tokens, record, None)

    async def get_token(self, token_hash: bytes) -> OpaqueTokenRecord | None:
        return self.tokens.get(token_hash)

    async def get_grant(self, gid: str) -> GrantRecord | None:
        return self.grants.get(gid)

    async def revoked_kind(
        self,
        *,
        jti: str | None,
        gid: str | None,
        subject: str | None,
        client_id: str | None,
        issued_at: int,
    ) -> str | None:
        return _revoked_kind(
            self.revocation_set,
            jti=jti,
            gid=gid,
            subject=subject,
            client_id=client_id,
            issued_at=issued_at,
        )

    async def future_watermarks(self, now: int) -> list[Watermark]:
        return [
            Watermark(rev.kind.value, rev.value, rev.not_before)
            for rev, _ in self.revocations.values()
            if rev.kind.value in _WATERMARK_KINDS and rev.not_before > now
        ]

    async def revoke(self, rev: Revocation, actor: str, now: float) -> int:
        """As ``tokenry_revoke`` (migration 0005/0006) does for one revocation."""
        async with self._lock:
            key = (rev.kind.value, rev.value)
            held = self.revocations.get(key)
            if (
                held is not None
                and held[0].expires_at > now
                and held[0].not_before >= rev.not_before
            ):
                seq = held[1]
            else:
                seq = len(self.events) + 1
                if held is not None:  # ON CONFLICT: raise the watermark and expiry, never lower
                    rev = replace(
                        rev,
                        not_before=max(held[0].not_before, rev.not_before),
                        expires_at=max(held[0].expires_at, rev.expires_at),
                    )
                self.revocations[key] = (rev, seq)
                self.revocation_set.apply(rev)
                self.events.append((seq, rev, actor))
            self._end_families(rev)
            return seq

    def _end_families(self, rev: Revocation) -> None:
        """A grant, subject or client revocation ends the families it covers (docs/spec.md §3)."""
        if rev.kind is RevocationKind.GRANT:
            ended = [g for g in (self.grants.get(rev.value),) if g is not None and not g.revoked]
        elif rev.kind is RevocationKind.SUBJECT:
            ended = [
                g
                for g in self.grants.values()
                if g.subject == rev.value and g.created_at < rev.not_before and not g.revoked
            ]
        elif rev.kind is RevocationKind.CLIENT:
            ended = [
                g
                for g in self.grants.values()
                if g.client_id == rev.value and g.created_at < rev.not_before and not g.revoked
            ]
        else:
            return
        for grant in ended:
            self.grants[grant.gid] = replace(grant, revoked=True)
            _revoke_tokens(self.tokens, grant.gid, None)

    # --- the transaction boundary (Transactional) ------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MemoryUnitOfWork]:
        async with self._lock:
            work = MemoryUnitOfWork(self)
            try:
                yield work
            except BaseException:
                work.rollback()
                raise
            finally:
                work.close()


_Undo = list[tuple[MutableMapping[Any, Any], Hashable, object]]


def _put(table: MutableMapping[Any, Any], key: Hashable, value: object, undo: _Undo | None) -> None:
    if undo is not None:
        undo.append((table, key, table.get(key, _ABSENT)))
    table[key] = value


def _pop(table: MutableMapping[Any, Any], key: Hashable, undo: _Undo | None) -> Any:
    old = table.pop(key, _ABSENT)
    if undo is not None and old is not _ABSENT:
        undo.append((table, key, old))
    return None if old is _ABSENT else old


def _insert_token(
    tokens: dict[bytes, OpaqueTokenRecord], record: OpaqueTokenRecord, undo: _Undo | None
) -> None:
    if record.token_hash in tokens:
        raise DuplicateRow("opaque_tokens")
    _put(tokens, record.token_hash, replace(record, act=_json(record.act)), undo)


def _revoke_tokens(tokens: dict[bytes, OpaqueTokenRecord], gid: str, undo: _Undo | None) -> None:
    for key, token in list(tokens.items()):
        if token.gid == gid and not token.revoked:
            _put(tokens, key, replace(token, revoked=True), undo)


def _revoked_kind(
    revocations: RevocationSet,
    *,
    jti: str | None,
    gid: str | None,
    subject: str | None,
    client_id: str | None,
    issued_at: int,
) -> str | None:
    # The one Python rule; absent claims are "" as tokenry.store.revocation_checks passes them.
    return revocations.check(jti or "", gid or "", subject or "", client_id or "", issued_at)


class MemoryUnitOfWork:
    """``tokenry.store.ports.UnitOfWork``: writes go to the store at once, with an undo log."""

    __slots__ = ("_closed", "_store", "_undo")

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._undo: _Undo = []
        self._closed = False

    def _log(self) -> _Undo:
        if self._closed:
            raise RuntimeError("the unit of work has ended")
        return self._undo

    def rollback(self) -> None:
        for table, key, old in reversed(self._undo):
            if old is _ABSENT:
                table.pop(key, None)
            else:
                table[key] = old
        self._undo.clear()

    def close(self) -> None:
        self._closed = True
        self._undo.clear()

    async def take_request(self, challenge_hash: bytes, now: int) -> AuthRequestRecord | None:
        req: AuthRequestRecord | None = _pop(self._store.requests, challenge_hash, self._log())
        if req is None or req.expires_at <= now:
            return None
        return req

    async def save_code(self, code: AuthCodeRecord) -> None:
        undo = self._log()
        if code.code_hash in self._store.codes:
            raise DuplicateRow("auth_codes")
        _put(self._store.codes, code.code_hash, code, undo)

    async def lock_code(self, code_hash: bytes) -> AuthCodeRecord | None:
        self._log()
        return self._store.codes.get(code_hash)

    async def mark_code_used(self, code_hash: bytes, now: int) -> None:
        undo = self._log()
        code = self._store.codes.get(code_hash)
        if code is not None:
            _put(self._store.codes, code_hash, replace(code, used_at=now), undo)

    async def create_grant(self, grant: GrantRecord) -> None:
        undo = self._log()
        if grant.gid in self._store.grants:
            raise DuplicateRow("grants")
        _put(self._store.grants, grant.gid, replace(grant, revoked=False), undo)

    async def get_grant(self, gid: str) -> GrantRecord | None:
        self._log()
        return self._store.grants.get(gid)

    async def revoke_family(self, gid: str) -> None:
        undo = self._log()
        grant = self._store.grants.get(gid)
        if grant is not None and not grant.revoked:
            _put(self._store.grants, gid, replace(grant, revoked=True), undo)
        _revoke_tokens(self._store.tokens, gid, undo)

    async def get_token(
        self,
        token_hash: bytes,
        *,
        lock: bool = False,  # noqa: ARG002 - the unit of work holds the store's lock already
    ) -> OpaqueTokenRecord | None:
        self._log()
        return self._store.tokens.get(token_hash)

    async def insert_tokens(self, records: Sequence[OpaqueTokenRecord]) -> None:
        undo = self._log()
        for record in records:
            _insert_token(self._store.tokens, record, undo)

    async def mark_spent(
        self,
        token_hash: bytes,
        *,
        used_at: int,
        successor_hash: bytes,
        minted: dict[str, Any],
    ) -> None:
        undo = self._log()
        token = self._store.tokens.get(token_hash)
        if token is not None:
            spent = replace(
                token, used_at=used_at, successor_hash=successor_hash, minted=_json(minted)
            )
            _put(self._store.tokens, token_hash, spent, undo)

    async def revoked_kind(
        self,
        *,
        jti: str | None,
        gid: str | None,
        subject: str | None,
        client_id: str | None,
        issued_at: int,
    ) -> str | None:
        self._log()
        return _revoked_kind(
            self._store.revocation_set,
            jti=jti,
            gid=gid,
            subject=subject,
            client_id=client_id,
            issued_at=issued_at,
        )

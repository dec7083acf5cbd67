"""The introspection positive cache (the introspector's and the gateway's), with per-field
indexes for O(1) invalidation.

A positive answer is cached by a digest of the token and bounded by size, by the token's exp and
by age. Revocations name a token by ``jti``, ``gid``, ``sub`` or ``client_id``, and a key by
``kid``, never by its bytes (token strings are malleable, docs/spec.md §3): each of those fields
indexes the digests of the entries that carry it, so an invalidation touches only the entries it
removes, however full the cache is.

Subject and client revocations are watermarks: a token is revoked when its ``iat`` is before the
revocation's ``not_before`` (docs/spec.md §4, ``core.revocations.RevocationSet.check``). Their
indexes keep each entry's ``iat``, and an invalidation drops exactly the entries the rule revokes.

A lookup that raced an invalidation must not cache what it read before the revocation
committed: :attr:`PositiveCache.epoch` moves on every invalidation, and ``put`` stores an
answer only when the epoch it was given at the start of the lookup is still current.

Between a commit's notification and the invalidation it leads to lies one database round trip
(reading the new outbox rows). :meth:`PositiveCache.hold` covers it: until :meth:`release`,
``get`` finds nothing, so every answer comes from PostgreSQL, which already holds the commit.
``get`` pays nothing for this: it reads whichever table is visible, the entries or an empty one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, NamedTuple

from tokenry.core.clock import Clock
from tokenry.core.introspection import Introspection, from_claims

#: revocation kind (``core.revocations.RevocationKind`` values) -> the claim it names
_FIELDS = {"jti": "jti", "grant": "gid", "subject": "sub", "client": "client_id"}


class Positive(NamedTuple):
    """A cached positive answer, with what bounds it and what a revocation event names."""

    answer: Introspection
    exp: float
    stored_at: float
    claims: Mapping[str, Any]
    kid: str | None = None  # the signing key of a JWT; None for an opaque token


class PositiveCache:
    """Positive answers by BLAKE2s-256 of the token (hashlib's built-in BLAKE2: cheaper per
    call than OpenSSL's SHA-256), bounded by size, by the token's exp and by age.

    The answer is built once, when the token is first looked up, so a warm call only checks
    the caller against its audience. Revocations invalidate entries through the indexes
    (:meth:`invalidate`, :meth:`invalidate_kid`); the age bound keeps a missed invalidation
    from mattering for longer than ``max_age`` seconds.
    """

    def __init__(self, clock: Clock, *, size: int = 50_000, max_age: float = 5.0) -> None:
        self._monotonic = clock.monotonic
        self._now = clock.now
        self._size = size
        self.max_age = max_age
        self._entries: OrderedDict[bytes, Positive] = OrderedDict()
        self._nothing: dict[bytes, Positive] = {}  # never written to
        # what ``get`` reads: the entries, or nothing while held
        self._visible: dict[bytes, Positive] = self._entries
        # claim value -> digests of the entries carrying it (several: a token's bytes are
        # malleable, so one jti may be cached under more than one digest)
        self._by_jti: dict[str, set[bytes]] = {}
        self._by_gid: dict[str, set[bytes]] = {}
        self._by_kid: dict[str, set[bytes]] = {}
        # sub / client_id -> {digest: iat}, for the watermark rule
        self._by_sub: dict[str, dict[bytes, float]] = {}
        self._by_client: dict[str, dict[bytes, float]] = {}
        #: moves on every invalidation; see ``put``
        self.epoch = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: bytes) -> Positive | None:
        # The introspector's hot path: one dict lookup and two clock reads on a hit.
        entry = self._visible.get(digest)
        if entry is None:
            return None
        if self._monotonic() - entry.stored_at > self.max_age or entry.exp <= self._now():
            self._drop(digest)
            return None
        return entry

    def put(
        self,
        digest: bytes,
        claims: Mapping[str, Any],
        *,
        kid: str | None = None,
        epoch: int | None = None,
    ) -> Positive:
        """Cache the answer for these claims, and return it.

        Args:
            digest: the token's cache key.
            claims: what the lookup found (verified JWT claims, or an opaque token's row).
            kid: the key that signed a JWT, so revoking the key drops the answer.
            epoch: :attr:`epoch` read before the lookup began. If an invalidation has run
                since, the lookup may have read the database before a revocation committed:
                the answer is returned to its caller but not cached.
        """
        entry = Positive(from_claims(claims), claims["exp"], self._monotonic(), claims, kid)
        if epoch is not None and epoch != self.epoch:
            return entry
        if digest not in self._entries:
            self._index(digest, entry)
        self._entries[digest] = entry
        while len(self._entries) > self._size:
            old_digest, old = self._entries.popitem(last=False)
            self._unindex(old_digest, old)
        return entry

    def invalidate(self, kind: str, value: str, not_before: float | None = None) -> int:
        """Drop the answers a revocation of ``kind`` (jti, grant, subject, client) revokes.

        For subject and client, ``not_before`` is the watermark: entries with
        ``iat < not_before`` go, later ones stay; None drops every entry of that value.
        Returns how many entries were dropped.
        """
        self.epoch += 1
        field = _FIELDS.get(kind)
        if field == "jti":
            return self._drop_all(self._by_jti.get(value))
        if field == "gid":
            return self._drop_all(self._by_gid.get(value))
        if field == "sub":
            return self._drop_before(self._by_sub.get(value), not_before)
        if field == "client_id":
            return self._drop_before(self._by_client.get(value), not_before)
        return 0

    def invalidate_kid(self, kid: str) -> int:
        """Drop the answers for JWTs signed by ``kid`` (a revoked or retired key)."""
        self.epoch += 1
        return self._drop_all(self._by_kid.get(kid))

    @property
    def held(self) -> bool:
        return self._visible is not self._entries

    def hold(self) -> None:
        """Serve no cached answer until :meth:`release`: a commit is known that may revoke
        some, and its rows are not read yet. Entries are still stored, indexed, invalidated."""
        self._visible = self._nothing

    def release(self) -> None:
        self._visible = self._entries

    def clear(self) -> None:
        self.epoch += 1
        self._entries.clear()
        for index in (self._by_jti, self._by_gid, self._by_kid, self._by_sub, self._by_client):
            index.clear()

    # --- indexes --------------------------------------------------------------------------

    def _drop_all(self, digests: set[bytes] | None) -> int:
        if not digests:
            return 0
        dead = list(digests)
        for digest in dead:
            self._drop(digest)
        return len(dead)

    def _drop_before(self, issued: dict[bytes, float] | None, not_before: float | None) -> int:
        if not issued:
            return 0
        dead = [d for d, iat in issued.items() if not_before is None or iat < not_before]
        for digest in dead:
            self._drop(digest)
        return len(dead)

    def _drop(self, digest: bytes) -> None:
        entry = self._entries.pop(digest, None)
        if entry is not None:
            self._unindex(digest, entry)

    def _index(self, digest: bytes, entry: Positive) -> None:
        claims = entry.claims
        _link(self._by_jti, claims.get("jti"), digest)
        _link(self._by_gid, claims.get("gid"), digest)
        _link(self._by_kid, entry.kid, digest)
        # A missing iat counts as the earliest possible: every watermark revokes it.
        iat = _iat(claims)
        sub = claims.get("sub")
        if isinstance(sub, str):
            self._by_sub.setdefault(sub, {})[digest] = iat
        client_id = claims.get("client_id")
        if isinstance(client_id, str):
            self._by_client.setdefault(client_id, {})[digest] = iat

    def _unindex(self, digest: bytes, entry: Positive) -> None:
        claims = entry.claims
        _unlink(self._by_jti, claims.get("jti"), digest)
        _unlink(self._by_gid, claims.get("gid"), digest)
        _unlink(self._by_kid, entry.kid, digest)
        _unlink(self._by_sub, claims.get("sub"), digest)
        _unlink(self._by_client, claims.get("client_id"), digest)


def _iat(claims: Mapping[str, Any]) -> float:
    iat = claims.get("iat")
    return float(iat) if isinstance(iat, int | float) else float("-inf")


def _link(index: dict[str, set[bytes]], value: object, digest: bytes) -> None:
    if isinstance(value, str):
        bucket = index.get(value)
        if bucket is None:
            index[value] = {digest}
        else:
            bucket.add(digest)


def _unlink(
    index: dict[str, set[bytes]] | dict[str, dict[bytes, float]], value: object, digest: bytes
) -> None:
    if not isinstance(value, str):
        return
    bucket = index.get(value)
    if bucket is None:
        return
    if isinstance(bucket, set):
        bucket.discard(digest)
    else:
        bucket.pop(digest, None)
    if not bucket:
        del index[value]

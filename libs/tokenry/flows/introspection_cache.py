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

The collector does not walk the cache. Each stored entry is one flat tuple of strings,
numbers, bytes and a tuple of audiences, and each index bucket a dict of bytes: CPython's cyclic
garbage collector stops tracking a tuple once a collection finds its items untracked (a young
one, usually long before it reaches the old generation), and never tracks a dict of untracked
keys and values. A cache of Python objects (an answer, its claims dict, a set per jti: five
tracked objects per entry) made every full collection walk all of them: 45,000 entries, a few
seconds of cold introspection, added 110-130 ms to a pause that stalled every request in flight
(docs/benchmarks/gateway.md). The answer object is built from the tuple when an entry is read
again, and kept in a small table of recently read entries (``hot_size``), so a warm read is
still one dict lookup that returns the same object.
"""

from __future__ import annotations

import dataclasses
import operator
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, NamedTuple

from tokenry.core.clock import Clock
from tokenry.core.introspection import Introspection, from_claims

#: revocation kind (``core.revocations.RevocationKind`` values) -> the claim it names
_FIELDS = {"jti": "jti", "grant": "gid", "subject": "sub", "client": "client_id"}

# An answer's fields in constructor order, read in one C call.
_ANSWER_FIELDS = tuple(f.name for f in dataclasses.fields(Introspection))
_answer_values = operator.attrgetter(*_ANSWER_FIELDS)
# A stored entry is one flat tuple: the answer's field values (``Introspection(*row[:_N])``),
# then what bounds the entry and what revocations name. Flat, because the collector untracks a
# tuple only once the tuples inside it are untracked, one level per pass.
_N = len(_ANSWER_FIELDS)
_EXP, _STORED_AT, _JTI, _GID, _SUB, _CLIENT_ID, _IAT, _KID = range(_N, _N + 8)
_Row = tuple[Any, ...]
#: digests carrying one index value (a dict, not a set: a dict of bytes is never tracked)
_Bucket = dict[bytes, None]


class Positive(NamedTuple):
    """A cached positive answer, with what bounds it."""

    answer: Introspection
    exp: float
    stored_at: float
    kid: str | None = None  # the signing key of a JWT; None for an opaque token


class PositiveCache:
    """Positive answers by BLAKE2s-256 of the token (hashlib's built-in BLAKE2: cheaper per
    call than OpenSSL's SHA-256), bounded by size, by the token's exp and by age.

    The answer is built once, when the token is first looked up, so a warm call only checks
    the caller against its audience. Revocations invalidate entries through the indexes
    (:meth:`invalidate`, :meth:`invalidate_kid`); the age bound keeps a missed invalidation
    from mattering for longer than ``max_age`` seconds.
    """

    def __init__(
        self, clock: Clock, *, size: int = 50_000, max_age: float = 5.0, hot_size: int = 4096
    ) -> None:
        self._monotonic = clock.monotonic
        self._now = clock.now
        self._size = size
        self._hot_size = max(1, hot_size)
        self.max_age = max_age
        self._entries: OrderedDict[bytes, _Row] = OrderedDict()
        # the answers of entries read since they were stored, oldest first (tracked objects:
        # bounded by ``hot_size``)
        self._hot: dict[bytes, Positive] = {}
        # what ``get`` reads: the tables, or empty ones while held (never written to)
        self._visible: Mapping[bytes, _Row] = self._entries
        self._hot_visible: Mapping[bytes, Positive] = self._hot
        # claim value -> digests of the entries carrying it (several: a token's bytes are
        # malleable, so one jti may be cached under more than one digest)
        self._by_jti: dict[str, _Bucket] = {}
        self._by_gid: dict[str, _Bucket] = {}
        self._by_kid: dict[str, _Bucket] = {}
        # sub / client_id -> {digest: iat}, for the watermark rule
        self._by_sub: dict[str, dict[bytes, float]] = {}
        self._by_client: dict[str, dict[bytes, float]] = {}
        #: moves on every invalidation; see ``put``
        self.epoch = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, digest: bytes) -> Positive | None:
        # The introspector's hot path: one dict lookup and two clock reads on a warm hit.
        entry = self._hot_visible.get(digest)
        if entry is None:
            row = self._visible.get(digest)
            if row is None:
                return None
            entry = self._read_again(digest, row)
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
        return self.put_answer(
            digest,
            from_claims(claims),
            claims["exp"],
            (
                _text(claims, "jti"),
                _text(claims, "gid"),
                _text(claims, "sub"),
                _text(claims, "client_id"),
                _iat(claims),
                kid,
            ),
            epoch=epoch,
        )

    def put_answer(
        self,
        digest: bytes,
        answer: Introspection,
        exp: float,
        names: tuple[str | None, str | None, str | None, str | None, float, str | None],
        *,
        epoch: int | None = None,
    ) -> Positive:
        """:meth:`put` for an answer already built (the opaque path builds it from its row,
        without a claims dict): ``names`` is what revocations name it by, ``(jti, gid, sub,
        client_id, iat, kid)``, each None when absent (iat: ``-inf``, revoked by every
        watermark)."""
        entry = Positive(answer, exp, self._monotonic(), names[5])
        if epoch is not None and epoch != self.epoch:
            return entry
        row: _Row = (*_answer_values(answer), exp, entry.stored_at, *names)
        if digest not in self._entries:
            self._index(digest, row)
        self._entries[digest] = row
        self._hot.pop(digest, None)  # answered again from this row when read
        while len(self._entries) > self._size:
            old_digest, old = self._entries.popitem(last=False)
            self._hot.pop(old_digest, None)
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
        self._visible = {}
        self._hot_visible = {}

    def release(self) -> None:
        self._visible = self._entries
        self._hot_visible = self._hot

    def clear(self) -> None:
        self.epoch += 1
        self._entries.clear()
        self._hot.clear()
        for index in (self._by_jti, self._by_gid, self._by_kid, self._by_sub, self._by_client):
            index.clear()

    # --- entries --------------------------------------------------------------------------

    def _read_again(self, digest: bytes, row: _Row) -> Positive:
        """The answer of a stored row, kept among the recently read (oldest out first)."""
        entry = Positive(Introspection(*row[:_N]), row[_EXP], row[_STORED_AT], row[_KID])
        hot = self._hot
        if len(hot) >= self._hot_size:
            del hot[next(iter(hot))]
        hot[digest] = entry
        return entry

    # --- indexes --------------------------------------------------------------------------

    def _drop_all(self, digests: _Bucket | None) -> int:
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
        self._hot.pop(digest, None)
        row = self._entries.pop(digest, None)
        if row is not None:
            self._unindex(digest, row)

    def _index(self, digest: bytes, row: _Row) -> None:
        jti, gid, sub, client_id, iat, kid = row[_JTI:]
        _link(self._by_jti, jti, digest)
        _link(self._by_gid, gid, digest)
        _link(self._by_kid, kid, digest)
        if sub is not None:
            self._by_sub.setdefault(sub, {})[digest] = iat
        if client_id is not None:
            self._by_client.setdefault(client_id, {})[digest] = iat

    def _unindex(self, digest: bytes, row: _Row) -> None:
        jti, gid, sub, client_id, _, kid = row[_JTI:]
        _unlink(self._by_jti, jti, digest)
        _unlink(self._by_gid, gid, digest)
        _unlink(self._by_kid, kid, digest)
        _unlink(self._by_sub, sub, digest)
        _unlink(self._by_client, client_id, digest)


def _text(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) else None


def _iat(claims: Mapping[str, Any]) -> float:
    # A missing iat counts as the earliest possible: every watermark revokes it.
    iat = claims.get("iat")
    return float(iat) if isinstance(iat, int | float) else float("-inf")


def _link(index: dict[str, _Bucket], value: str | None, digest: bytes) -> None:
    if value is not None:
        bucket = index.get(value)
        if bucket is None:
            index[value] = {digest: None}
        else:
            bucket[digest] = None


def _unlink(
    index: dict[str, _Bucket] | dict[str, dict[bytes, float]], value: str | None, digest: bytes
) -> None:
    if value is None:
        return
    bucket = index.get(value)
    if bucket is None:
        return
    bucket.pop(digest, None)
    if not bucket:
        del index[value]

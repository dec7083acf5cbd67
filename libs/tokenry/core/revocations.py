"""Revocation state as plain data: what a verifier (or a service's cache) knows is revoked.

Applying is commutative and idempotent (add to a set, raise a watermark to the max), so events
may be applied as they arrive, duplicates change nothing, and a snapshot plus any overlapping
events converge to the same state (ARCHITECTURE §4). Entries live only until ``expires_at``, the
latest ``exp`` they can matter for (SPEC §4.7), so the state is bounded by revocation rate ×
maximum token lifetime.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum


class RevocationKind(StrEnum):
    JTI = "jti"
    GRANT = "grant"
    SUBJECT = "subject"
    CLIENT = "client"


@dataclass(frozen=True, slots=True)
class Revocation:
    kind: RevocationKind
    value: str
    # Unix seconds; for SUBJECT/CLIENT, tokens with iat < not_before are revoked (SPEC §4).
    not_before: int
    expires_at: int
    reason: str = ""


class RevocationSet:
    """O(1) revocation checks keyed on jti, gid, sub and client_id — never on token bytes.

    Token strings are malleable (high-S ECDSA), so keying on bytes would let a re-encoded token
    slip past a denylist (SPEC §3).
    """

    __slots__ = ("_client", "_gid", "_jti", "_sub")

    def __init__(self) -> None:
        # value -> expires_at
        self._jti: dict[str, int] = {}
        self._gid: dict[str, int] = {}
        # value -> (not_before, expires_at)
        self._sub: dict[str, tuple[int, int]] = {}
        self._client: dict[str, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._jti) + len(self._gid) + len(self._sub) + len(self._client)

    def apply(self, rev: Revocation) -> None:
        if rev.kind is RevocationKind.JTI:
            _raise_expiry(self._jti, rev.value, rev.expires_at)
        elif rev.kind is RevocationKind.GRANT:
            _raise_expiry(self._gid, rev.value, rev.expires_at)
        elif rev.kind is RevocationKind.SUBJECT:
            _raise_watermark(self._sub, rev)
        else:
            _raise_watermark(self._client, rev)

    def apply_all(self, revs: Iterable[Revocation]) -> None:
        for rev in revs:
            self.apply(rev)

    def check(
        self, jti: str, gid: str | None, sub: str | None, client_id: str | None, iat: float
    ) -> str | None:
        """The kind of revocation that applies to these claims, or None if none does."""
        if jti in self._jti:
            return "jti"
        if gid is not None and gid in self._gid:
            return "grant"
        if sub is not None:
            mark = self._sub.get(sub)
            if mark is not None and iat < mark[0]:
                return "subject"
        if client_id is not None:
            mark = self._client.get(client_id)
            if mark is not None and iat < mark[0]:
                return "client"
        return None

    def sweep(self, now: float) -> int:
        """Drop entries that can no longer matter; returns how many were dropped."""
        dropped = 0
        for table in (self._jti, self._gid):
            dead = [k for k, exp in table.items() if exp <= now]
            for k in dead:
                del table[k]
            dropped += len(dead)
        for marks in (self._sub, self._client):
            dead = [k for k, (_, exp) in marks.items() if exp <= now]
            for k in dead:
                del marks[k]
            dropped += len(dead)
        return dropped

    def entries(self) -> Iterator[Revocation]:
        for value, exp in self._jti.items():
            yield Revocation(RevocationKind.JTI, value, 0, exp)
        for value, exp in self._gid.items():
            yield Revocation(RevocationKind.GRANT, value, 0, exp)
        for value, (nbf, exp) in self._sub.items():
            yield Revocation(RevocationKind.SUBJECT, value, nbf, exp)
        for value, (nbf, exp) in self._client.items():
            yield Revocation(RevocationKind.CLIENT, value, nbf, exp)


def _raise_expiry(table: dict[str, int], value: str, expires_at: int) -> None:
    current = table.get(value)
    if current is None or expires_at > current:
        table[value] = expires_at


def _raise_watermark(marks: dict[str, tuple[int, int]], rev: Revocation) -> None:
    current = marks.get(rev.value)
    if current is None:
        marks[rev.value] = (rev.not_before, rev.expires_at)
    else:
        marks[rev.value] = (max(current[0], rev.not_before), max(current[1], rev.expires_at))

"""Revocation state as plain data: what a verifier (or a service's cache) knows is revoked.

Applying is commutative and idempotent (add to a set, raise a watermark to the max), so events
may be applied as they arrive, duplicates change nothing, and a snapshot plus any overlapping
events converge to the same state (docs/design.md §4). Entries live only until ``expires_at``, the
latest ``exp`` they can matter for (docs/spec.md §4.7), so the state is bounded by revocation rate ×
maximum token lifetime.

The rules that turn a revocation request into a :class:`Revocation` (watermarks, expiries) live
here too, as pure functions of ``now``, so the service, the tests and the docs agree on them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from tokenry.core.clients import MAX_ACCESS_TOKEN_TTL


class RevocationKind(StrEnum):
    JTI = "jti"
    GRANT = "grant"
    SUBJECT = "subject"
    CLIENT = "client"


@dataclass(frozen=True, slots=True)
class Revocation:
    kind: RevocationKind
    value: str
    # Unix seconds; for SUBJECT/CLIENT, tokens with iat < not_before are revoked (docs/spec.md §4).
    not_before: int
    expires_at: int
    reason: str = ""


# --- rules (docs/spec.md §4, §4.7) ----------------------------------------------------------------

#: Kept past a token's ``exp``: a verifier accepts a token until ``exp + leeway``, and its leeway
#: may be configured up to ``tokenry.jose.MAX_LEEWAY`` (300 s; a unit test pins it).
EXPIRY_LEEWAY: Final = 300
#: docs/spec.md §4: subject/client watermarks sit this far past ``ceil(now)`` by default, so a token
#: minted by an issuer whose clock runs slightly ahead cannot survive its revocation.
DEFAULT_MAX_CLOCK_SKEW: Final = 2
#: The longest a token family can matter (refresh token absolute lifetime, docs/spec.md §2): the
#: upper bound a caller may ask for on grant/subject/client revocations, so a refresh family begun
#: before the revocation can be refused for as long as it could live.
MAX_FAMILY_LIFETIME: Final = 30 * 86_400


def watermark(now: float, max_clock_skew: int = DEFAULT_MAX_CLOCK_SKEW) -> int:
    """``not_before`` of a subject/client revocation: ceil(now) + the maximum clock skew.

    Tokens carry ``iat`` in whole seconds on the issuer's clock (never rounded up), so every
    token minted up to ``now`` on an issuer up to ``max_clock_skew`` seconds ahead has
    ``iat < not_before``.
    """
    if max_clock_skew < 0:
        raise ValueError("max_clock_skew must be >= 0")
    return math.ceil(now) + max_clock_skew


def token_expiry(now: float, exp: int | None) -> int | None:
    """``expires_at`` of a jti revocation for a token whose own ``exp`` is ``exp``.

    docs/spec.md §4.7: remembered until the token's own exp (plus the verifiers' leeway); when exp
    is unknown, until the global maximum access-token lifetime from now. A claimed exp beyond what
    any token can live is capped, not trusted. Returns None when the token can no longer be
    accepted anywhere: there is nothing to remember.
    """
    latest = int(now) + MAX_ACCESS_TOKEN_TTL
    expiry = latest if not exp else min(exp, latest)
    if expiry + EXPIRY_LEEWAY <= now:
        return None
    return expiry + EXPIRY_LEEWAY


def family_expiry(now: float, not_before: int, requested: int | None) -> int:
    """``expires_at`` of a grant/subject/client revocation (docs/spec.md §4.7).

    By default the latest exp of an access token issued before ``not_before`` (``now`` for
    grants): ``not_before + MAX_ACCESS_TOKEN_TTL`` plus the leeway. A producer that knows the
    family lives longer (refresh tokens) may ask for more, up to :data:`MAX_FAMILY_LIFETIME`.
    """
    default = max(not_before, math.ceil(now)) + MAX_ACCESS_TOKEN_TTL + EXPIRY_LEEWAY
    if not requested or requested <= default:
        return default
    return min(requested, math.ceil(now) + MAX_FAMILY_LIFETIME + EXPIRY_LEEWAY)


# --- the set ------------------------------------------------------------------------------------

# jti and gid entries are bucketed by expiry (a timing wheel of 64 s slots), so a sweep touches
# only what expired instead of scanning a million entries on the event loop.
_SLOT: Final = 64


class RevocationSet:
    """O(1) revocation checks keyed on jti, gid, sub and client_id — never on token bytes.

    Token strings are malleable (high-S ECDSA), so keying on bytes would let a re-encoded token
    slip past a denylist (docs/spec.md §3).
    """

    __slots__ = ("_client", "_gid", "_gid_wheel", "_jti", "_jti_wheel", "_sub")

    def __init__(self) -> None:
        # value -> expires_at
        self._jti: dict[str, int] = {}
        self._gid: dict[str, int] = {}
        # expiry slot -> values that were given an expiry in that slot (a value may sit in
        # several slots when its expiry was raised; the dict above has the truth)
        self._jti_wheel: dict[int, list[str]] = {}
        self._gid_wheel: dict[int, list[str]] = {}
        # value -> (not_before, expires_at)
        self._sub: dict[str, tuple[int, int]] = {}
        self._client: dict[str, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._jti) + len(self._gid) + len(self._sub) + len(self._client)

    def counts(self) -> dict[RevocationKind, int]:
        return {
            RevocationKind.JTI: len(self._jti),
            RevocationKind.GRANT: len(self._gid),
            RevocationKind.SUBJECT: len(self._sub),
            RevocationKind.CLIENT: len(self._client),
        }

    def apply(self, rev: Revocation) -> None:
        if rev.kind is RevocationKind.JTI:
            _raise_expiry(self._jti, self._jti_wheel, rev.value, rev.expires_at)
        elif rev.kind is RevocationKind.GRANT:
            _raise_expiry(self._gid, self._gid_wheel, rev.value, rev.expires_at)
        elif rev.kind is RevocationKind.SUBJECT:
            _raise_watermark(self._sub, rev.value, rev.not_before, rev.expires_at)
        else:
            _raise_watermark(self._client, rev.value, rev.not_before, rev.expires_at)

    def apply_all(self, revs: Iterable[Revocation]) -> None:
        for rev in revs:
            self.apply(rev)

    def load_denylist(
        self, kind: RevocationKind, values: Sequence[str], expires_at: Sequence[int]
    ) -> None:
        """Bulk-apply jti or grant entries given as parallel columns (snapshot loading)."""
        if len(values) != len(expires_at):
            raise ValueError("values and expires_at differ in length")
        if kind is RevocationKind.JTI:
            table, wheel = self._jti, self._jti_wheel
        elif kind is RevocationKind.GRANT:
            table, wheel = self._gid, self._gid_wheel
        else:
            raise ValueError(f"{kind} is not a denylist kind")
        get = table.get
        for value, exp in zip(values, expires_at, strict=True):
            current = get(value)
            if current is None or exp > current:
                table[value] = exp
                slot = exp // _SLOT
                bucket = wheel.get(slot)
                if bucket is None:
                    wheel[slot] = [value]
                else:
                    bucket.append(value)

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
        """Drop every entry whose ``expires_at <= now``; returns how many were dropped.

        Touches only the expiry slots that are due (plus the few watermarks), not every entry.
        """
        dropped = _sweep_wheel(self._jti, self._jti_wheel, now)
        dropped += _sweep_wheel(self._gid, self._gid_wheel, now)
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

    def values(self, kind: RevocationKind) -> set[str]:
        """The revoked values of one kind (tests and tools)."""
        if kind is RevocationKind.JTI:
            return set(self._jti)
        if kind is RevocationKind.GRANT:
            return set(self._gid)
        if kind is RevocationKind.SUBJECT:
            return set(self._sub)
        return set(self._client)


def _raise_expiry(
    table: dict[str, int], wheel: dict[int, list[str]], value: str, expires_at: int
) -> None:
    current = table.get(value)
    if current is None or expires_at > current:
        table[value] = expires_at
        slot = expires_at // _SLOT
        bucket = wheel.get(slot)
        if bucket is None:
            wheel[slot] = [value]
        else:
            bucket.append(value)


def _raise_watermark(
    marks: dict[str, tuple[int, int]], value: str, not_before: int, expires_at: int
) -> None:
    current = marks.get(value)
    if current is None:
        marks[value] = (not_before, expires_at)
    else:
        marks[value] = (max(current[0], not_before), max(current[1], expires_at))


def _sweep_wheel(table: dict[str, int], wheel: dict[int, list[str]], now: float) -> int:
    due = math.floor(now) // _SLOT
    dropped = 0
    for slot in [s for s in wheel if s <= due]:
        keep: list[str] = []
        for value in wheel.pop(slot):
            exp = table.get(value)
            if exp is None:
                continue  # already dropped through another slot
            if exp <= now:
                del table[value]
                dropped += 1
            elif exp // _SLOT == slot:
                keep.append(value)  # the current slot: not due yet
        if keep:
            wheel[slot] = keep
    return dropped


@dataclass(slots=True)
class SnapshotBatch:
    """A slice of a revocation snapshot as columns (how snapshots travel and load fast)."""

    jtis: list[str]
    jti_expires_at: list[int]
    grant_ids: list[str]
    grant_expires_at: list[int]
    # (value, not_before, expires_at)
    subjects: list[tuple[str, int, int]]
    clients: list[tuple[str, int, int]]

    @classmethod
    def empty(cls) -> SnapshotBatch:
        return cls([], [], [], [], [], [])

    def __len__(self) -> int:
        return len(self.jtis) + len(self.grant_ids) + len(self.subjects) + len(self.clients)

    def add(self, kind: str, value: str, not_before: int, expires_at: int) -> None:
        if kind == "jti":
            self.jtis.append(value)
            self.jti_expires_at.append(expires_at)
        elif kind == "grant":
            self.grant_ids.append(value)
            self.grant_expires_at.append(expires_at)
        elif kind == "subject":
            self.subjects.append((value, not_before, expires_at))
        elif kind == "client":
            self.clients.append((value, not_before, expires_at))
        else:
            raise ValueError(f"unknown revocation kind {kind!r}")

    def load_into(self, revs: RevocationSet) -> None:
        revs.load_denylist(RevocationKind.JTI, self.jtis, self.jti_expires_at)
        revs.load_denylist(RevocationKind.GRANT, self.grant_ids, self.grant_expires_at)
        for value, nbf, exp in self.subjects:
            revs.apply(Revocation(RevocationKind.SUBJECT, value, nbf, exp))
        for value, nbf, exp in self.clients:
            revs.apply(Revocation(RevocationKind.CLIENT, value, nbf, exp))

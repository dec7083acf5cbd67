"""The signing-key lifecycle (docs/spec.md §5) as pure logic: states, legal moves, and what is due.

::

    pending ──► active ──► retiring ──► retired
       │           │           │           │
       └───────────┴─────┬─────┴───────────┘
                         ▼
                      revoked          (the emergency exit, from any state)

- ``pending``: published in the JWKS, not signing yet. It may sign once it has been published
  for ``publish_lead`` (≥ the longest time a verifier caches the JWKS), so no verifier meets a
  token signed by a key it has not fetched (publish the next key before using it).
- ``active``: the one key issuers sign with, per key set (use, alg). It always has a pending
  successor, so an emergency revocation promotes the successor at once and issuance never stops.
- ``retiring``: still published, no longer signing, for ``retention`` (≥ the maximum token
  lifetime + leeway) so that every token it signed expires before its key disappears.
- ``retired``: unpublished; the private key is destroyed.
- ``revoked``: unpublished and rejected by every verifier at once; the private key is destroyed.

Everything here takes ``now`` (unix seconds) as an argument: no clock, no I/O, no randomness.
The key rotator's leader turns a :class:`Plan` into one database transaction.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

# Defined in core/errors.py (one errors.py per package); importable here as before.
from tokenry.core.errors import IllegalTransition as IllegalTransition  # noqa: PLC0414
from tokenry.core.errors import LifecycleError as LifecycleError  # noqa: PLC0414
from tokenry.core.errors import NoActiveKey as NoActiveKey  # noqa: PLC0414
from tokenry.core.errors import SuccessorNotReady as SuccessorNotReady  # noqa: PLC0414
from tokenry.core.errors import UnknownKey as UnknownKey  # noqa: PLC0414
from tokenry.core.signing import SUPPORTED_ALGS


class KeyState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    RETIRING = "retiring"
    RETIRED = "retired"
    REVOKED = "revoked"


# States whose public key is in the JWKS.
PUBLISHED: Final = frozenset({KeyState.PENDING, KeyState.ACTIVE, KeyState.RETIRING})
# States that never change again except to revoked; their private key is destroyed.
ENDED: Final = frozenset({KeyState.RETIRED, KeyState.REVOKED})

ALLOWED: Final[Mapping[KeyState, frozenset[KeyState]]] = {
    KeyState.PENDING: frozenset({KeyState.ACTIVE, KeyState.REVOKED}),
    KeyState.ACTIVE: frozenset({KeyState.RETIRING, KeyState.REVOKED}),
    KeyState.RETIRING: frozenset({KeyState.RETIRED, KeyState.REVOKED}),
    KeyState.RETIRED: frozenset({KeyState.REVOKED}),
    KeyState.REVOKED: frozenset(),
}

USES: Final = ("access", "id")


@dataclass(frozen=True, slots=True, order=True)
class KeySet:
    """The keys of one (use, alg): at most one active and one pending at a time."""

    use: str
    alg: str

    def __post_init__(self) -> None:
        if self.use not in USES:
            raise ValueError(f"key use must be one of {', '.join(USES)}, not {self.use!r}")
        if self.alg not in SUPPORTED_ALGS:
            raise ValueError(f"alg must be one of {', '.join(SUPPORTED_ALGS)}, not {self.alg!r}")

    def __str__(self) -> str:
        return f"{self.use}:{self.alg}"

    @classmethod
    def parse(cls, text: str) -> KeySet:
        """``access:ES256`` or ``id:RS256``."""
        use, sep, alg = text.strip().partition(":")
        if not sep:
            raise ValueError(f"a key set is written use:alg (e.g. access:ES256), not {text!r}")
        return cls(use, alg)


def parse_keysets(text: str) -> tuple[KeySet, ...]:
    """A comma-separated list of key sets, without duplicates, in the order given."""
    found: list[KeySet] = []
    for part in text.split(","):
        if part.strip():
            keyset = KeySet.parse(part)
            if keyset not in found:
                found.append(keyset)
    if not found:
        raise ValueError("at least one key set is needed (e.g. access:ES256)")
    return tuple(found)


@dataclass(frozen=True, slots=True)
class Policy:
    """Lifecycle timing, in seconds.

    Attributes:
        rotation_interval: how long a key signs before its successor takes over.
        publish_lead: the least time a key is published before it signs.
        retention: how long a key stays published after it stopped signing.
    """

    rotation_interval: float
    publish_lead: float
    retention: float

    def __post_init__(self) -> None:
        for name in ("rotation_interval", "publish_lead", "retention"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds")
        if self.rotation_interval < self.publish_lead:
            # The successor is published when its predecessor activates: with a shorter
            # interval every rotation would wait for its successor to become usable.
            raise ValueError("rotation_interval must be at least publish_lead")


def timing_problems(
    policy: Policy, *, jwks_cache_ttl: float, max_token_ttl: float, leeway: float
) -> list[str]:
    """The docs/spec.md §5 timing rules this policy breaks (empty when it is safe).

    Args:
        jwks_cache_ttl: the longest time any verifier may serve the JWKS from its cache.
        max_token_ttl: the longest lifetime of a token signed by these keys.
        leeway: what a verifier tolerates past ``exp`` (clock skew), plus how long an issuer may
            take to notice that its key stopped being active (its periodic key check).
    """
    problems = []
    if policy.publish_lead < jwks_cache_ttl:
        problems.append(
            f"publish lead {policy.publish_lead:g}s is shorter than the JWKS cache lifetime"
            f" {jwks_cache_ttl:g}s: a verifier could meet a token signed by a key it has not"
            " fetched yet"
        )
    if policy.retention < max_token_ttl + leeway:
        problems.append(
            f"retention {policy.retention:g}s is shorter than the maximum token lifetime"
            f" {max_token_ttl:g}s + leeway {leeway:g}s: a valid token's key would be unpublished"
            " before the token expires"
        )
    return problems


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What the lifecycle needs to know about a key (times are unix seconds)."""

    kid: str
    keyset: KeySet
    state: KeyState
    created_at: float
    activated_at: float | None = None
    retiring_at: float | None = None

    def ready_at(self, policy: Policy) -> float:
        """When a pending key may start signing."""
        return self.created_at + policy.publish_lead

    def rotate_at(self, policy: Policy) -> float:
        """When an active key is due to hand over to its successor."""
        return (self.activated_at or self.created_at) + policy.rotation_interval

    def retire_at(self, policy: Policy) -> float:
        """When a retiring key may be unpublished."""
        return (self.retiring_at or self.created_at) + policy.retention


@dataclass(frozen=True, slots=True)
class NewKey:
    """Generate a key for ``keyset`` and store it in ``state`` (pending, or active at bootstrap)."""

    keyset: KeySet
    state: KeyState

    def __post_init__(self) -> None:
        if self.state not in (KeyState.PENDING, KeyState.ACTIVE):
            raise ValueError("a new key is pending, or active when its key set has none")


@dataclass(frozen=True, slots=True)
class Transition:
    kid: str
    keyset: KeySet
    src: KeyState
    dst: KeyState

    def __post_init__(self) -> None:
        check_transition(self.kid, self.src, self.dst)


Change = NewKey | Transition


def check_transition(kid: str, src: KeyState, dst: KeyState) -> None:
    if dst not in ALLOWED[src]:
        raise IllegalTransition(kid, src, dst)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do now, and when there will next be something to do (None: nothing scheduled).

    Changes are in an order a database with "one active / one pending per key set" unique
    indexes accepts: demotions before promotions, promotions before the new pending key.
    """

    changes: tuple[Change, ...] = ()
    next_due: float | None = None


@dataclass
class _Slots:
    active: list[KeyInfo] = field(default_factory=list)
    pending: list[KeyInfo] = field(default_factory=list)
    retiring: list[KeyInfo] = field(default_factory=list)


def _by_keyset(keys: Iterable[KeyInfo]) -> dict[KeySet, _Slots]:
    slots: dict[KeySet, _Slots] = {}
    for key in keys:
        slot = slots.setdefault(key.keyset, _Slots())
        if key.state is KeyState.ACTIVE:
            slot.active.append(key)
        elif key.state is KeyState.PENDING:
            slot.pending.append(key)
        elif key.state is KeyState.RETIRING:
            slot.retiring.append(key)
    for slot in slots.values():
        # Newest first: the database allows one of each, but be robust to history.
        slot.active.sort(key=lambda k: k.activated_at or k.created_at, reverse=True)
        slot.pending.sort(key=lambda k: k.created_at)
    return slots


def _promote(pending: KeyInfo) -> Transition:
    return Transition(pending.kid, pending.keyset, KeyState.PENDING, KeyState.ACTIVE)


def _demote(active: KeyInfo, dst: KeyState) -> Transition:
    return Transition(active.kid, active.keyset, KeyState.ACTIVE, dst)


def plan(keys: Iterable[KeyInfo], keysets: Iterable[KeySet], policy: Policy, now: float) -> Plan:
    """The scheduled maintenance due at ``now``.

    For each configured key set: a set with no key gets an active key and a pending successor at
    once (first start: no token exists yet, and issuance must not wait); an active key without a
    successor gets one; an active key whose rotation is due hands over to its successor once
    that successor has been published for the publish lead. Every retiring key (of any key set)
    is retired once its retention has passed. Key sets that are not configured are left alone
    apart from that: decommissioning a key set is an operator's decision.
    """
    keys = list(keys)
    slots = _by_keyset(keys)
    changes: list[Change] = []
    due: list[float] = []
    for keyset in dict.fromkeys(keysets):
        slot = slots.get(keyset, _Slots())
        if not slot.active:
            if slot.pending:
                # Only after an abnormal history (e.g. a revoked key with no successor); an
                # unpublished gap is worse than a short lead, and verifiers refetch on the event.
                changes.append(_promote(slot.pending[0]))
            else:
                changes.append(NewKey(keyset, KeyState.ACTIVE))
            changes.append(NewKey(keyset, KeyState.PENDING))
            continue
        active = slot.active[0]
        if not slot.pending:
            changes.append(NewKey(keyset, KeyState.PENDING))
            continue
        successor = slot.pending[0]
        when = max(active.rotate_at(policy), successor.ready_at(policy))
        if when <= now:
            changes += [
                _demote(active, KeyState.RETIRING),
                _promote(successor),
                NewKey(keyset, KeyState.PENDING),
            ]
        else:
            due.append(when)
    for slot in slots.values():
        for key in slot.retiring:
            when = key.retire_at(policy)
            if when <= now:
                changes.insert(
                    0, Transition(key.kid, key.keyset, KeyState.RETIRING, KeyState.RETIRED)
                )
            else:
                due.append(when)
    if changes:
        return Plan(tuple(changes), now)
    return Plan((), min(due) if due else None)


def plan_rotate(
    keys: Iterable[KeyInfo], keyset: KeySet, policy: Policy, now: float, *, force: bool = False
) -> tuple[Change, ...]:
    """An on-demand rotation of ``keyset``: the successor signs from now on.

    Without ``force`` the successor must have been published for the publish lead, as in a
    scheduled rotation; ``force`` skips that wait (verifiers that have not fetched it yet do so
    on the key event, or on their first unknown-kid refresh).

    Raises:
        NoActiveKey: the key set has no active key.
        SuccessorNotReady: the successor is too fresh and ``force`` is not set.
    """
    slot = _by_keyset(keys).get(keyset, _Slots())
    if not slot.active:
        raise NoActiveKey(keyset)
    active = slot.active[0]
    if not slot.pending:
        # Cannot happen while the invariant holds; a fresh successor is then the only way on.
        if not force:
            raise SuccessorNotReady("(none yet)", now + policy.publish_lead)
        return (
            _demote(active, KeyState.RETIRING),
            NewKey(keyset, KeyState.ACTIVE),
            NewKey(keyset, KeyState.PENDING),
        )
    successor = slot.pending[0]
    if not force and successor.ready_at(policy) > now:
        raise SuccessorNotReady(successor.kid, successor.ready_at(policy))
    return (
        _demote(active, KeyState.RETIRING),
        _promote(successor),
        NewKey(keyset, KeyState.PENDING),
    )


def plan_revoke(keys: Iterable[KeyInfo], kid: str) -> tuple[Change, ...]:
    """Revoke ``kid`` (any state). Revoking an active key promotes its successor in the same
    step, and every revoked active or pending key is replaced by a new pending one, so the key
    set keeps an active key and a published successor. Revoking a revoked key changes nothing.

    ``keys`` must hold every published key plus ``kid`` itself whatever its state.

    Raises:
        UnknownKey: no key has this kid.
    """
    keys = list(keys)
    target = next((k for k in keys if k.kid == kid), None)
    if target is None:
        raise UnknownKey(kid)
    if target.state is KeyState.REVOKED:
        return ()
    revoke = Transition(kid, target.keyset, target.state, KeyState.REVOKED)
    if target.state is KeyState.ACTIVE:
        slot = _by_keyset(keys).get(target.keyset, _Slots())
        if slot.pending:
            return (revoke, _promote(slot.pending[0]), NewKey(target.keyset, KeyState.PENDING))
        return (
            revoke,
            NewKey(target.keyset, KeyState.ACTIVE),
            NewKey(target.keyset, KeyState.PENDING),
        )
    if target.state is KeyState.PENDING:
        return (revoke, NewKey(target.keyset, KeyState.PENDING))
    return (revoke,)


def announce_order(states: Iterable[KeyState]) -> list[int]:
    """Indexes of a transaction's key events in the order to publish them: activations first.

    Issuers then switch to the new active key on the very first event of the batch, before the
    event that tells them the old one stopped signing, so issuance has no gap.
    """
    indexed = list(enumerate(states))
    return [i for i, _ in sorted(indexed, key=lambda p: (p[1] is not KeyState.ACTIVE, p[0]))]

"""Retry delays: capped exponential backoff with jitter, as plain data (no sleeping, no clock).

Every retry loop in Tokenry (PostgreSQL and NATS connects, the outbox feed and relay, the
verifier's stream and snapshot retries, the token sources' early refresh, the leader leases)
asks one :class:`Backoff` how long to wait; the loop does the waiting itself, with its own
``asyncio`` wait or, for a sans-I/O machine, against the ``now`` of its injected clock
(:meth:`Backoff.retry_at`). So the schedule is unit-tested without time passing.

Jitter spreads a fleet's retries (every verifier reconnecting after one NATS restart): each
delay is drawn from ``[d × (1 - jitter), d]``, so a delay never exceeds the documented cap.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff", "BackoffPolicy"]


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """How delays grow.

    Args:
        initial: the first delay, in seconds (> 0).
        maximum: the cap, in seconds (>= ``initial``).
        multiplier: growth per failure (>= 1).
        jitter: the fraction of each delay that is random, in [0, 1]; 0 = none.
    """

    initial: float
    maximum: float
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError("backoff needs 0 < initial <= maximum")
        if self.multiplier < 1:
            raise ValueError("backoff multiplier must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter must be in [0, 1]")


class Backoff:
    """The delays of successive failures under one :class:`BackoffPolicy`.

    ``next_delay()`` after each failure, ``reset()`` after a success. ``rng``: inject a seeded
    ``random.Random`` for reproducible tests (jitter is not a security property).
    """

    __slots__ = ("_current", "_rng", "failures", "policy")

    def __init__(self, policy: BackoffPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._current = policy.initial
        #: failures since the last reset
        self.failures = 0

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt; each call counts one more failure."""
        p = self.policy
        base = self._current
        self._current = min(base * p.multiplier, p.maximum)
        self.failures += 1
        if p.jitter == 0:
            return base
        return base * (1.0 - p.jitter * self._rng.random())

    def retry_at(self, now: float) -> float:
        """When the next attempt may start, for a failure at ``now`` (the caller's clock)."""
        return now + self.next_delay()

    def reset(self) -> None:
        """A success: the next failure waits ``initial`` again."""
        self._current = self.policy.initial
        self.failures = 0

"""The token refresh state machine, sans I/O: one for the aio and the sync token source.

It decides, from a monotonic ``now`` passed in, whether the cached token can be used, whether
one caller should refresh it early, or whether callers must wait for a fetch; and it keeps the
backoff after a failed early refresh. It fetches nothing, sleeps never and holds no lock: the
sources (:mod:`tokenry.client._sources`) run the fetch (a task, or a thread under a lock) and
report its outcome with :meth:`RefreshMachine.fetch_started`, :meth:`~RefreshMachine.fetched`
and :meth:`~RefreshMachine.fetch_failed`.

::

    no token ──FETCH──► held ── now ≥ refresh_at ──REFRESH_EARLY (one caller; others USE) ──►
      ▲                  │                            failed: USE until usable_until, retry
      │                  └── now ≥ usable_until ──FETCH (callers wait) ──►
      └── invalidate(the token a server refused)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from tokenry.core.backoff import Backoff, BackoffPolicy

__all__ = ["Held", "IssuedToken", "RefreshMachine", "RefreshPolicy", "Step"]


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """An access token and its lifetime in seconds (RFC 6749 §5.1 ``expires_in``)."""

    access_token: str = field(repr=False)
    expires_in: float


@dataclass(frozen=True, slots=True)
class RefreshPolicy:
    """When a cached token is refreshed.

    Args:
        refresh_ratio: refresh early once this fraction of the lifetime has passed.
        expiry_margin: stop using a token this many seconds before it expires (clock skew and
            transit), capped at a tenth of its lifetime.
        retry_backoff: first delay after a failed early refresh, doubling up to ``max_backoff``.
        retry_jitter: the random fraction of each retry delay (``tokenry.core.backoff``), to
            spread the retries of many sources; 0 = exact doubling.
    """

    refresh_ratio: float = 0.75
    expiry_margin: float = 30.0
    retry_backoff: float = 1.0
    max_backoff: float = 30.0
    retry_jitter: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.refresh_ratio <= 1.0:
            raise ValueError("refresh_ratio must be in (0, 1]")
        if self.expiry_margin < 0 or self.retry_backoff <= 0 or self.max_backoff <= 0:
            raise ValueError("margins and backoffs must be positive")
        if not 0.0 <= self.retry_jitter <= 1.0:
            raise ValueError("retry_jitter must be in [0, 1]")

    def backoff(self) -> Backoff:
        """The retry schedule of one source (the one backoff helper)."""
        return Backoff(
            BackoffPolicy(
                initial=self.retry_backoff,
                maximum=max(self.max_backoff, self.retry_backoff),
                jitter=self.retry_jitter,
            )
        )

    def plan(self, token: IssuedToken, fetched_at: float) -> Held:
        """``fetched_at`` is when the fetch *started* (monotonic), so the plan errs early."""
        lifetime = token.expires_in
        usable = fetched_at + lifetime - min(self.expiry_margin, lifetime / 10)
        refresh = min(fetched_at + lifetime * self.refresh_ratio, usable)
        return Held(token.access_token, refresh, usable)


class Held(NamedTuple):
    """The cached token and its two deadlines (monotonic seconds)."""

    value: str
    refresh_at: float
    usable_until: float


class Step(Enum):
    """What a caller of ``token()`` does next."""

    USE = "use"  # return the held token
    REFRESH_EARLY = "refresh_early"  # this caller starts a refresh, but may return the held one
    FETCH = "fetch"  # no usable token: wait for a fetch (join the one in flight, or start it)


class RefreshMachine:
    """The refresh decisions and bookkeeping of one token source (see the module docstring).

    Attributes:
        held: the cached token, or None.
        fetching: a fetch is in flight (at most one, which the sources guarantee).
        fetches: fetches started (tests and metrics).
    """

    __slots__ = ("_backoff", "_retry_at", "fetches", "fetching", "held", "policy")

    def __init__(self, policy: RefreshPolicy | None = None) -> None:
        self.policy = policy or RefreshPolicy()
        self.held: Held | None = None
        self.fetching = False
        self.fetches = 0
        self._retry_at = float("-inf")
        self._backoff = self.policy.backoff()

    def step(self, held: Held | None, now: float) -> Step:
        """What to do with ``held`` (the caller's snapshot of :attr:`held`) at ``now``."""
        if held is not None:
            if now < held.refresh_at:
                return Step.USE
            if now < held.usable_until:
                if not self.fetching and now >= self._retry_at:
                    return Step.REFRESH_EARLY
                return Step.USE
        return Step.FETCH

    def fetch_started(self, now: float) -> float:
        """A fetch begins at ``now``; returns ``now``, to be handed to :meth:`fetched`."""
        self.fetching = True
        self.fetches += 1
        return now

    def fetched(self, token: IssuedToken, started: float) -> Held:
        """The fetch that began at ``started`` succeeded: hold its token, reset the backoff."""
        self.fetching = False
        self.held = held = self.policy.plan(token, started)
        self._backoff.reset()
        self._retry_at = float("-inf")
        return held

    def fetch_failed(self, now: float) -> None:
        """The fetch failed at ``now``: no early refresh before the backoff has passed."""
        self.fetching = False
        self._retry_at = self._backoff.retry_at(now)

    def invalidate(self, token: str) -> bool:
        """A server refused ``token``: drop it, unless another caller already replaced it (so
        a burst of refusals causes one fetch). True if it was dropped."""
        held = self.held
        if held is not None and held.value == token:
            self.held = None
            return True
        return False

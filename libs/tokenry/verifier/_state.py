"""What a verifier knows from the event stream, and whether it can prove that is current.

Events are applied as they arrive (applying is commutative); ``applied_seq`` is the highest
*contiguous* outbox seq applied, so a hole is visible (docs/design.md §4).

A proof of currency is dated by this verifier's own monotonic clock, at a moment it can vouch
for (docs/spec.md §4.4, docs/events.md): it notes the time, asks the revocation service for the head
seq committed in PostgreSQL (a read made after the question arrived), and once every seq up to
that head is applied it was current *as of the moment it asked*. A snapshot is proven the same
way (as of the moment it was requested). Nothing that waited in a buffer can make stale state
current: a heartbeat only announces a head (so a lag is noticed) and triggers a new question;
a late answer only yields an old proof. The state is stale when its newest proof is older than
the staleness budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tokenry.core.clock import Clock
from tokenry.core.revocations import Revocation, RevocationSet

DEFAULT_STALENESS_BUDGET = 30.0
# Unmet answers kept at once; the exchange is single-flight, so a handful is plenty.
_MAX_PENDING = 8


class RevocationState:
    def __init__(self, clock: Clock, *, staleness_budget: float = DEFAULT_STALENESS_BUDGET) -> None:
        if staleness_budget <= 0:
            raise ValueError("staleness_budget must be > 0 seconds")
        self._clock = clock
        self.budget = staleness_budget
        self.revocations = RevocationSet()
        self.applied_seq = 0
        #: the highest head seq announced or answered (0 before the first one)
        self.head_seq = 0
        self._ahead: set[int] = set()  # applied seqs above a hole
        self._proven_at = float("-inf")  # monotonic time of the last proof
        # Answers not yet met: (head seq, monotonic time the question was asked), heads rising.
        self._pending: list[tuple[int, float]] = []
        # Since when a head announced by a heartbeat has not been applied (None: caught up).
        self._behind_since: float | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        #: called with the new ``applied_seq`` whenever it advances (metrics, benchmarks)
        self.on_advance: Callable[[int], None] | None = None
        self._proof = asyncio.Event()  # set each time the state is proven current

    # --- feeding ------------------------------------------------------------------------------

    def replace(
        self, revocations: RevocationSet, seq: int, *, proven_at: float | None = None
    ) -> None:
        """Swap in a snapshot current to ``seq`` in one step (no window without revocations).

        ``proven_at`` is the monotonic time the snapshot was requested: it was current then.
        Events seen before the snapshot have seqs ≤ ``seq`` (the snapshot was read after they
        were committed), so any hole above the old position is gone with it.
        """
        self.revocations = revocations
        self.applied_seq = seq
        self._ahead.clear()
        if proven_at is not None:
            self._proven_at = max(self._proven_at, proven_at)
            self._proof.set()
        self._advance(moved=True)

    def apply(self, seq: int, revocation: Revocation | None = None) -> None:
        """Apply one event; a duplicate or already-covered seq changes nothing but is harmless."""
        if revocation is not None:
            self.revocations.apply(revocation)
        if seq <= self.applied_seq:
            return
        if seq == self.applied_seq + 1 and not self._ahead:
            # The common case, kept lean: the next event in order.
            self.applied_seq = seq
            self._advance(moved=True)
            return
        self._ahead.add(seq)
        self._advance()

    def announce(self, head_seq: int) -> None:
        """A heartbeat said the head is at least ``head_seq``.

        It proves nothing (it may have waited in a buffer, and the relay's clock is not ours):
        it only lets :meth:`behind_for` notice a lag that resuming from the stream can fix.
        """
        self.head_seq = max(self.head_seq, head_seq)
        if head_seq > self.applied_seq and self._behind_since is None:
            self._behind_since = self._clock.monotonic()

    def prove(self, head_seq: int, asked_at: float) -> None:
        """The head committed in PostgreSQL was ``head_seq`` at some moment after ``asked_at``
        (this verifier's monotonic clock, read before it asked): once every seq up to it is
        applied, the state was current as of ``asked_at``."""
        self.head_seq = max(self.head_seq, head_seq)
        if self.applied_seq >= head_seq:
            self._met(asked_at)
            return
        if self._behind_since is None:
            self._behind_since = asked_at
        pending = self._pending
        # Keep heads rising with their times: an answer with a lower head asked later is met
        # no later than the one before it, so it replaces nothing and is kept in order.
        pending.append((head_seq, asked_at))
        pending.sort()
        if len(pending) > _MAX_PENDING:
            del pending[-1]  # forgetting an unmet answer only delays a proof, never makes one

    def sweep(self) -> int:
        return self.revocations.sweep(self._clock.now())

    # --- what we know -------------------------------------------------------------------------

    @property
    def has_gap(self) -> bool:
        """Events above a hole were applied: the hole is a real loss until filled."""
        return bool(self._ahead)

    def first_ahead(self) -> int | None:
        """The lowest seq applied above a hole (None without a hole)."""
        return min(self._ahead) if self._ahead else None

    def behind_for(self) -> float:
        """Seconds since a head seq was announced or answered that is still not applied (0 if
        none). A healthy verifier catches up within milliseconds; a lasting lag means lost
        delivery."""
        if self._behind_since is None:
            return 0.0
        return self._clock.monotonic() - self._behind_since

    def is_stale(self) -> bool:
        return self._clock.monotonic() - self._proven_at > self.budget

    def proof_age(self) -> float:
        return self._clock.monotonic() - self._proven_at

    async def wait_current(self) -> None:
        """Wait until the state is proven current (an answered head seq is applied)."""
        while self.is_stale():
            self._proof.clear()
            await self._proof.wait()

    async def wait_for_seq(self, seq: int) -> None:
        """Wait until every event up to ``seq`` is applied (tests, tools, read-your-writes)."""
        if self.applied_seq >= seq:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, fut))
        await fut

    # --- internals ----------------------------------------------------------------------------

    def _advance(self, *, moved: bool = False) -> None:
        ahead = self._ahead
        while ahead and self.applied_seq + 1 in ahead:
            ahead.remove(self.applied_seq + 1)
            self.applied_seq += 1
            moved = True
        if moved:
            applied = self.applied_seq
            pending = self._pending
            if pending and pending[0][0] <= applied:
                met = [asked for head, asked in pending if head <= applied]
                self._pending = [p for p in pending if p[0] > applied]
                self._met(max(met))
            if self._behind_since is not None and applied >= self.head_seq:
                self._behind_since = None
            if self._waiters:
                self._wake()
            if self.on_advance is not None:
                self.on_advance(self.applied_seq)

    def _met(self, asked_at: float) -> None:
        self._proven_at = max(self._proven_at, asked_at)
        self._proof.set()

    def _wake(self) -> None:
        keep = []
        for seq, fut in self._waiters:
            if seq <= self.applied_seq:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((seq, fut))
        self._waiters = keep

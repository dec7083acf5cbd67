"""What a verifier knows from the event stream, and whether it can prove that is current.

Events are applied as they arrive (applying is commutative); ``applied_seq`` is the highest
*contiguous* outbox seq applied, so a hole is visible (ARCHITECTURE §4). Heartbeats carry the
last seq committed in PostgreSQL: the verifier is proven current at the moment of a heartbeat
once it has applied that seq, and it is stale when no such proof is younger than its budget
(SPEC §4.4). A snapshot is a proof too: it is current to the head at the time it was read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tokenry.core.clock import Clock
from tokenry.core.revocations import Revocation, RevocationSet

DEFAULT_STALENESS_BUDGET = 30.0


class RevocationState:
    def __init__(self, clock: Clock, *, staleness_budget: float = DEFAULT_STALENESS_BUDGET) -> None:
        if staleness_budget <= 0:
            raise ValueError("staleness_budget must be > 0 seconds")
        self._clock = clock
        self.budget = staleness_budget
        self.revocations = RevocationSet()
        self.applied_seq = 0
        #: the highest head seq a heartbeat announced (0 before the first one)
        self.head_seq = 0
        self._ahead: set[int] = set()  # applied seqs above a hole
        self._proven_at = float("-inf")  # monotonic time of the last proof
        self._pending_proof: tuple[int, float] | None = None  # (head seq, when it was seen)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        #: called with the new ``applied_seq`` whenever it advances (metrics, benchmarks)
        self.on_advance: Callable[[int], None] | None = None
        self._proof = asyncio.Event()  # set each time the state is proven current

    # --- feeding ------------------------------------------------------------------------------

    def reset(self, seq: int) -> None:
        """Start from the stream's beginning: everything up to ``seq`` is irrelevant."""
        self.applied_seq = seq
        self._ahead = {s for s in self._ahead if s > seq}
        self._advance()

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

    def skip_to(self, seq: int) -> None:
        """Give up on the events up to ``seq`` (they are gone from every source; replay mode)."""
        if seq > self.applied_seq:
            self.applied_seq = seq
            self._ahead = {s for s in self._ahead if s > seq}
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

    def on_heartbeat(self, head_seq: int) -> None:
        now = self._clock.monotonic()
        self.head_seq = max(self.head_seq, head_seq)
        if self.applied_seq >= head_seq:
            self._proven_at = now
            self._pending_proof = None
            self._proof.set()
        elif self._pending_proof is None:
            # Keep the oldest unmet proof: it is the one that can be met first.
            self._pending_proof = (head_seq, now)

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
        """Seconds since a heartbeat announced a head seq that is still not applied (0 if none).

        A healthy verifier catches up within milliseconds; a lasting lag means lost delivery.
        """
        if self._pending_proof is None:
            return 0.0
        return self._clock.monotonic() - self._pending_proof[1]

    def is_stale(self) -> bool:
        return self._clock.monotonic() - self._proven_at > self.budget

    def proof_age(self) -> float:
        return self._clock.monotonic() - self._proven_at

    async def wait_current(self) -> None:
        """Wait until the state is proven current (a heartbeat's head seq is applied)."""
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
        pending = self._pending_proof
        if pending is not None and self.applied_seq >= pending[0]:
            self._proven_at = max(self._proven_at, pending[1])
            self._pending_proof = None
            self._proof.set()
        if moved:
            if self._waiters:
                self._wake()
            if self.on_advance is not None:
                self.on_advance(self.applied_seq)

    def _wake(self) -> None:
        keep = []
        for seq, fut in self._waiters:
            if seq <= self.applied_seq:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((seq, fut))
        self._waiters = keep

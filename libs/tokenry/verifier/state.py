"""What a verifier knows from the event stream, and whether it can prove that is current.

Events are applied as they arrive (applying is commutative); ``applied_seq`` is the highest
*contiguous* outbox seq applied, so a hole is visible (ARCHITECTURE §4). Heartbeats carry the
last seq committed in PostgreSQL: the verifier is proven current at the moment of a heartbeat
once it has applied that seq, and it is stale when no such proof is younger than its budget
(SPEC §4.4).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tokenry.core.clock import Clock
from tokenry.core.revocations import Revocation, RevocationSet

DEFAULT_STALENESS_BUDGET = 30.0


class RevocationState:
    def __init__(self, clock: Clock, *, staleness_budget: float = DEFAULT_STALENESS_BUDGET) -> None:
        self._clock = clock
        self.budget = staleness_budget
        self.revocations = RevocationSet()
        self.applied_seq = 0
        self._ahead: set[int] = set()  # applied seqs above a hole
        self._proven_at = float("-inf")  # monotonic time of the last proof
        self._pending_proof: tuple[int, float] | None = None  # (head seq, when it was seen)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.on_advance: Callable[[int], None] | None = None
        self._proof = asyncio.Event()  # set each time the state is proven current

    def reset(self, seq: int) -> None:
        """Start from a snapshot (or the stream's beginning) current to ``seq``."""
        self.applied_seq = seq
        self._ahead = {s for s in self._ahead if s > seq}
        self._advance()

    def apply(self, seq: int, revocation: Revocation | None = None) -> None:
        """Apply one event; a duplicate or already-covered seq changes nothing but is harmless."""
        if revocation is not None:
            self.revocations.apply(revocation)
        if seq <= self.applied_seq:
            return
        self._ahead.add(seq)
        self._advance()

    @property
    def has_gap(self) -> bool:
        return bool(self._ahead)

    def _advance(self) -> None:
        moved = False
        while self.applied_seq + 1 in self._ahead:
            self._ahead.remove(self.applied_seq + 1)
            self.applied_seq += 1
            moved = True
        if self._pending_proof is not None and self.applied_seq >= self._pending_proof[0]:
            self._proven_at = max(self._proven_at, self._pending_proof[1])
            self._pending_proof = None
            self._proof.set()
        if moved:
            self._wake()
            if self.on_advance is not None:
                self.on_advance(self.applied_seq)

    def on_heartbeat(self, head_seq: int) -> None:
        now = self._clock.monotonic()
        if self.applied_seq >= head_seq:
            self._proven_at = now
            self._pending_proof = None
            self._proof.set()
        elif self._pending_proof is None:
            # Keep the oldest unmet proof: it is the one that can be met first.
            self._pending_proof = (head_seq, now)

    def is_stale(self) -> bool:
        return self._clock.monotonic() - self._proven_at > self.budget

    async def wait_current(self) -> None:
        """Wait until the state is proven current (a heartbeat's head seq is applied)."""
        while self.is_stale():
            self._proof.clear()
            await self._proof.wait()

    def proof_age(self) -> float:
        return self._clock.monotonic() - self._proven_at

    async def wait_for_seq(self, seq: int) -> None:
        """Wait until every event up to ``seq`` is applied (tests, tools, read-your-writes)."""
        if self.applied_seq >= seq:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, fut))
        await fut

    def _wake(self) -> None:
        keep = []
        for seq, fut in self._waiters:
            if seq <= self.applied_seq:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((seq, fut))
        self._waiters = keep

    def sweep(self) -> int:
        return self.revocations.sweep(self._clock.now())

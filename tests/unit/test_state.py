"""RevocationState: contiguous seq tracking, proofs of currency and staleness
(docs/spec.md §4.3-4.4)."""

from __future__ import annotations

import asyncio

import pytest

from tokenry.core.clock import FakeClock
from tokenry.core.revocations import Revocation, RevocationKind, RevocationSet
from tokenry.verifier._state import RevocationState


def _rev(value: str) -> Revocation:
    return Revocation(RevocationKind.JTI, value, 0, 2_000_000_000)


def _state(budget: float = 30.0) -> tuple[RevocationState, FakeClock]:
    clock = FakeClock()
    return RevocationState(clock, staleness_budget=budget), clock


def test_in_order_events_advance_the_contiguous_seq() -> None:
    state, _ = _state()
    advanced: list[int] = []
    state.on_advance = advanced.append
    for seq in (1, 2, 3):
        state.apply(seq, _rev(f"j{seq}"))
    assert state.applied_seq == 3 and not state.has_gap
    assert advanced == [1, 2, 3]


def test_out_of_order_events_are_applied_at_once_but_leave_a_visible_hole() -> None:
    state, _ = _state()
    state.apply(1, _rev("a"))
    state.apply(3, _rev("c"))
    # Applied as it arrived (never held back behind the hole)...
    assert state.revocations.check("c", None, None, None, 0) == "jti"
    # ...but the contiguous seq stops at the hole.
    assert state.applied_seq == 1 and state.has_gap and state.first_ahead() == 3
    state.apply(2, _rev("b"))
    assert state.applied_seq == 3 and not state.has_gap and state.first_ahead() is None


def test_duplicates_and_redeliveries_change_nothing() -> None:
    state, _ = _state()
    for seq in (1, 2, 2, 1, 3, 3, 2):
        state.apply(seq, _rev(f"j{seq}"))
    assert state.applied_seq == 3 and not state.has_gap
    assert state.revocations.values(RevocationKind.JTI) == {"j1", "j2", "j3"}


def test_never_proven_is_stale() -> None:
    state, _ = _state()
    assert state.is_stale()


def test_an_answer_proves_current_only_once_its_head_is_applied() -> None:
    state, clock = _state(budget=30)
    state.apply(1)
    asked = clock.monotonic()
    clock.advance(0.1)
    state.prove(3, asked)  # head 3: not yet applied
    assert state.is_stale() and state.behind_for() == pytest.approx(0.1)
    clock.advance(0.5)
    state.apply(2)
    state.apply(3)
    # Proven as of the moment it asked, not of the answer nor of the catch-up.
    assert not state.is_stale() and state.proof_age() == pytest.approx(0.6)
    assert state.behind_for() == 0.0


def test_stale_past_the_budget_and_current_again_after_an_answer() -> None:
    state, clock = _state(budget=30)
    state.prove(0, clock.monotonic())
    assert not state.is_stale()
    clock.advance(30.0)
    assert not state.is_stale()  # exactly at the budget is still fine
    clock.advance(0.001)
    assert state.is_stale()
    state.prove(0, clock.monotonic())
    assert not state.is_stale()


def test_a_heartbeat_proves_nothing_however_fresh_it_looks() -> None:
    """Finding 1 of the fault issue: a heartbeat that waited in a buffer through an outage
    carries a head the verifier has applied; counting it as a proof reopened a stale verifier
    that had not seen the revocations of the outage."""
    state, clock = _state(budget=30)
    for seq in range(1, 6):
        state.apply(seq)
    state.prove(5, clock.monotonic())
    assert not state.is_stale()
    clock.advance(45)  # paused, or NATS down
    assert state.is_stale()
    state.announce(5)  # the buffered heartbeat, head already applied
    assert state.is_stale()
    assert state.behind_for() == 0.0


def test_a_late_answer_is_dated_by_the_question_not_its_arrival() -> None:
    state, clock = _state(budget=30)
    asked = clock.monotonic()
    clock.advance(40)  # the answer waited in a buffer (or the verifier was paused)
    state.prove(0, asked)
    assert state.is_stale() and state.proof_age() == pytest.approx(40)


def test_an_announced_head_starts_the_lag_clock_without_proving() -> None:
    state, clock = _state()
    state.apply(1)
    state.announce(3)
    clock.advance(2)
    assert state.behind_for() == pytest.approx(2) and state.is_stale()
    state.apply(2)
    state.apply(3)
    assert state.behind_for() == 0.0 and state.is_stale()


def test_several_unmet_answers_each_prove_as_of_their_own_question() -> None:
    state, clock = _state(budget=30)
    first = clock.monotonic()
    state.prove(3, first)
    clock.advance(1)
    second = clock.monotonic()
    state.prove(5, second)
    clock.advance(1)
    for seq in (1, 2, 3):
        state.apply(seq)
    assert state.proof_age() == pytest.approx(2)
    state.apply(4)
    state.apply(5)
    assert state.proof_age() == pytest.approx(1)


def test_replace_swaps_in_a_snapshot_and_counts_as_a_proof() -> None:
    state, clock = _state()
    state.apply(1, _rev("old"))
    state.apply(5, _rev("ahead"))  # a hole at 2..4
    snap = RevocationSet()
    snap.apply(_rev("s"))
    requested = clock.monotonic()
    clock.advance(2)
    state.replace(snap, 9, proven_at=requested)
    assert state.applied_seq == 9 and not state.has_gap
    assert state.revocations.values(RevocationKind.JTI) == {"s"}
    assert not state.is_stale() and state.proof_age() == pytest.approx(2)


def test_replace_meets_a_pending_answer_it_covers() -> None:
    state, clock = _state()
    state.prove(7, clock.monotonic())
    assert state.is_stale()
    state.replace(RevocationSet(), 8)
    assert not state.is_stale()


def test_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="staleness_budget"):
        RevocationState(FakeClock(), staleness_budget=0)


async def test_wait_for_seq_and_wait_current_wake_on_progress() -> None:
    state, clock = _state()
    waiter = asyncio.create_task(state.wait_for_seq(2))
    current = asyncio.create_task(state.wait_current())
    await asyncio.sleep(0)
    state.apply(1)
    await asyncio.sleep(0)
    assert not waiter.done()
    state.apply(2)
    state.prove(2, clock.monotonic())
    await asyncio.wait_for(asyncio.gather(waiter, current), timeout=5)
    await asyncio.wait_for(state.wait_for_seq(1), timeout=5)  # already there: returns at once


def test_sweep_uses_the_clock() -> None:
    state, clock = _state()
    state.apply(1, Revocation(RevocationKind.JTI, "a", 0, int(clock.now()) + 10))
    assert state.sweep() == 0
    clock.advance(10)
    assert state.sweep() == 1

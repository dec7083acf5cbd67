"""The one backoff helper (issue 12 item 7): capped exponential delays with bounded jitter."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenry.core.backoff import Backoff, BackoffPolicy
from tokenry.core.clock import FakeClock


def test_without_jitter_delays_double_up_to_the_cap() -> None:
    b = Backoff(BackoffPolicy(0.1, 1.0, jitter=0))
    assert [round(b.next_delay(), 6) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert b.failures == 6


def test_reset_starts_again_from_the_initial_delay() -> None:
    b = Backoff(BackoffPolicy(0.5, 8.0, jitter=0))
    b.next_delay()
    b.next_delay()
    b.reset()
    assert b.next_delay() == 0.5 and b.failures == 1


def test_retry_at_counts_from_the_injected_clock() -> None:
    clock = FakeClock(1_000.0)
    b = Backoff(BackoffPolicy(1.0, 30.0, jitter=0))
    assert b.retry_at(clock.now()) == 1_001.0
    clock.advance(5)
    assert b.retry_at(clock.now()) == 1_007.0


@given(
    initial=st.floats(0.01, 5),
    factor=st.floats(1, 100),
    jitter=st.floats(0, 1),
    seed=st.integers(0, 2**32),
)
def test_jitter_never_exceeds_the_schedule_nor_drops_below_its_share(
    initial: float, factor: float, jitter: float, seed: int
) -> None:
    policy = BackoffPolicy(initial, initial * factor, jitter=jitter)
    plain = Backoff(BackoffPolicy(initial, initial * factor, jitter=0))
    b = Backoff(policy, random.Random(seed))
    for _ in range(12):
        ceiling = plain.next_delay()
        delay = b.next_delay()
        assert ceiling * (1 - jitter) - 1e-9 <= delay <= ceiling <= policy.maximum


def test_jitter_spreads_a_fleet() -> None:
    policy = BackoffPolicy(1.0, 1.0, jitter=0.5)
    delays = {Backoff(policy, random.Random(i)).next_delay() for i in range(20)}
    assert len(delays) == 20


@pytest.mark.parametrize(
    ("initial", "maximum", "multiplier", "jitter"),
    [(0, 1, 2, 0), (2, 1, 2, 0), (1, 2, 0.5, 0), (1, 2, 2, 1.5), (1, 2, 2, -0.1)],
)
def test_bad_policies_are_refused(
    initial: float, maximum: float, multiplier: float, jitter: float
) -> None:
    with pytest.raises(ValueError, match="backoff"):
        BackoffPolicy(initial, maximum, multiplier, jitter)


def test_token_sources_retry_on_the_one_helper_with_jitter() -> None:
    from tokenry.client import RefreshMachine, RefreshPolicy

    policy = RefreshPolicy(retry_backoff=2.0, max_backoff=8.0, retry_jitter=0.5)
    machine = RefreshMachine(policy)
    retry_at = []
    for now in (100.0, 200.0, 300.0, 400.0):
        machine.fetch_started(now)
        machine.fetch_failed(now)
        retry_at.append(machine._retry_at - now)
    for delay, ceiling in zip(retry_at, [2.0, 4.0, 8.0, 8.0], strict=True):
        assert ceiling / 2 <= delay <= ceiling

"""The introspector's per-caller limit (issue 13 item 8, docs/security.md): ``CallerLimiter``
keeps each caller's token bucket as one number (GCRA) for the warm path's sake; it must decide
every call exactly as the token bucket of ``_Buckets`` does (burst, rate, refusals counted,
the deficit bounded at one second) and give the same retry hint."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenry.core.clientauth import Bucket, CallerLimiter, _Buckets
from tokenry.core.clock import FakeClock
from tokenry.core.errors import TemporarilyUnavailable

# Binary fractions throughout (rate 8/s, steps of 1/64 s), so both forms compute exactly and a
# call on the boundary is decided alike.
BUCKET = Bucket(4, 8.0)


def _reference(buckets: _Buckets, client_id: str, now: float) -> int | None:
    """The retry hint the token bucket gives, or None when the call is allowed."""
    wait = buckets.take(client_id, now, 1.0)
    return max(1, math.ceil(wait)) if wait > 0 else None


def _decided(limiter: CallerLimiter, client_id: str) -> int | None:
    try:
        limiter.check(client_id)
    except TemporarilyUnavailable as exc:
        return int(exc.description.rsplit("after ", 1)[1].split()[0])
    return None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            # mostly bursts (no time passing), so the limit and the one-second bound are reached
            st.one_of(st.just(0), st.just(0), st.just(0), st.integers(min_value=1, max_value=80)),
            st.sampled_from(["rs-1", "rs-2"]),
        ),
        min_size=1,
        max_size=200,
    )
)
def test_decides_every_call_as_the_token_bucket(calls: list[tuple[int, str]]) -> None:
    clock = FakeClock(0.0)
    limiter = CallerLimiter(clock, BUCKET)
    buckets = _Buckets(BUCKET, 65_536)
    for step, client_id in calls:
        clock.advance(step / 64)
        expected = _reference(buckets, client_id, clock.monotonic())
        assert _decided(limiter, client_id) == expected, (step, client_id)


def test_a_flood_owes_at_most_a_second() -> None:
    clock = FakeClock(0.0)
    limiter = CallerLimiter(clock, BUCKET)
    for _ in range(4):
        limiter.check("rs-1")
    for _ in range(1000):  # refused, and counted up to one second's worth
        with pytest.raises(TemporarilyUnavailable, match="retry after 1 s"):
            limiter.check("rs-1")
    clock.advance(1.0 + 1 / 8)  # the second owed, then one interval: one call again
    limiter.check("rs-1")
    with pytest.raises(TemporarilyUnavailable):
        limiter.check("rs-1")


def test_the_callers_it_remembers_are_bounded() -> None:
    clock = FakeClock(0.0)
    limiter = CallerLimiter(clock, BUCKET, max_keys=16)
    for i in range(100):
        limiter.check(f"rs-{i}")
    assert len(limiter._tat) <= 16
    clock.advance(10.0)  # every bucket full again: the sweep drops them first
    limiter.check("rs-new")
    assert len(limiter._tat) <= 16

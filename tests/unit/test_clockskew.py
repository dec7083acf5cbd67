"""servicekit.clockskew: the bound on an issuer's clock against PostgreSQL's (issue 11)."""

from __future__ import annotations

import pytest

from tokenry.core.clock import FakeClock
from tokenry.core.errors import TemporarilyUnavailable
from tokenry.servicekit.clockskew import ClockSkewGate, SkewReading


def test_the_reading_bounds_the_skew_from_above() -> None:
    # Local 100.0 before, 100.4 after; the database said 98.0 somewhere in between.
    reading = SkewReading.from_round_trip(100.0, 98.0, 100.4)
    assert reading.offset == pytest.approx(2.2)
    assert reading.uncertainty == pytest.approx(0.2)
    assert reading.worst_case() == pytest.approx(2.4)
    assert not reading.within(2.3) and reading.within(2.5)
    assert SkewReading.from_round_trip(10.0, 12.5, 10.0).within(2.5)  # behind counts too
    assert not SkewReading.from_round_trip(10.0, 12.5, 10.0).within(2.4)


class Database:
    def __init__(self, clock: FakeClock, offset: float) -> None:
        self.clock = clock
        self.offset = offset  # database minus local
        self.down = False

    async def now(self) -> float:
        if self.down:
            raise ConnectionError("database down")
        return self.clock.now() + self.offset


async def test_the_gate_starts_closed_opens_within_the_bound_and_closes_beyond_it() -> None:
    clock = FakeClock()
    db = Database(clock, offset=-1.0)  # we run 1 s ahead: fine with 2 s
    changes: list[bool] = []

    async def on_change(ok: bool) -> None:
        changes.append(ok)

    gate = ClockSkewGate(read_database_clock=db.now, clock=clock, max_skew=2, on_change=on_change)
    with pytest.raises(TemporarilyUnavailable):
        gate.check()  # nothing measured yet
    await gate.measure()
    gate.check()
    for ahead in (5.0, 25.0, -90.0):  # the dangerous band and beyond, either way
        db.offset = -ahead
        await gate.measure()
        with pytest.raises(TemporarilyUnavailable):
            gate.check()
    db.offset = 0.5
    await gate.measure()
    gate.check()
    assert changes == [True, False, True]


async def test_a_failed_reading_keeps_the_last_verdict() -> None:
    clock = FakeClock()
    db = Database(clock, offset=-10.0)
    gate = ClockSkewGate(read_database_clock=db.now, clock=clock, max_skew=2)
    await gate.measure()
    db.down = True
    with pytest.raises(ConnectionError):
        await gate.measure()
    assert not gate.ok


def test_a_negative_bound_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="max_skew"):
        ClockSkewGate(
            read_database_clock=Database(FakeClock(), 0).now, clock=FakeClock(), max_skew=-1
        )


async def test_the_aligned_clock_reads_the_database_time_rounded_up() -> None:
    from tokenry.servicekit.clockskew import DatabaseAlignedClock

    clock = FakeClock()
    db = Database(clock, offset=90.0)  # this host runs 90 s slow
    gate = ClockSkewGate(read_database_clock=db.now, clock=clock, max_skew=2)
    aligned = DatabaseAlignedClock(clock, gate)
    assert aligned.now() == clock.now()  # nothing measured yet: the local clock
    await gate.measure()
    assert aligned.now() == pytest.approx(clock.now() + 90.0)
    clock.advance(5)
    assert aligned.now() == pytest.approx(clock.now() + 90.0)
    assert aligned.monotonic() == clock.monotonic()

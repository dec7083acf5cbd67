"""Hold a service's clock to PostgreSQL's, and stop minting when they drift apart.

Subject and client revocations are watermarks: every token whose ``iat`` is before
``not_before = ceil(now) + max clock skew`` is revoked (docs/events.md, "Clock skew"). That
covers a token minted just before the revocation only while the issuer's clock runs at most
``max clock skew`` ahead of the revocation service's. Both compare themselves with PostgreSQL's
``clock_timestamp()``, the one clock every replica shares, and an issuer beyond the bound goes
NOT_SERVING and answers ``temporarily_unavailable`` instead of minting tokens that a revocation
could miss. The verifier caps its future-``iat`` allowance at the same bound.

The offset is measured NTP-style from one round trip: the database read lies between the local
readings before and after it, so ``|offset| + half the round trip`` bounds the true skew from
above; the gate judges that bound, never the optimistic midpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tokenry.core.clock import Clock
from tokenry.core.errors import TemporarilyUnavailable

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 1.0
#: ``SELECT`` of the database's own wall clock, as Unix seconds.
DATABASE_CLOCK_SQL = "SELECT extract(epoch FROM clock_timestamp())::float8"


@dataclass(frozen=True, slots=True)
class SkewReading:
    """``offset``: local clock minus the database's, at the midpoint of the round trip;
    ``uncertainty``: half the round trip (the true offset is within ``offset ± uncertainty``)."""

    offset: float
    uncertainty: float

    @classmethod
    def from_round_trip(cls, before: float, database: float, after: float) -> SkewReading:
        return cls(offset=(before + after) / 2 - database, uncertainty=(after - before) / 2)

    def worst_case(self) -> float:
        return abs(self.offset) + self.uncertainty

    def within(self, max_skew: float) -> bool:
        return self.worst_case() <= max_skew


class ClockSkewGate:
    """Measures the skew every ``interval`` and says whether minting is allowed.

    Starts closed: nothing is minted before the first reading. A failed reading (the database
    is down) keeps the last verdict: clocks drift by milliseconds per hour, and an issuer that
    cannot reach PostgreSQL refuses most grants anyway.
    """

    def __init__(
        self,
        *,
        read_database_clock: Callable[[], Awaitable[float]],
        clock: Clock,
        max_skew: float,
        interval: float = DEFAULT_INTERVAL,
        on_change: Callable[[bool], Awaitable[None]] | None = None,
    ) -> None:
        if max_skew < 0:
            raise ValueError("max_skew must be >= 0 seconds")
        self._read = read_database_clock
        self._clock = clock
        self._max_skew = max_skew
        self._interval = interval
        self._on_change = on_change
        self.ok = False
        self.last: SkewReading | None = None

    def check(self) -> None:
        """Raise ``TemporarilyUnavailable`` unless the last reading was within the bound."""
        if not self.ok:
            raise TemporarilyUnavailable(
                "this issuer's clock is not within TOKENRY_MAX_CLOCK_SKEW of the database's;"
                " retry (another replica may serve)"
            )

    async def measure(self) -> SkewReading:
        before = self._clock.now()
        database = await self._read()
        after = self._clock.now()
        reading = SkewReading.from_round_trip(before, database, after)
        self.last = reading
        ok = reading.within(self._max_skew)
        if ok != self.ok:
            self.ok = ok
            if ok:
                log.info("clock within %.3fs of the database's again", reading.worst_case())
            else:
                log.error(
                    "clock differs from the database's by up to %.3fs (TOKENRY_MAX_CLOCK_SKEW"
                    " is %ss): not serving until it is back within it",
                    reading.worst_case(),
                    self._max_skew,
                )
            if self._on_change is not None:
                await self._on_change(ok)
        return reading

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.measure()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("clock check failed (%s); keeping the last verdict", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)


class DatabaseAlignedClock:
    """A :class:`~tokenry.core.clock.Clock` whose wall time is PostgreSQL's, as the gate last
    measured it, rounded up by the measurement's uncertainty.

    The revocation service stamps subject and client watermarks (``ceil(now) + max skew``) and
    event times with it: a revocation service whose own clock runs 90 s slow would otherwise
    set a watermark 88 s in the past and leave every token of the subject minted in those 88 s
    valid for good. The database's clock is the one every replica and every issuer's gate
    shares, and rounding up keeps the watermark on the safe side. Before the first reading it
    is the local clock. ``monotonic`` is the local one (durations never need alignment).
    """

    __slots__ = ("_base", "_gate")

    def __init__(self, base: Clock, gate: ClockSkewGate) -> None:
        self._base = base
        self._gate = gate

    def now(self) -> float:
        reading = self._gate.last
        if reading is None:
            return self._base.now()
        return self._base.now() - reading.offset + reading.uncertainty

    def monotonic(self) -> float:
        return self._base.monotonic()

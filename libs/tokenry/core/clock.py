"""Time as a dependency (SPIRE's injected ``Clock``): pure logic takes ``now`` or a Clock."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds since the epoch (JWT NumericDate, RFC 7519 §2)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards, for TTLs and timeouts."""
        ...


class SystemClock:
    # The C functions themselves, not methods wrapping them: a hot path reading the clock pays
    # no Python frame (the issuer and the introspector read it several times per call).
    __slots__ = ()

    now = staticmethod(time.time)
    monotonic = staticmethod(time.monotonic)


class FakeClock:
    """A clock tests move by hand."""

    __slots__ = ("_mono", "_now")

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self._now = now
        self._mono = 0.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds

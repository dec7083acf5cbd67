"""Verifier metrics through the OpenTelemetry *API* only (no SDK in the library).

The hot path never calls OpenTelemetry: a verification bumps a plain integer in its verifier's
:class:`VerifierStats` (one attribute increment — this is what "metrics on" costs, SPEC §8), and
:class:`VerifierMetrics` exports those counts through asynchronous (observable) instruments that
the application's SDK reads at collection time. Without an SDK the API's no-op meter makes the
export cost nothing at all.

Instruments (attribute ``tokenry.audience`` on each):

=====================================  =========  ===============================================
``tokenry.verifier.verifications``     counter    ``outcome`` (accepted, rejected, unavailable)
                                                  and ``reason`` (cache_hit, verified,
                                                  introspected, or the error reason code)
``tokenry.verifier.cache.lookups``     counter    ``result`` (hit, miss)
``tokenry.verifier.cache.hit_ratio``   gauge      hits / (hits + misses) since start
``tokenry.verifier.cache.entries``     gauge      tokens held in the verified-token cache
``tokenry.verifier.staleness``         gauge (s)  age of the last proof that the revocation state
                                                  is current (SPEC §4.4)
``tokenry.verifier.jwks.keys``         gauge      verification keys held
``tokenry.verifier.jwks.refreshes``    counter    ``outcome`` (ok, error)
=====================================  =========  ===============================================

Counts are plain ``+= 1``: under many threads an increment may very rarely be lost (a GIL
switch between read and write); they never raise and never slow the hot path.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Final

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, Observation

if TYPE_CHECKING:
    from tokenry.verifier._verifier import Verifier

__all__ = ["METER_NAME", "VerifierMetrics", "VerifierStats"]

METER_NAME: Final = "tokenry.verifier"


class VerifierStats:
    """Plain counters a verifier bumps; read by :class:`VerifierMetrics` and by tests."""

    __slots__ = ("_fast_hits", "failures", "introspected", "misses", "slow_hits", "verified")

    def __init__(self) -> None:
        self._fast_hits: Callable[[], int] = lambda: 0  # the hot path counts in its closure
        self.slow_hits = 0  # cache hits decided by the full path
        self.misses = 0  # cache lookups that found nothing (a first-sight verification follows)
        self.verified = 0  # accepted after a first-sight signature verification
        self.introspected = 0  # accepted through the introspection fallback
        self.failures: dict[tuple[str, str], int] = {}  # (outcome, reason) → count

    def read_fast_hits_with(self, reader: Callable[[], int]) -> None:
        """Where the hot path's own hit counter is read (a closure cell is cheaper to bump)."""
        self._fast_hits = reader

    @property
    def hits(self) -> int:
        """Tokens accepted from the verified-token cache."""
        return self.slow_hits + self._fast_hits()

    def fail(self, outcome: str, reason: str) -> None:
        key = (outcome, reason)
        self.failures[key] = self.failures.get(key, 0) + 1

    @property
    def hit_ratio(self) -> float:
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0

    def verifications(self) -> Iterator[tuple[str, str, int]]:
        """``(outcome, reason, count)`` for every kind of verification seen so far."""
        yield "accepted", "cache_hit", self.hits
        yield "accepted", "verified", self.verified
        yield "accepted", "introspected", self.introspected
        for (outcome, reason), count in list(self.failures.items()):
            yield outcome, reason, count


Reading = Callable[["Verifier"], Iterable[tuple[float, dict[str, str]]]]


class VerifierMetrics:
    """Exports the stats of any number of verifiers through one set of instruments.

    Create one per process (instrument names are unique per meter) in the composition root and
    call :meth:`observe` for each verifier. Verifiers are held weakly.

    Args:
        meter: defaults to the global meter provider's ``tokenry.verifier`` meter, which is a
            no-op until the application installs an SDK.
    """

    def __init__(self, meter: Meter | None = None) -> None:
        self._meter = meter if meter is not None else metrics.get_meter(METER_NAME)
        self._verifiers: weakref.WeakKeyDictionary[Verifier, dict[str, str]] = (
            weakref.WeakKeyDictionary()
        )
        m = self._meter
        m.create_observable_counter(
            "tokenry.verifier.verifications",
            callbacks=[self._callback(_verifications)],
            unit="{verification}",
            description="Bearer-token verifications by outcome and reason",
        )
        m.create_observable_counter(
            "tokenry.verifier.cache.lookups",
            callbacks=[self._callback(_lookups)],
            unit="{lookup}",
            description="Verified-token cache lookups by result",
        )
        m.create_observable_gauge(
            "tokenry.verifier.cache.hit_ratio",
            callbacks=[self._callback(lambda v: [(v.stats.hit_ratio, {})])],
            unit="1",
            description="Verified-token cache hits / lookups since start",
        )
        m.create_observable_gauge(
            "tokenry.verifier.cache.entries",
            callbacks=[self._callback(lambda v: [(len(v.cache), {})])],
            unit="{token}",
            description="Tokens held in the verified-token cache",
        )
        m.create_observable_gauge(
            "tokenry.verifier.staleness",
            callbacks=[self._callback(lambda v: [(v.state.proof_age(), {})])],
            unit="s",
            description="Age of the last proof that the revocation state is current",
        )
        m.create_observable_gauge(
            "tokenry.verifier.jwks.keys",
            callbacks=[self._callback(lambda v: [(len(v.jwks.keys), {})])],
            unit="{key}",
            description="Verification keys held",
        )
        m.create_observable_counter(
            "tokenry.verifier.jwks.refreshes",
            callbacks=[self._callback(_refreshes)],
            unit="{refresh}",
            description="JWKS fetches by outcome",
        )

    def observe(self, verifier: Verifier, **attributes: str) -> None:
        """Export ``verifier``'s numbers, labelled with its audience and ``attributes``."""
        self._verifiers[verifier] = {"tokenry.audience": verifier.config.audience, **attributes}

    def _callback(self, read: Reading) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            observations = []
            for verifier, labels in list(self._verifiers.items()):
                for value, extra in read(verifier):
                    observations.append(Observation(value, {**labels, **extra}))
            return observations

        return callback


def _verifications(verifier: Verifier) -> Iterable[tuple[float, dict[str, str]]]:
    for outcome, reason, count in verifier.stats.verifications():
        yield count, {"outcome": outcome, "reason": reason}


def _lookups(verifier: Verifier) -> Iterable[tuple[float, dict[str, str]]]:
    yield verifier.stats.hits, {"result": "hit"}
    yield verifier.stats.misses, {"result": "miss"}


def _refreshes(verifier: Verifier) -> Iterable[tuple[float, dict[str, str]]]:
    yield verifier.jwks.fetches_ok, {"outcome": "ok"}
    yield verifier.jwks.fetches_failed, {"outcome": "error"}

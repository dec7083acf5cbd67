"""Verifier metrics through the OpenTelemetry *API* only (no SDK in the library).

The hot path never calls OpenTelemetry: a verification bumps a plain integer in its verifier's
:class:`VerifierStats` (one attribute increment — this is what "metrics on" costs, docs/spec.md §8),
and :class:`VerifierMetrics` exports those counts through asynchronous (observable) instruments that
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
                                                  is current (docs/spec.md §4.4)
``tokenry.verifier.staleness_budget``  gauge (s)  the budget it is held against (alerts: half)
``tokenry.verifier.jwks.keys``         gauge      verification keys held
``tokenry.verifier.jwks.refreshes``    counter    ``outcome`` (ok, error)
``tokenry.verifier.consumer.lag``      gauge      events announced by heartbeats (the committed
                                                  head) and not yet applied, computed locally
``tokenry.verifier.revocation.lag``    histogram  (s) propagation lag per applied event:
                                                  max(0, applied − occurred_at), wall clocks
``tokenry.verifier.revocation          counter    events whose occurred_at lay in our future
.negative_lags``                                  (a clock-skew signal; recorded as lag 0)
``tokenry.verifier.snapshots``         counter    full syncs (the bootstrap is the first)
=====================================  =========  ===============================================

The last three need the event feed: :meth:`VerifierMetrics.observe_runtime` (or ``observe``
with ``feed=``). The lag histogram is recorded once per applied event, never per verification.

Counts are plain ``+= 1``: under many threads an increment may very rarely be lost (a GIL
switch between read and write); they never raise and never slow the hot path.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Final

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation

if TYPE_CHECKING:
    from tokenry.verifier._feed import EventSubscriber
    from tokenry.verifier._runtime import VerifierRuntime
    from tokenry.verifier._verifier import Verifier

__all__ = ["METER_NAME", "VerifierMetrics", "VerifierStats"]

METER_NAME: Final = "tokenry.verifier"
#: seconds; the promise is milliseconds (docs/spec.md §4), the tail shows outages
LAG_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


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

    def __init__(self, meter: Meter | None = None, now: Callable[[], float] = time.time) -> None:
        self._meter = meter if meter is not None else metrics.get_meter(METER_NAME)
        self._now = now  # wall clock: occurred_at is the revocation service's wall clock
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
            "tokenry.verifier.staleness_budget",
            callbacks=[self._callback(_budget)],
            unit="s",
            description="Staleness budget: past it the verifier fails closed or introspects",
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

        m.create_observable_gauge(
            "tokenry.verifier.consumer.lag",
            callbacks=[self._callback(_consumer_lag)],
            unit="{event}",
            description="Committed events announced by heartbeats and not yet applied",
        )
        self._lag = m.create_histogram(
            "tokenry.verifier.revocation.lag",
            unit="s",
            description="Event propagation lag at this verifier: applied - occurred_at",
            explicit_bucket_boundaries_advisory=list(LAG_BUCKETS),
        )
        self._feeds: weakref.WeakKeyDictionary[Verifier, _FeedStats] = weakref.WeakKeyDictionary()
        m.create_observable_counter(
            "tokenry.verifier.revocation.negative_lags",
            callbacks=[self._feed_callback(lambda f: f.negatives)],
            unit="{event}",
            description="Events whose occurred_at was in this verifier's future (clock skew)",
        )
        m.create_observable_counter(
            "tokenry.verifier.snapshots",
            callbacks=[self._feed_callback(lambda f: f.snapshots())],
            unit="{snapshot}",
            description="Full syncs from a snapshot (the bootstrap is the first)",
        )

    def observe(
        self, verifier: Verifier, *, feed: EventSubscriber | None = None, **attributes: str
    ) -> None:
        """Export ``verifier``'s numbers, labelled with its audience and ``attributes``; with
        its ``feed``, also the propagation lag of each event it applies."""
        labels = {"tokenry.audience": verifier.config.audience, **attributes}
        self._verifiers[verifier] = labels
        if feed is not None:
            stats = _FeedStats(feed, self._lag, labels, self._now)
            self._feeds[verifier] = stats
            feed.on_applied = stats.applied

    def observe_runtime(self, runtime: VerifierRuntime, **attributes: str) -> None:
        """:meth:`observe` for a running verifier and its event feed."""
        self.observe(runtime.verifier, feed=runtime.subscriber, **attributes)

    def _feed_callback(
        self, read: Callable[[_FeedStats], float]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(read(s), s.labels) for s in list(self._feeds.values())]

        return callback

    def _callback(self, read: Reading) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            observations = []
            for verifier, labels in list(self._verifiers.items()):
                for value, extra in read(verifier):
                    observations.append(Observation(value, {**labels, **extra}))
            return observations

        return callback


class _FeedStats:
    """Records each applied event's lag into the histogram; counts negative lags."""

    __slots__ = ("__weakref__", "_feed", "_now", "_record", "labels", "negatives")

    def __init__(
        self,
        feed: EventSubscriber,
        histogram: Histogram,
        labels: dict[str, str],
        now: Callable[[], float],
    ) -> None:
        self._feed = weakref.ref(feed)
        self._record = histogram.record
        self._now = now
        self.labels = labels
        self.negatives = 0

    def applied(self, occurred_at: float) -> None:
        if not occurred_at:
            return  # an event without a timestamp (none are written so, but be safe)
        lag = self._now() - occurred_at
        if lag < 0:
            self.negatives += 1
            lag = 0.0
        self._record(lag, self.labels)

    def snapshots(self) -> int:
        feed = self._feed()
        return feed.snapshots_taken if feed is not None else 0


def _budget(verifier: Verifier) -> Iterable[tuple[float, dict[str, str]]]:
    budget = getattr(verifier.state, "budget", None)
    if budget is not None:
        yield float(budget), {}


def _consumer_lag(verifier: Verifier) -> Iterable[tuple[float, dict[str, str]]]:
    # The event-fed state knows both numbers (a JWKS-only verifier has neither: 0).
    state = verifier.state
    head, applied = getattr(state, "head_seq", 0), getattr(state, "applied_seq", 0)
    yield max(0, head - applied), {}


def _verifications(verifier: Verifier) -> Iterable[tuple[float, dict[str, str]]]:
    for outcome, reason, count in verifier.stats.verifications():
        yield count, {"outcome": outcome, "reason": reason}


def _lookups(verifier: Verifier) -> Iterable[tuple[float, dict[str, str]]]:
    yield verifier.stats.hits, {"result": "hit"}
    yield verifier.stats.misses, {"result": "miss"}


def _refreshes(verifier: Verifier) -> Iterable[tuple[float, dict[str, str]]]:
    yield verifier.jwks.fetches_ok, {"outcome": "ok"}
    yield verifier.jwks.fetches_failed, {"outcome": "error"}

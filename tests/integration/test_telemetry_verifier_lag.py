"""The revocation propagation lag (issue 15): one revocation through the real revocation
service, relay, JetStream and three verifiers; each verifier records exactly one lag sample,
its consumer lag returns to 0, and a skewed clock counts a negative lag (recorded as 0)."""

from __future__ import annotations

import time

import asyncpg
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from tokenry.servicekit.config import Settings
from tokenry.verifier import VerifierMetrics

from pipeline_support import mint, stack, wait_until

pytestmark = pytest.mark.integration


def _points(reader: InMemoryMetricReader, name: str) -> list[object]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        p
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == name
        for p in metric.data.data_points
    ]


async def test_one_revocation_records_one_lag_sample_at_every_verifier(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    # One provider per verifier (as one per process in production): each has its own clock.
    readers = {name: InMemoryMetricReader() for name in ("v0", "v1", "skewed")}
    clocks = {"v0": None, "v1": None, "skewed": -3600.0}  # the last runs an hour behind
    async with stack(settings, pool) as svc:
        runtimes = {name: await svc.verifier() for name in clocks}
        for name, offset in clocks.items():
            now = time.time if offset is None else (lambda o=offset: time.time() + o)
            meter = MeterProvider(metric_readers=[readers[name]]).get_meter("tokenry.verifier")
            VerifierMetrics(meter, now=now).observe_runtime(runtimes[name], name=name)
        token, claims = await mint(pool, settings)
        for runtime in runtimes.values():
            await runtime.verifier.verify(token)
        head = (await svc.revoke(jti=claims["jti"])).seq
        await wait_until(
            lambda: all(r.state.applied_seq >= head for r in runtimes.values()),
            20,
            "every verifier applied the revocation",
        )
        lags = {
            p.attributes["name"]: p  # type: ignore[attr-defined]
            for reader in readers.values()
            for p in _points(reader, "tokenry.verifier.revocation.lag")
        }
        assert set(lags) == set(clocks)
        for name, point in lags.items():
            assert isinstance(point, HistogramDataPoint)
            assert point.count >= 1, name
            if name != "skewed":
                assert 0 <= point.max < 10, f"{name}: lag {point.max}s"
        assert lags["skewed"].max == 0.0  # type: ignore[attr-defined]
        negatives = {
            p.attributes["name"]: p.value  # type: ignore[attr-defined]
            for reader in readers.values()
            for p in _points(reader, "tokenry.verifier.revocation.negative_lags")
        }
        assert negatives["skewed"] >= 1 and negatives["v0"] == 0
        # Heartbeats may announce a later head (key events) for a moment: wait until caught up.
        await wait_until(
            lambda: all(r.state.applied_seq >= r.state.head_seq for r in runtimes.values()),
            20,
            "every verifier caught up with the announced head",
        )
        consumer = [
            p.value  # type: ignore[attr-defined]
            for reader in readers.values()
            for p in _points(reader, "tokenry.verifier.consumer.lag")
        ]  # type: ignore[attr-defined]
        assert consumer and all(v == 0 for v in consumer)

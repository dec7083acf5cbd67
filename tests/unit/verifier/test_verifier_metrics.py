"""Metrics through the OpenTelemetry API, read back with the SDK's in-memory reader."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from tokenry.verifier._metrics import VerifierMetrics
from tokenry.verifier._verifier import STALENESS_RECHECK
from tokenry.verifier.errors import VerificationError

from .minting import Minter, make_verifier


def _points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], float]]]:
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, list[tuple[dict[str, Any], float]]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found[metric.name] = [
                    (dict(p.attributes or {}), p.value)  # type: ignore[union-attr]
                    for p in metric.data.data_points
                ]
    return found


async def test_verifications_cache_and_staleness_are_exported_per_audience() -> None:
    minter = Minter()
    verifier, _, state, clock = await make_verifier(minter)
    other, *_ = await make_verifier(minter)
    reader = InMemoryMetricReader()
    metrics = VerifierMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"))
    metrics.observe(verifier, service="orders")
    metrics.observe(other)

    token = minter.token()
    for _ in range(3):
        await verifier.verify(token)
    for bad in ("garbage", minter.token(aud="elsewhere")):
        with pytest.raises(VerificationError):
            await verifier.verify(bad)
    state.stale = True
    clock.advance(STALENESS_RECHECK)
    with pytest.raises(VerificationError):
        await verifier.verify(token)

    points = _points(reader)
    mine = {
        (a["outcome"], a["reason"]): v
        for a, v in points["tokenry.verifier.verifications"]
        if a.get("service") == "orders"
    }
    assert mine[("accepted", "verified")] == 1
    assert mine[("accepted", "cache_hit")] == 2
    assert mine[("rejected", "malformed")] == 1
    assert mine[("rejected", "bad_audience")] == 1
    assert mine[("unavailable", "stale")] == 1
    assert all(
        a["tokenry.audience"] == "demo-api" for a, _ in points["tokenry.verifier.verifications"]
    )
    lookups = {
        a["result"]: v
        for a, v in points["tokenry.verifier.cache.lookups"]
        if a.get("service") == "orders"
    }
    assert lookups["hit"] == 2 and lookups["miss"] >= 2
    ratio = [v for a, v in points["tokenry.verifier.cache.hit_ratio"] if a.get("service")]
    assert ratio and 0 < ratio[0] < 1
    staleness = [v for a, v in points["tokenry.verifier.staleness"] if a.get("service")]
    assert staleness == [99.0]
    keys = [v for a, v in points["tokenry.verifier.jwks.keys"] if a.get("service")]
    assert keys == [1]
    assert len(points["tokenry.verifier.cache.entries"]) == 2  # one series per verifier


async def test_without_an_sdk_the_api_meter_is_a_no_op() -> None:
    minter = Minter()
    verifier, *_ = await make_verifier(minter)
    VerifierMetrics().observe(verifier)  # the global meter provider: no SDK installed here
    assert (await verifier.verify(minter.token()))["sub"] == "svc-a"

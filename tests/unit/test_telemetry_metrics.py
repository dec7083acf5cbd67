"""servicekit.metrics: bounded labels, plain counts read at collection time."""

from __future__ import annotations

import base64
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from tokenry.core.clientauth import BasicHeader, ClientCredentials
from tokenry.servicekit.metrics import IssuedTokens, KeyGauges, observe_relay


def _values(reader: InMemoryMetricReader, name: str) -> dict[tuple[tuple[str, Any], ...], float]:
    data = reader.get_metrics_data()
    assert data is not None
    out = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for p in metric.data.data_points:
                        out[tuple(sorted((p.attributes or {}).items()))] = p.value  # type: ignore[union-attr]
    return out


def _meter() -> tuple[Any, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    return MeterProvider(metric_readers=[reader]).get_meter("t"), reader


def test_issued_tokens_by_grant_format_client_with_the_client_label_capped() -> None:
    meter, reader = _meter()
    issued = IssuedTokens(meter, max_clients=2)
    for client in ("a", "b", "a", "c", "d"):
        issued.add("client_credentials", "jwt", client)
    basic = "Basic " + base64.b64encode(b"b:secret-value").decode()
    issued.add_presented("client_credentials", "opaque", BasicHeader(basic))
    issued.add_presented("client_credentials", "opaque", BasicHeader(basic))
    issued.add_presented(
        "refresh_token",
        "jwt",
        ClientCredentials(client_id="a", secret="x", method="client_secret_post"),
    )
    got = _values(reader, "tokenry.tokens.issued")
    key = lambda g, f, c: (("client", c), ("format", f), ("grant", g))  # noqa: E731
    assert got == {
        key("client_credentials", "jwt", "a"): 2,
        key("client_credentials", "jwt", "b"): 1,
        key("client_credentials", "jwt", "other"): 2,  # c and d: past the cap
        key("client_credentials", "opaque", "b"): 2,
        key("refresh_token", "jwt", "a"): 1,
    }
    assert "secret-value" not in repr(issued._basic)


class _Stats:
    lease_changes = 2
    published = 7
    failures = 0


class _Relay:
    is_leader = True
    stats = _Stats()


def test_relay_leadership_and_counts() -> None:
    meter, reader = _meter()
    observe_relay(_Relay(), meter)
    assert _values(reader, "tokenry.relay.leader") == {(): 1}
    assert _values(reader, "tokenry.relay.published") == {(): 7}


class _State:
    value = "active"


class _Row:
    kid, alg, use, state, created_at, activated_at = "k1", "ES256", "access", _State(), 100.0, 100.0


class _Keys:
    async def list_keys(self, *, include_ended: bool = False) -> tuple[list[Any], int]:
        return [_Row()], 3

    def next_transition_at(self, row: Any) -> float | None:
        return 1000.0


async def test_key_age_and_time_to_next_rotation_negative_when_overdue() -> None:
    meter, reader = _meter()
    gauges = KeyGauges(_Keys(), now=lambda: 1600.0, meter=meter)
    await gauges.sample()
    labels = (("alg", "ES256"), ("kid", "k1"), ("state", "active"), ("use", "access"))
    assert _values(reader, "tokenry.keys.age") == {labels: 1500.0}
    assert _values(reader, "tokenry.keys.next_transition") == {labels: -600.0}


class _Cache:
    def __init__(self) -> None:
        self.held = {b"a": 1}

    def get(self, key: bytes) -> int | None:
        return self.held.get(key)


def test_cache_hit_ratio_counts_lookups_without_changing_answers() -> None:
    from tokenry.servicekit.metrics import observe_cache

    meter, reader = _meter()
    cache = _Cache()
    observe_cache(cache, "tokenry.introspector.cache", meter)
    assert [cache.get(k) for k in (b"a", b"b", b"a", b"a")] == [1, None, 1, 1]
    assert _values(reader, "tokenry.introspector.cache.lookups") == {
        (("result", "hit"),): 3,
        (("result", "miss"),): 1,
    }
    assert _values(reader, "tokenry.introspector.cache.hit_ratio") == {(): 0.75}

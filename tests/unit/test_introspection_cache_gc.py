"""The positive cache keeps its entries out of the cyclic garbage collector's walk
(flows/introspection_cache.py; docs/benchmarks/gateway.md: a cache of Python objects made every
full collection of a busy gateway a 110 ms pause), and a warm read still returns one object."""

from __future__ import annotations

import gc

from tokenry.core.clock import FakeClock
from tokenry.flows.introspection_cache import PositiveCache


def claims(n: int, now: float) -> dict[str, object]:
    return {
        "jti": f"j{n}",
        "gid": f"g{n}",
        "sub": "alice",
        "client_id": "app",
        "scope": "demo.read",
        "aud": ["rs0", "rs1"],
        "iat": int(now),
        "exp": now + 600,
    }


def test_stored_entries_and_index_buckets_are_not_tracked_by_the_collector() -> None:
    clock = FakeClock()
    cache = PositiveCache(clock)
    for n in range(1_000):
        cache.put(n.to_bytes(4, "big"), claims(n, clock.now()), kid="k1")
    # A pass untracks a tuple whose items are untracked: an entry's audience tuple in one pass,
    # the entry holding it in the same or the next, depending on the collector's list order.
    gc.collect()
    gc.collect()
    stored = list(cache._entries.values())
    buckets = [
        bucket
        for index in (cache._by_jti, cache._by_gid, cache._by_kid, cache._by_sub, cache._by_client)
        for bucket in index.values()
    ]
    tracked = [o for o in (*stored, *buckets) if gc.is_tracked(o)]
    print(f"{len(stored)} entries, {len(buckets)} buckets, {len(tracked)} tracked")
    assert len(stored) == 1_000
    assert tracked == []


def test_a_warm_read_returns_the_same_answer_object() -> None:
    clock = FakeClock()
    cache = PositiveCache(clock)
    put = cache.put(b"a", claims(1, clock.now()))
    first, second = cache.get(b"a"), cache.get(b"a")
    assert first is not None and first is second
    assert first.answer == put.answer and first.exp == put.exp
    assert first.answer.aud == ("rs0", "rs1") and first.answer.jti == "j1"


def test_the_recently_read_table_is_bounded_and_forgets_what_is_revoked() -> None:
    clock = FakeClock()
    cache = PositiveCache(clock, hot_size=2)
    for n in range(3):
        cache.put(bytes([n]), claims(n, clock.now()))
        assert cache.get(bytes([n])) is not None
    assert len(cache._hot) == 2 and len(cache) == 3
    assert cache.get(bytes([0])) is not None  # read again from its stored entry
    assert cache.invalidate("jti", "j0") == 1
    assert cache.get(bytes([0])) is None and bytes([0]) not in cache._hot
    cache.put(bytes([1]), claims(1, clock.now()))  # stored again: its old answer is not kept
    assert bytes([1]) not in cache._hot

"""The introspector's positive cache: bounded by size, by the token's exp, by age; invalidated
through per-field indexes on jti, gid, kid and the sub/client_id watermarks (iat < not_before);
an invalidation touches only the entries it removes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from tokenry.core.clock import FakeClock
from tokenry.services.introspector.cache import PositiveCache


def claims(n: int, now: float, **extra: object) -> dict[str, object]:
    return {
        "jti": f"j{n}",
        "gid": f"g{n}",
        "sub": f"s{n}",
        "client_id": f"c{n}",
        "iat": int(now),
        "exp": now + 600,
        **extra,
    }


def test_entries_expire_with_the_token() -> None:
    clock = FakeClock()
    cache = PositiveCache(clock, max_age=1000)
    cache.put(b"a", claims(1, clock.now(), exp=clock.now() + 10))
    assert cache.get(b"a") is not None
    clock.advance(10)
    assert cache.get(b"a") is None


def test_entries_expire_with_age() -> None:
    clock = FakeClock()
    cache = PositiveCache(clock, max_age=5)
    cache.put(b"a", claims(1, clock.now()))
    clock.advance(4.9)
    assert cache.get(b"a") is not None
    clock.advance(0.2)
    assert cache.get(b"a") is None


def test_size_is_bounded_oldest_first() -> None:
    clock = FakeClock()
    cache = PositiveCache(clock, size=2)
    for n in range(3):
        cache.put(bytes([n]), claims(n, clock.now()))
    assert cache.get(bytes([0])) is None
    assert cache.get(bytes([1])) is not None and cache.get(bytes([2])) is not None


def test_revocation_events_invalidate_by_each_kind() -> None:
    clock = FakeClock()
    cache = PositiveCache(clock)
    for kind, value, n in (
        ("jti", "j1", 1),
        ("grant", "g2", 2),
        ("subject", "s3", 3),
        ("client", "c4", 4),
    ):
        cache.put(bytes([n]), claims(n, clock.now()))
        cache.put(bytes([n + 10]), claims(n + 10, clock.now()))
        cache.invalidate(kind, value)
        assert cache.get(bytes([n])) is None, kind
        assert cache.get(bytes([n + 10])) is not None, kind


def test_subject_and_client_watermarks_drop_only_tokens_issued_before_not_before() -> None:
    """docs/spec.md §4: a subject/client revocation revokes tokens with iat < not_before, the rule
    the PostgreSQL check and the verifiers apply; a token minted at or after it stays cached."""
    clock = FakeClock()
    now = int(clock.now())
    for kind, field in (("subject", "sub"), ("client", "client_id")):
        cache = PositiveCache(clock)
        cache.put(b"old", claims(1, now, iat=now - 10, **{field: "x"}))
        cache.put(b"edge", claims(2, now, iat=now + 1, **{field: "x"}))
        cache.put(b"new", claims(3, now, iat=now + 2, **{field: "x"}))
        cache.put(b"other", claims(4, now, iat=now - 10))
        assert cache.invalidate(kind, "x", not_before=now + 2) == 2
        assert cache.get(b"old") is None, kind
        assert cache.get(b"edge") is None, kind  # iat = not_before - 1
        assert cache.get(b"new") is not None, kind  # iat = not_before: not revoked
        assert cache.get(b"other") is not None, kind


def test_a_key_revocation_drops_the_jwts_it_signed() -> None:
    clock = FakeClock()
    cache = PositiveCache(clock)
    cache.put(b"k1", claims(1, clock.now()), kid="kid-1")
    cache.put(b"k2", claims(2, clock.now()), kid="kid-2")
    cache.put(b"opaque", claims(3, clock.now()))
    assert cache.invalidate_kid("kid-1") == 1
    assert cache.get(b"k1") is None
    assert cache.get(b"k2") is not None and cache.get(b"opaque") is not None


def test_every_digest_of_a_malleable_token_is_dropped() -> None:
    """Token bytes are malleable (high-S ECDSA, docs/spec.md §3): one jti may sit under two
    digests."""
    clock = FakeClock()
    cache = PositiveCache(clock)
    cache.put(b"low-s", claims(1, clock.now()))
    cache.put(b"high-s", claims(1, clock.now()))
    assert cache.invalidate("jti", "j1") == 2
    assert cache.get(b"low-s") is None and cache.get(b"high-s") is None


class CountingClaims(Mapping[str, Any]):
    """Claims that count how often they are read."""

    reads = 0

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        CountingClaims.reads += 1
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        CountingClaims.reads += 1
        return self._data.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def test_an_invalidation_touches_only_the_entries_it_removes() -> None:
    """O(1) per event: a full cache is not scanned (it was: up to 50k entries per event)."""
    clock = FakeClock()
    cache = PositiveCache(clock, size=5_000)
    for n in range(5_000):
        cache.put(n.to_bytes(4, "big"), CountingClaims(claims(n, clock.now())))
    for kind, value in (
        ("jti", "j1"),
        ("grant", "g2"),
        ("subject", "s3"),
        ("client", "c4"),
        ("jti", "unknown"),
        ("subject", "unknown"),
    ):
        CountingClaims.reads = 0
        cache.invalidate(kind, value)
        assert CountingClaims.reads <= 10, (kind, CountingClaims.reads)
    assert len(cache) == 5_000 - 4


def test_a_lookup_that_raced_an_invalidation_is_not_cached() -> None:
    """The lookup may have read PostgreSQL before the revocation committed: its answer goes to
    its caller, never into the cache."""
    clock = FakeClock()
    cache = PositiveCache(clock)
    epoch = cache.epoch  # the lookup starts
    cache.invalidate("jti", "j1")  # a revocation's invalidation lands meanwhile
    entry = cache.put(b"a", claims(1, clock.now()), epoch=epoch)
    assert entry.answer.active
    assert cache.get(b"a") is None
    cache.put(b"a", claims(1, clock.now()), epoch=cache.epoch)
    assert cache.get(b"a") is not None


def test_the_indexes_forget_what_the_cache_forgets() -> None:
    """Evicted and aged-out entries leave no index entry behind (no unbounded growth)."""
    clock = FakeClock()
    cache = PositiveCache(clock, size=2, max_age=5)
    for n in range(10):
        cache.put(bytes([n]), claims(n, clock.now()), kid=f"k{n}")
    clock.advance(6)
    assert cache.get(bytes([9])) is None  # aged out
    indexes = (cache._by_jti, cache._by_gid, cache._by_kid, cache._by_sub, cache._by_client)
    assert [len(index) for index in indexes] == [1, 1, 1, 1, 1]  # only entry 8 is left
    cache.clear()
    assert [len(index) for index in indexes] == [0, 0, 0, 0, 0]


def test_while_held_nothing_is_answered_from_the_cache() -> None:
    """Between a commit's NOTIFY and the read of its rows, answers come from PostgreSQL."""
    clock = FakeClock()
    cache = PositiveCache(clock)
    cache.put(b"a", claims(1, clock.now()))
    cache.hold()
    assert cache.held
    assert cache.get(b"a") is None
    cache.put(b"b", claims(2, clock.now()))  # a lookup made while held is still kept
    assert cache.invalidate("jti", "j1") == 1  # and invalidation still works
    assert cache.get(b"b") is None
    cache.release()
    assert not cache.held
    assert cache.get(b"a") is None
    assert cache.get(b"b") is not None

"""The introspector's positive cache: bounded by size, by the token's exp, by age; invalidated
by revocation events on jti, gid, sub and client_id."""

from __future__ import annotations

from tokenry.core.clock import FakeClock
from tokenry.services.introspector.handlers import PositiveCache


def claims(n: int, now: float, **extra: object) -> dict[str, object]:
    return {
        "jti": f"j{n}",
        "gid": f"g{n}",
        "sub": f"s{n}",
        "client_id": f"c{n}",
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

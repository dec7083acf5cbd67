"""The verifier used from threads: verify_blocking, the loop hand-off, and the cache under races."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tokenry.core.clock import SystemClock
from tokenry.jose import JwksCache
from tokenry.verifier._cache import CacheEntry, TokenCache
from tokenry.verifier._verifier import StalePolicy, Verifier, VerifierConfig
from tokenry.verifier.errors import RejectedHeaderError, RevokedError, VerifierUnavailableError
from tokenry.verifier.sync_interceptor import VerifierLoop

from .minting import AUDIENCE, ISSUER, FakeJwksSource, FakeState, MemoryIntrospector, Minter


async def _build(
    source: FakeJwksSource, introspector: MemoryIntrospector | None = None
) -> Verifier:
    jwks = JwksCache(source, SystemClock(), min_refresh_interval=0.0)
    await jwks.refresh(force=True)
    return Verifier(
        VerifierConfig(issuer=ISSUER, audience=AUDIENCE, cache_size=64),
        jwks,
        FakeState(),
        _WallClockAtMintTime(),
        introspector=introspector,
    )


class _WallClockAtMintTime(SystemClock):
    """Real monotonic time, and the minting helper's fixed 'now' as wall time."""

    def now(self) -> float:
        return 1_800_000_000.0


@pytest.fixture
def loop_thread():  # type: ignore[no-untyped-def]
    with VerifierLoop.start() as vl:
        yield vl


def test_threads_verify_first_sight_and_hits_without_the_loop(loop_thread: VerifierLoop) -> None:
    minter = Minter()
    source = FakeJwksSource(minter)
    verifier = loop_thread.run(_build(source))
    tokens = [minter.token() for _ in range(40)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda t: verifier.verify_blocking("".join(t)), tokens * 5))
    assert all(r["sub"] == "svc-a" for r in results)
    assert verifier.stats.verified + verifier.stats.hits == 200
    assert verifier.stats.verified >= 40 and source.calls == 1
    assert len(verifier.cache) <= 64


def test_an_unknown_kid_is_refreshed_on_the_loop(loop_thread: VerifierLoop) -> None:
    first, second = Minter("first"), Minter("second")
    source = FakeJwksSource(first)
    verifier = loop_thread.run(_build(source))
    source.serve(first, second)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: verifier.verify_blocking(second.token()), range(32)))
    assert all(r["sub"] == "svc-a" for r in results)
    assert 2 <= source.calls <= 3  # shared refreshes, never one per thread
    with pytest.raises(RejectedHeaderError):
        verifier.verify_blocking(Minter("third").token())


def test_the_introspection_fallback_runs_on_the_loop(loop_thread: VerifierLoop) -> None:
    minter = Minter()
    server = MemoryIntrospector()
    verifier = loop_thread.run(_build(FakeJwksSource(minter), server))
    assert isinstance(verifier.state, FakeState)
    verifier.state.stale = True
    token = server.issue(minter.token(), minter.claims())
    assert verifier.verify_blocking(token, on_stale=StalePolicy.INTROSPECT)["sub"] == "svc-a"
    server.revoked.add(server.issued[token]["jti"])
    with pytest.raises(RevokedError):
        verifier.verify_blocking(token, on_stale=StalePolicy.INTROSPECT)
    with pytest.raises(VerifierUnavailableError):  # fail closed needs no loop at all
        verifier.verify_blocking(token)
    assert server.calls == 2


def test_a_loop_that_does_not_answer_in_time_means_unavailable(loop_thread: VerifierLoop) -> None:
    first, second = Minter("first"), Minter("second")
    source = FakeJwksSource(first)
    verifier = loop_thread.run(_build(source))
    source.serve(first, second)
    gate = asyncio.Event()
    source.gate = gate
    with pytest.raises(VerifierUnavailableError) as err:
        verifier.verify_blocking(second.token(), timeout=0.05)
    assert err.value.reason == "timeout"
    loop_thread.loop.call_soon_threadsafe(gate.set)


def test_verify_blocking_on_the_verifiers_own_loop_is_refused(loop_thread: VerifierLoop) -> None:
    first, second = Minter("first"), Minter("second")
    verifier = loop_thread.run(_build(FakeJwksSource(first)))

    async def misuse() -> None:
        verifier.verify_blocking(second.token())

    with pytest.raises(RuntimeError, match="own loop"):
        loop_thread.run(misuse())


def test_the_cache_survives_concurrent_writers_and_readers() -> None:
    cache = TokenCache(max_size=100)
    entry = CacheEntry({}, 1.0, "k", "j", None, None, None, 0.0)
    errors: list[BaseException] = []
    stop = threading.Event()

    def write(offset: int) -> None:
        try:
            for i in range(5000):
                cache.put(f"t{offset}-{i}", entry)
                if i % 7 == 0:
                    cache.discard(f"t{offset}-{i - 3}")
        except BaseException as exc:  # pragma: no cover - the failure being tested for
            errors.append(exc)

    def read() -> None:
        try:
            while not stop.is_set():
                for i in range(0, 5000, 13):
                    cache.get(f"t0-{i}")
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(2)]
    writers = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors
    assert len(cache) <= 100

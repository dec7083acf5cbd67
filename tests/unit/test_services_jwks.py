"""The services' JWT checks use the one tokenry.jose.JwksCache over PostgreSQL's published keys
(tokenry.store.jwks_source): single flight, rate limited, a TTL on the monotonic clock, and an
outage never mistaken for an unknown key. Fakes of KeyStore.published count the reads."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from tokenry.core.clock import FakeClock
from tokenry.flows.subject_tokens import PublishedKeys
from tokenry.services.revocation.tokens import JwtTokens
from tokenry.store.jwks_source import StoreJwksSource


def _jwk(kid: str) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return {**json.loads(ECAlgorithm.to_jwk(key)), "kid": kid, "alg": "ES256", "use": "sig"}


class SlowKeyStore:
    """``KeyStore.published`` held at a gate, counting reads; can fail."""

    def __init__(self, *kids: str) -> None:
        self.jwks = [_jwk(kid) for kid in kids]
        self.reads = 0
        self.gate = asyncio.Event()
        self.fail: Exception | None = None

    async def published(self) -> tuple[list[dict[str, Any]], int]:
        self.reads += 1
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return self.jwks, 7


async def test_store_source_serves_the_published_set_and_its_seq() -> None:
    store = SlowKeyStore("k1")
    store.gate.set()
    text, seq = await StoreJwksSource(store).fetch()
    assert json.loads(text) == {"keys": store.jwks} and seq == 7


async def test_issuer_a_burst_of_unknown_kids_makes_one_database_read() -> None:
    # Before issue 12 the issuer's cache had no single flight: one read per unknown kid.
    store = SlowKeyStore("k1")
    keys = PublishedKeys(store, FakeClock())  # type: ignore[arg-type]
    burst = [asyncio.create_task(keys.get(f"unknown-{i}")) for i in range(50)]
    await asyncio.sleep(0)
    store.gate.set()
    assert await asyncio.gather(*burst) == [None] * 50
    assert store.reads == 1
    # Rate limited: another unknown kid within the minimum interval reads nothing more.
    assert await keys.get("unknown-again") is None
    assert store.reads == 1


async def test_issuer_keys_expire_on_the_monotonic_clock() -> None:
    store = SlowKeyStore("k1")
    store.gate.set()
    clock = FakeClock()
    keys = PublishedKeys(store, clock)  # type: ignore[arg-type]
    assert (await keys.get("k1")) is not None and store.reads == 1
    clock.advance(4.9)
    assert (await keys.get("k1")) is not None and store.reads == 1
    clock.advance(0.2)  # past KEYS_TTL (5 s)
    assert (await keys.get("k1")) is not None and store.reads == 2


async def test_revocation_a_burst_of_unknown_kids_makes_one_database_read() -> None:
    store = SlowKeyStore("k1")
    tokens = JwtTokens(store, FakeClock())
    # Well-formed JWS shapes naming unknown kids (the header passes; the kid is not ours).
    header = "eyJhbGciOiJFUzI1NiIsImtpZCI6Im5vcGUiLCJ0eXAiOiJhdCtqd3QifQ"  # kid "nope"
    burst = [asyncio.create_task(tokens.find(f"{header}.e30.AAAA")) for _ in range(20)]
    await asyncio.sleep(0)
    store.gate.set()
    assert await asyncio.gather(*burst) == [None] * 20
    assert store.reads == 1


async def test_an_outage_is_not_mistaken_for_an_unknown_key() -> None:
    # The old caches raised the database error; the shared cache must keep doing so rather
    # than answer "not our key" (which RFC 7009 would turn into a silent no-op).
    store = SlowKeyStore("k1")
    store.gate.set()
    store.fail = ConnectionError("PostgreSQL is down")
    keys = PublishedKeys(store, FakeClock())  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        await keys.get("k1")

"""Test helpers for the verifier's unit tests: signing keys, tokens, and real in-memory ports.

Nothing here is a mock: ``FakeJwksSource`` is a JWKS source that serves a set held in memory,
``FakeState`` a revocation state whose staleness the test sets, ``MemoryIntrospector`` a tiny
authorization server that knows which tokens it issued and which it revoked.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from tokenry.core.clock import FakeClock
from tokenry.core.revocations import RevocationSet
from tokenry.jose import JwksCache
from tokenry.verifier._verifier import Verifier, VerifierConfig

ISSUER = "https://issuer.test"
AUDIENCE = "demo-api"
NOW = 1_800_000_000.0  # FakeClock's default


class Minter:
    """A signing key with its public JWK; mints RFC 9068 access tokens."""

    def __init__(self, kid: str = "k1", alg: str = "ES256") -> None:
        self.kid = kid
        self.alg = alg
        if alg == "ES256":
            self.key: Any = ec.generate_private_key(ec.SECP256R1())
            jwk = ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        else:
            self.key = Ed25519PrivateKey.generate()
            jwk = OKPAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        self.jwk: dict[str, Any] = {**jwk, "kid": kid, "alg": alg, "use": "sig"}
        self._n = 0

    def claims(self, **overrides: Any) -> dict[str, Any]:
        self._n += 1
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": "svc-a",
            "aud": AUDIENCE,
            "exp": int(NOW) + 600,
            "iat": int(NOW) - 1,
            "jti": f"jti-{self.kid}-{self._n}",
            "client_id": "svc-a",
            "scope": "demo.read",
            "gid": f"gid-{self.kid}-{self._n}",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, **overrides: Any) -> str:
        return jwt.encode(
            self.claims(**overrides),
            self.key,
            algorithm=self.alg,
            headers={"kid": self.kid, "typ": "at+jwt"},
        )


def jwks_json(*minters: Minter) -> str:
    return json.dumps({"keys": [m.jwk for m in minters]})


class FakeJwksSource:
    """Serves ``jwks`` from memory; counts fetches; can fail or hold fetches at a gate."""

    def __init__(self, *minters: Minter) -> None:
        self.jwks = jwks_json(*minters)
        self.calls = 0
        self.fail = False
        self.gate: asyncio.Event | None = None

    def serve(self, *minters: Minter) -> None:
        self.jwks = jwks_json(*minters)

    async def fetch(self) -> tuple[str, int]:
        self.calls += 1
        served = self.jwks  # what was current when the fetch started
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ConnectionError("key rotator unreachable")
        return served, self.calls


class FakeState:
    """A revocation state whose staleness the test controls (``RevocationView``)."""

    def __init__(self) -> None:
        self.revocations = RevocationSet()
        self.stale = False

    def is_stale(self) -> bool:
        return self.stale

    def proof_age(self) -> float:
        return 99.0 if self.stale else 0.5


class MemoryIntrospector:
    """A minimal authorization server (RFC 7662): active iff it issued the token and did not
    revoke it. ``down`` makes it fail like an unreachable service."""

    def __init__(self) -> None:
        self.issued: dict[str, Mapping[str, Any]] = {}
        self.revoked: set[str] = set()
        self.calls = 0
        self.down = False

    def issue(self, token: str, claims: Mapping[str, Any]) -> str:
        self.issued[token] = claims
        return token

    async def introspect(self, token: str) -> Mapping[str, Any] | None:
        self.calls += 1
        if self.down:
            raise ConnectionError("introspector unreachable")
        claims = self.issued.get(token)
        if claims is None or claims["jti"] in self.revoked:
            return None
        return claims


async def make_verifier(
    *minters: Minter,
    clock: FakeClock | None = None,
    introspector: MemoryIntrospector | None = None,
    cache_size: int = 1000,
    load: bool = True,
) -> tuple[Verifier, FakeJwksSource, FakeState, FakeClock]:
    clock = clock or FakeClock()
    source = FakeJwksSource(*minters)
    jwks = JwksCache(source, clock)
    if load:
        await jwks.refresh(force=True)
    state = FakeState()
    verifier = Verifier(
        VerifierConfig(issuer=ISSUER, audience=AUDIENCE, cache_size=cache_size),
        jwks,
        state,
        clock,
        introspector=introspector,
    )
    return verifier, source, state, clock

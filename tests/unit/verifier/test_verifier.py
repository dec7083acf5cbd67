"""The Verifier: cache, revocation checks, JWKS misses, staleness policy, introspection fallback.

Pure unit tests: real JWKS cache and revocation set, in-memory ports (minting.py), FakeClock.
"""

from __future__ import annotations

import asyncio
from types import MappingProxyType

import pytest

from tokenry.core.revocations import Revocation, RevocationKind
from tokenry.jose import Decoder, JwksCache
from tokenry.verifier._verifier import STALENESS_RECHECK, StalePolicy, VerifierConfig
from tokenry.verifier.errors import (
    InvalidClaimsError,
    MalformedTokenError,
    RejectedHeaderError,
    RevokedError,
    TokenExpiredError,
    VerifierUnavailableError,
)

from .minting import NOW, MemoryIntrospector, Minter, make_verifier

INTROSPECT = StalePolicy.INTROSPECT


def fresh(token: str) -> str:
    """An equal string that is a different object (its hash is not cached yet)."""
    return "".join(list(token))


async def test_first_sight_verifies_then_a_repeat_is_a_cache_hit() -> None:
    minter = Minter()
    verifier, source, _, _ = await make_verifier(minter)
    token = minter.token()
    claims = await verifier.verify(token)
    assert claims["sub"] == "svc-a" and claims["aud"] == "demo-api"
    assert (verifier.stats.verified, verifier.stats.hits, verifier.stats.misses) == (1, 0, 1)
    copy = fresh(token)
    assert copy is not token
    assert verifier.check_cached(copy) is claims
    assert await verifier.verify(fresh(token)) is claims
    assert verifier.stats.hits == 2 and source.calls == 1
    assert verifier.stats.hit_ratio == pytest.approx(2 / 3)


async def test_cached_claims_are_read_only() -> None:
    minter = Minter()
    verifier, *_ = await make_verifier(minter)
    claims = await verifier.verify(minter.token())
    assert isinstance(claims, MappingProxyType)
    with pytest.raises(TypeError):
        claims["scope"] = "tokenry:admin"  # type: ignore[index]


@pytest.mark.parametrize(
    ("kind", "value_of"),
    [
        (RevocationKind.JTI, lambda c: c["jti"]),
        (RevocationKind.GRANT, lambda c: c["gid"]),
        (RevocationKind.SUBJECT, lambda c: c["sub"]),
        (RevocationKind.CLIENT, lambda c: c["client_id"]),
    ],
)
async def test_a_cached_token_is_rejected_once_revoked(kind: RevocationKind, value_of) -> None:  # type: ignore[no-untyped-def]
    minter = Minter()
    verifier, _, state, _ = await make_verifier(minter)
    token = minter.token()
    claims = await verifier.verify(token)
    state.revocations.apply(Revocation(kind, value_of(claims), int(NOW) + 1, int(NOW) + 3600))
    assert verifier.check_cached(token) is None
    with pytest.raises(RevokedError) as err:
        await verifier.verify(token)
    assert err.value.reason == "revoked"
    assert verifier.stats.failures == {("rejected", "revoked"): 1}


async def test_subject_revocation_spares_tokens_issued_after_it() -> None:
    minter = Minter()
    verifier, _, state, _ = await make_verifier(minter)
    state.revocations.apply(
        Revocation(RevocationKind.SUBJECT, "svc-a", int(NOW) - 10, int(NOW) + 3600)
    )
    assert (await verifier.verify(minter.token(iat=int(NOW) - 5)))["sub"] == "svc-a"
    with pytest.raises(RevokedError):
        await verifier.verify(minter.token(iat=int(NOW) - 20))


async def test_a_cached_token_expires_and_leaves_the_cache() -> None:
    minter = Minter()
    verifier, _, _, clock = await make_verifier(minter)
    token = minter.token(exp=int(NOW) + 60)
    await verifier.verify(token)
    clock.advance(60 + verifier.config.leeway)
    assert verifier.check_cached(token) is None
    with pytest.raises(TokenExpiredError):
        await verifier.verify(token)
    assert len(verifier.cache) == 0
    with pytest.raises(TokenExpiredError):  # and again, now from a fresh decode
        await verifier.verify(token)


async def test_a_revoked_key_rejects_cached_and_new_tokens_without_a_fetch() -> None:
    minter = Minter()
    verifier, source, _, clock = await make_verifier(minter)
    cached = minter.token()
    await verifier.verify(cached)
    verifier.jwks.revoke("k1")
    clock.advance(10)
    for token in (cached, minter.token()):
        with pytest.raises(RevokedError) as err:
            await verifier.verify(token)
        assert err.value.reason == "key_revoked"
    assert source.calls == 1


async def test_a_key_removed_from_the_jwks_stops_its_cached_tokens() -> None:
    old, new = Minter("old"), Minter("new")
    verifier, source, _, _ = await make_verifier(old, new)
    token = old.token()
    await verifier.verify(token)
    source.serve(new)
    await verifier.jwks.refresh(force=True)
    with pytest.raises(RejectedHeaderError) as err:
        await verifier.verify(token)
    assert err.value.reason == "unknown_kid"


async def test_unknown_kid_triggers_one_rate_limited_refresh() -> None:
    known, stranger = Minter("known"), Minter("stranger")
    verifier, source, _, clock = await make_verifier(known)
    clock.advance(5)
    with pytest.raises(RejectedHeaderError) as err:
        await verifier.verify(stranger.token())
    assert err.value.reason == "unknown_kid" and source.calls == 2
    for _ in range(20):  # a flood of unknown kids within the interval: no more fetches
        with pytest.raises(RejectedHeaderError):
            await verifier.verify(stranger.token())
    assert source.calls == 2
    clock.advance(1.0)
    with pytest.raises(RejectedHeaderError):
        await verifier.verify(stranger.token())
    assert source.calls == 3


async def test_an_unknown_kid_while_the_key_source_fails_is_unavailable_not_invalid() -> None:
    """An outage is not an unknown key: the caller must retry, not drop the token as invalid
    (found by the fault suite: a rotated-in key while the key rotator was unreachable)."""
    known, rotated_in = Minter("known"), Minter("rotated-in")
    verifier, source, _, clock = await make_verifier(known)
    source.fail = True
    clock.advance(5)
    with pytest.raises(VerifierUnavailableError) as err:
        await verifier.verify(rotated_in.token())
    assert err.value.reason == "keys_unavailable"
    assert (await verifier.verify(known.token()))["sub"] == "svc-a"  # held keys still serve
    source.fail = False
    source.serve(known, rotated_in)
    clock.advance(5)
    assert (await verifier.verify(rotated_in.token()))["sub"] == "svc-a"


async def test_a_new_key_is_picked_up_on_its_first_token() -> None:
    first, second = Minter("first"), Minter("second")
    verifier, source, _, clock = await make_verifier(first)
    source.serve(first, second)
    clock.advance(5)
    assert (await verifier.verify(second.token()))["sub"] == "svc-a"
    assert source.calls == 2


async def test_concurrent_unknown_kid_misses_share_one_fetch() -> None:
    first, second = Minter("first"), Minter("second")
    verifier, source, _, clock = await make_verifier(first)
    source.serve(first, second)
    source.gate = asyncio.Event()
    clock.advance(5)
    tasks = [asyncio.create_task(verifier.verify(second.token())) for _ in range(50)]
    await asyncio.sleep(0)
    source.gate.set()
    results = await asyncio.gather(*tasks)
    assert all(r["sub"] == "svc-a" for r in results)
    assert source.calls == 2  # the initial load and one shared refresh


async def test_a_verifier_whose_first_fetch_failed_refuses_then_recovers() -> None:
    minter = Minter()
    verifier, source, _, clock = await make_verifier(minter, load=False)
    source.fail = True
    await verifier.jwks.refresh(force=True)
    assert not verifier.jwks.loaded and verifier.jwks.last_error is not None
    with pytest.raises(VerifierUnavailableError) as err:
        await verifier.verify(minter.token())
    assert err.value.reason == "no_keys"
    assert verifier.stats.failures == {("unavailable", "no_keys"): 1}
    with pytest.raises(MalformedTokenError):  # garbage is still garbage
        await verifier.verify("not-a-token")
    source.fail = False
    clock.advance(1.0)
    assert (await verifier.verify(minter.token()))["sub"] == "svc-a"


async def test_stale_state_fails_closed_by_default_even_for_cached_tokens() -> None:
    minter = Minter()
    verifier, _, state, _ = await make_verifier(minter, introspector=MemoryIntrospector())
    token = minter.token()
    await verifier.verify(token)
    state.stale = True
    assert verifier.check_cached(token) is None
    with pytest.raises(VerifierUnavailableError) as err:
        await verifier.verify(token)
    assert err.value.reason == "stale"
    state.stale = False
    assert await verifier.verify(token)


async def test_the_hot_path_reuses_a_fresh_verdict_for_at_most_the_recheck_interval() -> None:
    minter = Minter()
    verifier, _, state, clock = await make_verifier(minter)
    token = minter.token()
    await verifier.verify(token)
    assert verifier.check_cached(token) is not None  # proven fresh just now
    state.stale = True
    clock.advance(STALENESS_RECHECK / 2)
    assert verifier.check_cached(token) is not None  # within the 10 ms slack
    clock.advance(STALENESS_RECHECK / 2)
    assert verifier.check_cached(token) is None
    with pytest.raises(VerifierUnavailableError):
        await verifier.verify(token)
    state.stale = False
    assert verifier.check_cached(token) is not None  # recovery is seen at once


async def test_stale_with_introspect_policy_but_no_introspector_fails_closed() -> None:
    minter = Minter()
    verifier, _, state, _ = await make_verifier(minter)
    state.stale = True
    with pytest.raises(VerifierUnavailableError) as err:
        await verifier.verify(minter.token(), on_stale=INTROSPECT)
    assert err.value.reason == "stale"


async def test_introspection_fallback_accepts_active_and_refuses_inactive_tokens() -> None:
    minter = Minter()
    server = MemoryIntrospector()
    verifier, _, state, _ = await make_verifier(minter, introspector=server)
    active = server.issue(minter.token(), minter.claims())
    revoked_claims = minter.claims()
    revoked = server.issue(minter.token(jti=revoked_claims["jti"]), revoked_claims)
    server.revoked.add(revoked_claims["jti"])
    state.stale = True

    claims = await verifier.verify(active, on_stale=INTROSPECT)
    assert claims["sub"] == "svc-a"
    with pytest.raises(RevokedError) as err:
        await verifier.verify(revoked, on_stale=INTROSPECT)
    assert err.value.reason == "inactive"
    assert server.calls == 2 and verifier.stats.introspected == 1
    await verifier.verify(active, on_stale=INTROSPECT)  # per request: asked again
    assert server.calls == 3


async def test_introspection_fallback_refuses_bad_tokens_without_asking() -> None:
    minter, forger = Minter(), Minter()  # same kid, other key: a forgery
    server = MemoryIntrospector()
    verifier, _, state, _ = await make_verifier(minter, introspector=server)
    state.stale = True
    expired = minter.token(exp=int(NOW) - 3600, iat=int(NOW) - 4000)
    for token, error in (
        ("garbage", MalformedTokenError),
        (expired, TokenExpiredError),
        (forger.token(), Exception),
        (minter.token(aud="elsewhere"), InvalidClaimsError),
    ):
        server.issue(token, minter.claims())
        with pytest.raises(error):
            await verifier.verify(token, on_stale=INTROSPECT)
    assert server.calls == 0


async def test_introspection_failure_is_unavailable_not_accepted() -> None:
    minter = Minter()
    server = MemoryIntrospector()
    verifier, _, state, _ = await make_verifier(minter, introspector=server)
    token = server.issue(minter.token(), minter.claims())
    server.down = True
    state.stale = True
    with pytest.raises(VerifierUnavailableError) as err:
        await verifier.verify(token, on_stale=INTROSPECT)
    assert err.value.reason == "introspection_failed"


async def test_without_keys_the_fallback_validates_the_introspection_answer() -> None:
    minter = Minter()
    server = MemoryIntrospector()
    verifier, source, _, _ = await make_verifier(minter, introspector=server, load=False)
    source.fail = True
    good = server.issue(minter.token(), minter.claims())
    elsewhere = server.issue(minter.token(), minter.claims(aud="other-api"))
    assert (await verifier.verify(good, on_stale=INTROSPECT))["sub"] == "svc-a"
    with pytest.raises(InvalidClaimsError) as err:
        await verifier.verify(elsewhere, on_stale=INTROSPECT)
    assert err.value.reason == "bad_audience"
    with pytest.raises(VerifierUnavailableError) as unavailable:  # fail closed is the default
        await verifier.verify(good)
    assert unavailable.value.reason == "no_keys"


async def test_a_non_string_gid_is_refused() -> None:
    minter = Minter()
    verifier, *_ = await make_verifier(minter)
    with pytest.raises(InvalidClaimsError) as err:
        await verifier.verify(minter.token(gid=["a"]))
    assert err.value.reason == "bad_claim_type"


async def test_the_cache_is_bounded() -> None:
    minter = Minter()
    verifier, *_ = await make_verifier(minter, cache_size=16)
    tokens = [minter.token() for _ in range(100)]
    for token in tokens:
        await verifier.verify(token)
    assert len(verifier.cache) <= 16
    assert verifier.check_cached(tokens[-1]) is not None  # the newest survive
    assert verifier.check_cached(tokens[0]) is None
    assert await verifier.verify(tokens[0])  # an evicted token just costs a re-verification


def test_config_is_validated() -> None:
    for kwargs in (
        {"issuer": "", "audience": "a"},
        {"issuer": "i", "audience": ""},
        {"issuer": "i", "audience": "a", "leeway": 3600},
        {"issuer": "i", "audience": "a", "cache_size": 0},
    ):
        with pytest.raises(ValueError):  # noqa: PT011
            VerifierConfig(**kwargs)  # type: ignore[arg-type]


class _RevokingDecoder(Decoder):
    """A decoder whose signature check is interrupted by a key revocation (a thread race)."""

    def __init__(self, jwks: JwksCache, kid: str) -> None:
        super().__init__()
        self._jwks, self._kid = jwks, kid

    def decode_for(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        found = super().decode_for(*args, **kwargs)
        self._jwks.revoke(self._kid)  # the event loop applies a key-revoked event right now
        return found


async def test_a_key_revoked_during_a_first_sight_verification_is_refused() -> None:
    minter = Minter()
    verifier, _, _, _ = await make_verifier(minter)
    verifier._decoder = _RevokingDecoder(verifier.jwks, "k1")
    token = minter.token()
    with pytest.raises(RevokedError) as err:
        await verifier.verify(token)
    assert err.value.reason == "key_revoked"
    assert verifier.check_cached(token) is None, "nothing cached for a revoked key"

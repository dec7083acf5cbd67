"""RFC 7662 introspection against real PostgreSQL and NATS: every behaviour, no oracle."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import grpc
import pytest

from tokenry.core.opaque import ACCESS, new_token
from tokenry.devstack import EmbeddedNats
from tokenry.servicekit.config import Settings
from tokenry.servicekit.status import oauth_error_of
from tokenry.v1 import (
    clients_pb2,
    clients_pb2_grpc,
    introspector_pb2,
    introspector_pb2_grpc,
    revocation_pb2,
    revocation_pb2_grpc,
)

from suite import Suite, basic, run_suite

pytestmark = pytest.mark.integration
SERVICES = ("keyrotator", "issuer", "revocation", "introspector")
INACTIVE = introspector_pb2.IntrospectResponse(active=False)


async def introspect(
    suite: Suite, token: str, caller: str = "demo-api", hint: str = ""
) -> introspector_pb2.IntrospectResponse:
    stub = introspector_pb2_grpc.IntrospectorStub(suite.channel("introspector"))
    return await stub.Introspect(
        introspector_pb2.IntrospectRequest(token=token, token_type_hint=hint),
        metadata=[("authorization", basic(caller, suite.secrets[caller]))],
        timeout=10,
    )


async def revoke_token(suite: Suite, token: str) -> int:
    stub = revocation_pb2_grpc.RevocationStub(suite.channel("revocation"))
    resp = await stub.Revoke(
        revocation_pb2.RevokeRequest(token=token),
        metadata=[("authorization", basic("demo", suite.secrets["demo"]))],
        timeout=10,
    )
    return resp.seq


@pytest.fixture
async def suite(settings: Settings, pool: asyncpg.Pool):  # type: ignore[no-untyped-def]
    async with run_suite(settings, pool, services=SERVICES) as running:
        yield running


@pytest.mark.parametrize("token_format", ["jwt", "opaque"])
async def test_active_token_gets_the_rfc7662_answer(suite: Suite, token_format: str) -> None:
    issued = await suite.token(scope="demo.read", token_format=token_format)
    answer = await introspect(suite, issued.access_token)
    assert answer.active
    assert answer.token_type == "Bearer"
    assert answer.client_id == "demo" and answer.sub == "demo"
    assert answer.scope == "demo.read"
    assert list(answer.aud) == ["demo-api"]
    assert answer.iss == suite.settings.issuer_url
    assert answer.exp - answer.iat == 600
    assert len(answer.jti) == 22


@pytest.mark.parametrize("hint", ["", "access_token", "refresh_token", "nonsense"])
async def test_token_type_hint_is_only_a_hint(suite: Suite, hint: str) -> None:
    for token_format in ("jwt", "opaque"):
        issued = await suite.token(token_format=token_format)
        assert (await introspect(suite, issued.access_token, hint=hint)).active


async def test_every_inactive_reason_gives_the_identical_answer(suite: Suite) -> None:
    jwt = (await suite.token(token_format="jwt")).access_token
    opaque = (await suite.token(token_format="opaque")).access_token
    revoked_jwt = (await suite.token(token_format="jwt")).access_token
    revoked_opaque = (await suite.token(token_format="opaque")).access_token
    await revoke_token(suite, revoked_jwt)
    await revoke_token(suite, revoked_opaque)
    other = (await suite.token(client_id="other")).access_token  # aud other-api, not demo-api
    head, payload, sig = jwt.split(".")
    tampered = f"{head}.{payload}.{sig[:-2]}{'AA' if not sig.endswith('AA') else 'BA'}"
    cases = {
        "garbage": "not a token",
        "empty-looking": "x",
        "bad checksum": opaque[:-1] + ("A" if not opaque.endswith("A") else "B"),
        "unknown opaque": new_token(ACCESS),  # well-formed, never issued
        "tampered jwt": tampered,
        "revoked jwt": revoked_jwt,
        "revoked opaque": revoked_opaque,
        "not for this caller": other,
        "oversized": "a" * 9000,
    }
    answers = {name: await introspect(suite, token) for name, token in cases.items()}
    for name, answer in answers.items():
        assert answer == INACTIVE, name
        assert answer.SerializeToString() == INACTIVE.SerializeToString(), name


async def test_expired_token_is_inactive(suite: Suite, pool: asyncpg.Pool) -> None:
    opaque = (await suite.token(token_format="opaque")).access_token
    await pool.execute("UPDATE opaque_tokens SET expires_at = issued_at - 1")
    assert await introspect(suite, opaque) == INACTIVE


async def test_caller_must_authenticate_and_hold_the_introspect_scope(suite: Suite) -> None:
    token = (await suite.token()).access_token
    stub = introspector_pb2_grpc.IntrospectorStub(suite.channel("introspector"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Introspect(introspector_pb2.IntrospectRequest(token=token), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Introspect(
            introspector_pb2.IntrospectRequest(token=token),
            metadata=[("authorization", basic("demo-api", "wrong"))],
            timeout=5,
        )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await introspect(suite, token, caller="demo")  # authenticated, but no tokenry:introspect
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    detail = oauth_error_of(err.value)
    assert detail is not None and detail.error == "insufficient_scope"


async def test_an_admin_sees_tokens_for_any_audience(suite: Suite) -> None:
    other = (await suite.token(client_id="other")).access_token
    assert not (await introspect(suite, other)).active
    assert (await introspect(suite, other, caller="admin")).active


async def test_revocation_is_reflected_even_with_the_cache_warm(suite: Suite) -> None:
    for token_format in ("jwt", "opaque"):
        token = (await suite.token(token_format=token_format)).access_token
        assert (await introspect(suite, token)).active  # warms the positive cache
        assert (await introspect(suite, token)).active
        started = time.perf_counter()
        await revoke_token(suite, token)
        while (await introspect(suite, token)).active:
            assert time.perf_counter() - started < 10, "revocation never reflected"
            await asyncio.sleep(0.005)
        print(
            f"\n{token_format}: Revoke ack → introspection inactive: {(time.perf_counter() - started) * 1000:.1f} ms"
        )


async def test_with_nats_stopped_a_revoked_token_is_inactive(
    settings: Settings, pool: asyncpg.Pool, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    own_nats = EmbeddedNats(tmp_path / "nats")
    own_nats.start()
    try:
        async with run_suite(_with_nats(settings, own_nats.url), pool, services=SERVICES) as suite:
            token = (await suite.token(token_format="opaque")).access_token
            jwt = (await suite.token(token_format="jwt")).access_token
            own_nats.stop()
            await revoke_token(suite, token)
            await revoke_token(suite, jwt)
            assert await introspect(suite, token) == INACTIVE
            assert await introspect(suite, jwt) == INACTIVE
            fresh = (await suite.token(token_format="opaque")).access_token
            assert (await introspect(suite, fresh)).active, (
                "introspection keeps working without NATS"
            )
    finally:
        own_nats.stop()


def _with_nats(settings: Settings, url: str) -> Settings:
    from dataclasses import replace

    return replace(settings, nats_url=url)


async def test_concurrent_lookups_share_queries_but_never_answers(suite: Suite) -> None:
    """Cold lookups arriving together are batched into one query; each still gets its own
    token's answer."""
    tokens = [(await suite.token(token_format="opaque")).access_token for _ in range(12)]
    revoked = set(tokens[::4])
    for token in revoked:
        await revoke_token(suite, token)
    unknown = [new_token(ACCESS) for _ in range(4)]
    everything = tokens + unknown
    answers = await asyncio.gather(*(introspect(suite, t) for t in everything))
    for token, answer in zip(everything, answers, strict=True):
        assert answer.active == (token in tokens and token not in revoked), token[:12]


async def test_a_deleted_callers_proven_secret_stops_working(suite: Suite) -> None:
    """The caller's secret is remembered once proven (ProvenSecrets); deleting the client must
    still lock it out as soon as the client event reaches the introspector."""
    token = (await suite.token()).access_token
    assert (await introspect(suite, token)).active  # demo-api's secret is now proven
    assert (await introspect(suite, token)).active
    admin = clients_pb2_grpc.ClientsStub(suite.channel("issuer"))
    await admin.DeleteClient(
        clients_pb2.DeleteClientRequest(client_id="demo-api", reason="test"),
        metadata=[("authorization", basic("admin", suite.secrets["admin"]))],
        timeout=10,
    )
    started = time.monotonic()
    code = None
    while code is None:
        try:
            await introspect(suite, token)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
        assert time.monotonic() - started < 10, "the deleted caller was still accepted"
        await asyncio.sleep(0.01)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    print(f"deleted caller refused {1000 * (time.monotonic() - started):.1f} ms after the ack")

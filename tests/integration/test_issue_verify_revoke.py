"""The promise, in-process against real PostgreSQL and NATS: issue → verify → revoke → reject."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import grpc
import pytest

from tokenry.servicekit.config import Settings
from tokenry.servicekit.status import oauth_error_of
from tokenry.v1 import issuer_pb2, issuer_pb2_grpc, revocation_pb2, revocation_pb2_grpc
from tokenry.verifier import VerificationError, start_verifier
from tokenry.verifier.errors import RevokedError

from suite import Suite, basic, run_suite

pytestmark = pytest.mark.integration


async def _verifier(settings: Settings, suite: Suite, audience: str = "demo-api"):  # type: ignore[no-untyped-def]
    return await start_verifier(
        issuer=settings.issuer_url,
        audience=audience,
        keyrotator_addr=suite.addrs["keyrotator"],
        revocation_addr=suite.addrs["revocation"],
        nats_url=settings.nats_url,
        subjects=settings.subjects,
        stream=settings.stream.name,
    )


async def _until_fresh(runtime) -> None:  # type: ignore[no-untyped-def]
    await asyncio.wait_for(runtime.state.wait_current(), timeout=20)


async def test_issued_token_verifies_and_is_rejected_once_revocation_applied(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with run_suite(settings, pool) as suite:
        resp = await suite.token(scope="demo.read")
        assert resp.token_type == "Bearer"
        assert resp.expires_in == 600
        runtime = await _verifier(settings, suite)
        try:
            await _until_fresh(runtime)
            claims = await runtime.verifier.verify(resp.access_token)
            assert claims["sub"] == "demo" and claims["client_id"] == "demo"
            assert claims["scope"] == "demo.read" and claims["aud"] == "demo-api"
            assert len(claims["jti"]) == 22 and len(claims["gid"]) == 22

            started = time.perf_counter()
            seq = await suite.revoke(claims["jti"], reason="test")
            await asyncio.wait_for(runtime.state.wait_for_seq(seq), timeout=10)
            print(
                f"\nRevoke ack → applied by the verifier: {(time.perf_counter() - started) * 1000:.1f} ms"
            )
            with pytest.raises(RevokedError):
                await runtime.verifier.verify(resp.access_token)
            # Another token of the same client is unaffected.
            other = await suite.token()
            assert (await runtime.verifier.verify(other.access_token))["client_id"] == "demo"
        finally:
            await runtime.close()


async def test_token_for_another_audience_is_rejected(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with run_suite(settings, pool) as suite:
        resp = await suite.token(client_id="other")
        runtime = await _verifier(settings, suite)
        try:
            await _until_fresh(runtime)
            with pytest.raises(VerificationError) as err:
                await runtime.verifier.verify(resp.access_token)
            assert err.value.reason == "bad_audience"
        finally:
            await runtime.close()


async def _oauth_code(call) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    detail = oauth_error_of(err.value)
    assert detail is not None, "every error carries an OAuthError detail"
    return err.value.code(), detail.error


async def test_token_endpoint_errors(settings: Settings, pool: asyncpg.Pool) -> None:
    async with run_suite(settings, pool, services=("keyrotator", "issuer")) as suite:
        stub = issuer_pb2_grpc.IssuerStub(suite.channel("issuer"))
        good = [("authorization", basic("demo", suite.secrets["demo"]))]
        cases = [
            (
                issuer_pb2.TokenRequest(grant_type="client_credentials"),
                [("authorization", basic("demo", "wrong"))],
                "invalid_client",
            ),
            (
                issuer_pb2.TokenRequest(grant_type="client_credentials"),
                [("authorization", basic("nobody", "x"))],
                "invalid_client",
            ),
            (issuer_pb2.TokenRequest(grant_type="client_credentials"), [], "invalid_client"),
            (issuer_pb2.TokenRequest(grant_type="password"), good, "unsupported_grant_type"),
            (
                issuer_pb2.TokenRequest(grant_type="client_credentials", scope="tokenry:admin"),
                good,
                "invalid_scope",
            ),
            (
                issuer_pb2.TokenRequest(grant_type="client_credentials", scope="bad\x01scope"),
                good,
                "invalid_scope",
            ),
            (
                issuer_pb2.TokenRequest(grant_type="client_credentials", audience=["other-api"]),
                good,
                "invalid_target",
            ),
        ]
        for request, metadata, expected in cases:
            _, error = await _oauth_code(stub.Token(request, metadata=metadata, timeout=5))
            assert error == expected, (request, error)
        # client_secret_post works too (RFC 6749 §2.3.1), but not together with Basic.
        post = issuer_pb2.TokenRequest(
            grant_type="client_credentials", client_id="demo", client_secret=suite.secrets["demo"]
        )
        assert (await stub.Token(post, timeout=5)).access_token
        _, error = await _oauth_code(stub.Token(post, metadata=good, timeout=5))
        assert error == "invalid_request"


async def test_revoke_requires_an_admin_client(settings: Settings, pool: asyncpg.Pool) -> None:
    async with run_suite(settings, pool, services=("revocation",)) as suite:
        stub = revocation_pb2_grpc.RevocationStub(suite.channel("revocation"))
        code, error = await _oauth_code(
            stub.Revoke(
                revocation_pb2.RevokeRequest(jti="abc"),
                metadata=[("authorization", basic("demo", suite.secrets["demo"]))],
                timeout=5,
            )
        )
        assert (code, error) == (grpc.StatusCode.PERMISSION_DENIED, "insufficient_scope")
        code, error = await _oauth_code(
            stub.Revoke(revocation_pb2.RevokeRequest(jti="abc"), timeout=5)
        )
        assert code == grpc.StatusCode.UNAUTHENTICATED
        code, error = await _oauth_code(
            stub.Revoke(
                revocation_pb2.RevokeRequest(jti=""),
                metadata=[("authorization", basic("admin", suite.secrets["admin"]))],
                timeout=5,
            )
        )
        assert error == "invalid_request"
        # Nothing was written by the refused calls.
        assert await pool.fetchval("SELECT count(*) FROM revocations") == 0
        assert (
            await pool.fetchval("SELECT count(*) FROM outbox WHERE subject LIKE '%revocation%'")
            == 0
        )

"""Clock skew (issue 11): the dangerous band between the watermark skew (2 s) and the iat
leeway (30 s). An issuer whose clock runs 5 s or 25 s fast could mint tokens that a subject or
client revocation misses (their iat lands after the watermark); it must go NOT_SERVING and
refuse to mint instead. Within the bound, a subject revocation rejects every token minted
before its acknowledgement."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenry.servicekit.config import Settings
from tokenry.servicekit.server import serve
from tokenry.servicekit.status import oauth_error_of
from tokenry.services.issuer import app as issuer_app
from tokenry.v1 import issuer_pb2, issuer_pb2_grpc, revocation_pb2, revocation_pb2_grpc
from tokenry.verifier import start_verifier
from tokenry.verifier.errors import RevokedError

from suite import basic, run_suite

pytestmark = pytest.mark.integration


class FastClock:
    """The system clock running ``ahead`` seconds fast (wall clock only, as NTP trouble does)."""

    def __init__(self, ahead: float) -> None:
        self.ahead = ahead

    def now(self) -> float:
        return time.time() + self.ahead

    def monotonic(self) -> float:
        return time.monotonic()


async def _health(channel: grpc.aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    return int(reply.status)


@pytest.mark.parametrize("ahead", [5.0, 25.0, -90.0])
async def test_an_issuer_off_the_database_clock_stops_minting(
    settings: Settings, pool: asyncpg.Pool, ahead: float
) -> None:
    async with run_suite(settings, pool, services=("keyrotator",)) as suite:
        service = issuer_app.build(settings, "127.0.0.1", 0, clock=FastClock(ahead))
        stop = asyncio.Event()
        task = asyncio.create_task(
            serve(service, stop, grace=1, service_names=issuer_app.SERVICE_NAMES)
        )
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
                # Give it every chance to come up: keys load, the clock is measured each second.
                await asyncio.sleep(3)
                assert await _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
                stub = issuer_pb2_grpc.IssuerStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.Token(
                        issuer_pb2.TokenRequest(grant_type="client_credentials"),
                        metadata=[("authorization", basic("demo", suite.secrets["demo"]))],
                        timeout=10,
                    )
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
                detail = oauth_error_of(err.value)
                assert detail is not None and detail.error == "temporarily_unavailable"
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


async def test_within_the_bound_a_subject_revocation_rejects_every_token_minted_before_its_ack(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """The issuer runs 1 s fast (inside the 2 s bound): tokens minted back to back right up to
    the revocation's acknowledgement all carry iat < not_before."""
    async with run_suite(settings, pool, services=("keyrotator", "revocation")) as suite:
        service = issuer_app.build(settings, "127.0.0.1", 0, clock=FastClock(1.0))
        stop = asyncio.Event()
        task = asyncio.create_task(
            serve(service, stop, grace=1, service_names=issuer_app.SERVICE_NAMES)
        )
        runtime = await start_verifier(
            issuer=settings.issuer_url,
            audience="demo-api",
            keyrotator_addr=suite.addrs["keyrotator"],
            revocation_addr=suite.addrs["revocation"],
            nats_url=settings.nats_url,
            subjects=settings.subjects,
            stream=settings.stream.name,
        )
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
                stub = issuer_pb2_grpc.IssuerStub(channel)
                auth = [("authorization", basic("demo", suite.secrets["demo"]))]
                request = issuer_pb2.TokenRequest(grant_type="client_credentials")
                deadline = time.monotonic() + 20
                while True:  # until the gate has measured and the keys are loaded
                    try:
                        await stub.Token(request, metadata=auth, timeout=5)
                        break
                    except grpc.aio.AioRpcError:
                        assert time.monotonic() < deadline, "the issuer never served"
                        await asyncio.sleep(0.1)
                minted: list[str] = []
                for _ in range(20):
                    minted.append(
                        (await stub.Token(request, metadata=auth, timeout=5)).access_token
                    )
                revocations = revocation_pb2_grpc.RevocationStub(suite.channel("revocation"))
                ack = await revocations.Revoke(
                    revocation_pb2.RevokeRequest(subject="demo"),
                    metadata=[("authorization", basic("admin", suite.secrets["admin"]))],
                    timeout=10,
                )
                await asyncio.wait_for(runtime.state.wait_for_seq(ack.seq), 20)
                for token in minted:
                    with pytest.raises(RevokedError):
                        await runtime.verifier.verify(token)
                print(f"\n{len(minted)} tokens minted before the ack, all rejected")
        finally:
            await runtime.close()
            stop.set()
            await asyncio.wait_for(task, 30)

"""Brute force and abuse against the real issuer (issue 13 item 8), black box over gRPC: a
flood of wrong secrets for a client is held back (still invalid_client, with a retry hint),
and the correct secret sent in the middle of that flood is answered at once."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import grpc
import pytest

from tokenry.servicekit.config import Settings
from tokenry.v1 import issuer_pb2, issuer_pb2_grpc

from suite import basic, run_suite

pytestmark = pytest.mark.integration

FLOOD = 200


async def test_wrong_secret_flood_is_held_back_and_the_right_secret_is_not(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with run_suite(settings, pool, ("keyrotator", "issuer")) as suite:
        stub = issuer_pb2_grpc.IssuerStub(suite.channel("issuer"))
        request = issuer_pb2.TokenRequest(grant_type="client_credentials")
        wrong = (("authorization", basic("demo", "not-the-secret")),)
        right = (("authorization", basic("demo", suite.secrets["demo"])),)
        await stub.Token(request, metadata=right, timeout=10)  # warm: keys and client cached

        async def attempt() -> grpc.aio.AioRpcError:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Token(request, metadata=wrong, timeout=30)
            return caught.value

        started = time.monotonic()
        flood = [asyncio.create_task(attempt()) for _ in range(FLOOD)]
        await asyncio.sleep(0.2)  # the flood is under way, most of it being held
        t0 = time.monotonic()
        resp = await stub.Token(request, metadata=right, timeout=10)
        right_latency = time.monotonic() - t0
        errors = await asyncio.gather(*flood)
        flood_time = time.monotonic() - started

        assert resp.access_token
        assert right_latency < 0.5, right_latency  # never delayed by the failures around it
        assert all(e.code() == grpc.StatusCode.UNAUTHENTICATED for e in errors)
        assert all("invalid_client" in (e.details() or "") for e in errors)
        hinted = [e for e in errors if "retry after" in (e.details() or "")]
        assert len(hinted) >= FLOOD - 10 - 1  # beyond the per-(client, peer) burst of 10
        assert flood_time >= 1.5  # held back: answered no faster than the limiter allows

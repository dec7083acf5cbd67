"""docs/spec.md §4.4: with heartbeats stopped, past its staleness budget the interceptor fails
closed (UNAVAILABLE, temporarily_unavailable); once a head question answered by the restarted
service proves the state current again it accepts valid tokens. A verifier clock the test moves by hand keeps it deterministic."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

from tokenry.core.clock import FakeClock
from tokenry.servicekit.config import Settings
from tokenry.verifier import AuthInterceptor, MethodPolicy, current_claims
from tokenry.verifier._state import DEFAULT_STALENESS_BUDGET

from pipeline_support import mint, oauth_code, stack, start_service, wait_until

pytestmark = pytest.mark.integration
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _hello(_request: bytes, _context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    return json.dumps({"sub": current_claims()["sub"]}).encode()


async def test_stale_verifier_fails_closed_then_recovers(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    # keyrotator=False: the revocation service's relay is the only heartbeat source.
    async with stack(settings, pool, keyrotator=False) as svc:
        clock = FakeClock(now=time.time())
        runtime = await svc.verifier(clock=clock)
        # Opt-in: the host's health follows staleness (load balancers route around it).
        health = health_aio.HealthServicer()
        flips: list[bool] = []

        async def report(stale: bool) -> None:
            flips.append(stale)
            await health.set("", NOT_SERVING if stale else SERVING)

        runtime.watch_staleness(report, interval=0.05)
        server = grpc.aio.server(
            interceptors=[
                AuthInterceptor(
                    runtime.verifier, {"/demo.Greeter/Hello": MethodPolicy(scopes={"demo.read"})}
                )
            ]
        )
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    "demo.Greeter", {"Hello": grpc.unary_unary_rpc_method_handler(_hello)}
                )
            ]
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        try:
            hello = channel.unary_unary("/demo.Greeter/Hello")
            token, _ = await mint(pool, settings)
            metadata = [("authorization", f"Bearer {token}")]
            assert json.loads(await hello(b"", metadata=metadata, timeout=10)) == {"sub": "demo"}

            await svc.revocation.stop()  # the publisher is gone: no more heartbeats
            clock.advance(DEFAULT_STALENESS_BUDGET + 1)
            assert runtime.state.is_stale()
            await wait_until(lambda: flips[-1:] == [True], 10, "health follows staleness")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await hello(b"", metadata=metadata, timeout=10)
            assert oauth_code(err.value) == (
                grpc.StatusCode.UNAVAILABLE,
                "temporarily_unavailable",
            )

            # Back on the same address: the verifier asks it for the head (docs/spec.md §4.4).
            port = int(svc.revocation.addr.rsplit(":", 1)[1])
            svc.revocation = await start_service("revocation", settings, port=port)
            started = time.perf_counter()
            await asyncio.wait_for(runtime.state.wait_current(), timeout=30)
            print(f"\ncurrent again {time.perf_counter() - started:.2f}s after the restart")
            await wait_until(lambda: flips == [False, True, False], 10, "SERVING again")
            status = await health.Check(health_pb2.HealthCheckRequest(service=""), None)
            assert status.status == SERVING
            assert json.loads(await hello(b"", metadata=metadata, timeout=10)) == {"sub": "demo"}
        finally:
            await channel.close()
            await server.stop(0)

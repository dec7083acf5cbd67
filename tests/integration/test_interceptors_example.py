"""examples/backend as a real process against the in-process suite: protected in under 15 lines
of setup, reachable with the client interceptor, health public, bad tokens refused."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenry.client import ClientSecretBasic, IssuerTokenFetcher, TokenSource, bearer_interceptors
from tokenry.devstack.ports import free_tcp_port
from tokenry.servicekit.config import Settings

from suite import Suite, run_suite

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "backend" / "server.py"


def test_the_example_is_protected_in_under_15_lines_of_setup() -> None:
    lines = EXAMPLE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "--- the whole Tokenry setup" in line)
    end = next(i for i, line in enumerate(lines) if "--- end of Tokenry setup" in line)
    setup = [line for line in lines[start + 1 : end] if line.strip()]
    assert len(setup) < 15, setup


@pytest.fixture
async def backend(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[tuple[Suite, str]]:
    async with run_suite(settings, pool) as suite:
        addr = f"127.0.0.1:{free_tcp_port()}"
        env = {
            **os.environ,
            "TOKENRY_ISSUER_URL": settings.issuer_url,
            "TOKENRY_KEYROTATOR_ADDR": suite.addrs["keyrotator"],
            "TOKENRY_REVOCATION_ADDR": suite.addrs["revocation"],
            "TOKENRY_NATS_URL": settings.nats_url,
            "TOKENRY_NATS_PREFIX": settings.subjects.prefix,
            "TOKENRY_NATS_STREAM": settings.stream.name,
            "DEMO_LISTEN": addr,
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLE),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
            assert b"listening" in line, line
            yield suite, addr
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), timeout=10)


async def test_the_example_backend_answers_a_calling_service(
    backend: tuple[Suite, str],
) -> None:
    suite, addr = backend
    source = TokenSource(
        IssuerTokenFetcher(
            suite.channel("issuer"),
            ClientSecretBasic("demo", suite.secrets["demo"]),
            scope="demo.read",
        )
    )
    async with grpc.aio.insecure_channel(addr, interceptors=bearer_interceptors(source)) as ch:
        hello = ch.unary_unary("/demo.Greeter/Hello")
        for _ in range(
            400
        ):  # fail closed (UNAVAILABLE) until its first heartbeat proves it current
            try:
                answer = await hello(b"", timeout=10)
                break
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                await asyncio.sleep(0.05)
        else:
            pytest.fail("the backend never became current")
        assert b'"hello": "demo"' in answer
    async with grpc.aio.insecure_channel(addr) as plain:
        health = await health_pb2_grpc.HealthStub(plain).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING  # public: no token
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await plain.unary_unary("/demo.Greeter/Hello")(
                b"", metadata=[("authorization", "Bearer nope")], timeout=10
            )
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

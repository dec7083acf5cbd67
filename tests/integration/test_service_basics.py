"""Every service serves grpc.health.v1 and reflection, so grpcurl and probes need no extra code."""

from __future__ import annotations

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tokenry.servicekit.config import Settings

from suite import run_suite

pytestmark = pytest.mark.integration


async def _services(channel: grpc.aio.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for response in stub.ServerReflectionInfo(iter([request])):
        return {s.name for s in response.list_services_response.service}
    return set()


async def test_health_and_reflection_on_every_service(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    expected = {
        "issuer": "tokenry.v1.Issuer",
        "revocation": "tokenry.v1.Revocation",
        "keyrotator": "tokenry.v1.KeyRotator",
    }
    async with run_suite(settings, pool) as suite:
        for name, service in expected.items():
            channel = suite.channel(name)
            health = health_pb2_grpc.HealthStub(channel)
            for probe in ("", service):
                resp = await health.Check(health_pb2.HealthCheckRequest(service=probe), timeout=5)
                assert resp.status == health_pb2.HealthCheckResponse.SERVING, (name, probe)
            listed = await _services(channel)
            assert {
                service,
                "grpc.health.v1.Health",
                "grpc.reflection.v1alpha.ServerReflection",
            } <= listed

"""A servicekit server registers no method with grpc.aio (each registered method costs every
call: servicekit.server.serve_generic_only) yet answers every method: health, reflection and the
issuer's own, with telemetry off and on."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from tokenry.servicekit import rpctelemetry
from tokenry.servicekit import telemetry as otel
from tokenry.servicekit.errors import guard
from tokenry.servicekit.server import MethodTable, Ready, new_server, serve_generic_only
from tokenry.services.issuer.app import SERVICE_NAMES
from tokenry.services.issuer.servicer import ClientsServicer, IssuerApi, IssuerServicer
from tokenry.v1 import clients_pb2_grpc, issuer_pb2, issuer_pb2_grpc


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every service grpc.aio is asked to serve as registered methods."""
    seen: list[str] = []

    def record(_server: object, service: str, _handlers: object) -> None:
        seen.append(service)

    monkeypatch.setattr(grpc.aio._server.Server, "add_registered_method_handlers", record)
    return seen


async def _issuer_server() -> tuple[grpc.aio.Server, int]:
    server, _health = new_server(SERVICE_NAMES)
    ready: Ready[IssuerApi] = Ready()  # never set: Token answers UNAVAILABLE, once routed
    issuer_pb2_grpc.add_IssuerServicer_to_server(guard(IssuerServicer(ready)), server)
    clients_pb2_grpc.add_ClientsServicer_to_server(guard(ClientsServicer(ready)), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def _listed(channel: grpc.aio.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for response in stub.ServerReflectionInfo(iter([request])):
        return {s.name for s in response.list_services_response.service}
    return set()


async def _every_method_answers(port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        assert {*SERVICE_NAMES, "grpc.health.v1.Health"} <= await _listed(channel)
        token = issuer_pb2_grpc.IssuerStub(channel).Token
        with pytest.raises(grpc.aio.AioRpcError) as starting:
            await token(issuer_pb2.TokenRequest(grant_type="client_credentials"), timeout=5)
        assert starting.value.code() == grpc.StatusCode.UNAVAILABLE  # the servicer answered
        unknown: Any = channel.unary_unary("/tokenry.v1.Issuer/Nope")
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await unknown(b"", timeout=5)
        assert missing.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_no_registered_method_yet_every_method_answers(registered: list[str]) -> None:
    server, port = await _issuer_server()
    try:
        await _every_method_answers(port)
    finally:
        await server.stop(None)
    assert registered == []


@pytest.fixture
def metered(monkeypatch: pytest.MonkeyPatch) -> InMemoryMetricReader:
    reader = InMemoryMetricReader()
    meters = otel.EdgeMeterProvider(metric_readers=[reader])
    rpc = rpctelemetry.RpcTelemetry(
        meters.get_meter("t"), None, duration=rpctelemetry.rpc_duration(meters)
    )
    monkeypatch.setattr(rpctelemetry, "from_globals", lambda: rpc)
    return reader


async def test_telemetry_on_wraps_the_table_and_registers_nothing(
    registered: list[str], metered: InMemoryMetricReader
) -> None:
    server, port = await _issuer_server()
    try:
        await _every_method_answers(port)
    finally:
        await server.stop(None)
    assert registered == []
    data = metered.get_metrics_data()
    assert data is not None
    methods = {
        str((point.attributes or {})["rpc.method"])
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == "rpc.server.call.duration"
        for point in metric.data.data_points
    }
    assert {"tokenry.v1.Issuer/Token", "grpc.health.v1.Health/Check"} <= methods


class _Other(grpc.GenericRpcHandler):
    """A generic handler that is not a method dictionary: still served, after the table."""

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        if handler_call_details.method == "/x.Other/Ping":
            return grpc.unary_unary_rpc_method_handler(_pong)
        return None


async def _pong(_request: bytes, _context: object) -> bytes:
    return b"pong"


async def test_first_registration_wins_and_other_handlers_still_answer() -> None:
    table = MethodTable()
    first = grpc.unary_unary_rpc_method_handler(_pong)
    table.absorb(grpc.method_handlers_generic_handler("x.A", {"M": first}))
    later = grpc.unary_unary_rpc_method_handler(_pong)
    table.absorb(grpc.method_handlers_generic_handler("x.A", {"M": later}))
    assert table.service(_Details("/x.A/M")) is first
    assert table.service(_Details("/x.A/Other")) is None
    assert not table.absorb(_Other())

    server = grpc.aio.server()
    serve_generic_only(server)
    server.add_generic_rpc_handlers((_Other(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            ping: Any = channel.unary_unary("/x.Other/Ping")
            assert await ping(b"", timeout=5) == b"pong"
    finally:
        await server.stop(None)


class _Details(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()

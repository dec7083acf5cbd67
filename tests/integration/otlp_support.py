"""A real OTLP/gRPC receiver (opentelemetry-proto's TraceService and MetricsService) on a free
loopback port, keeping what it receives: what services configured with
``OTEL_EXPORTER_OTLP_ENDPOINT`` export, checked by the telemetry tests (and used as a sink by
scripts/bench_telemetry.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]


@dataclass
class OtlpReceiver:
    """Start with :meth:`start` (returns the endpoint URL); :meth:`stop` when done."""

    keep: bool = True
    spans: list[ReceivedSpan] = field(default_factory=list)
    metric_requests: list[metrics_service_pb2.ExportMetricsServiceRequest] = field(
        default_factory=list
    )
    exports: int = 0
    _server: grpc.aio.Server | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> str:
        server = grpc.aio.server()
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(self), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Metrics(self), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(None)

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        self.exports += 1
        if self.keep:
            self.spans.extend(_spans(request))
        self._arrived.set()

    async def wait_for(self, predicate: Any, timeout: float) -> None:
        """Until ``predicate(self.spans)`` holds (each export wakes it; no polling sleep)."""
        async with asyncio.timeout(timeout):
            while not predicate(self.spans):
                self._arrived.clear()
                await self._arrived.wait()


def _attr(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _spans(request: trace_service_pb2.ExportTraceServiceRequest) -> Iterator[ReceivedSpan]:
    for rs in request.resource_spans:
        resource = {a.key: _attr(a.value) for a in rs.resource.attributes}
        for ss in rs.scope_spans:
            for span in ss.spans:
                yield ReceivedSpan(
                    service=str(resource.get("service.name", "")),
                    name=span.name,
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(),
                    kind=span.kind,
                    attributes={a.key: _attr(a.value) for a in span.attributes},
                )


SERVER = trace_pb2.Span.SPAN_KIND_SERVER
CLIENT = trace_pb2.Span.SPAN_KIND_CLIENT
PRODUCER = trace_pb2.Span.SPAN_KIND_PRODUCER
CONSUMER = trace_pb2.Span.SPAN_KIND_CONSUMER


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, sink: OtlpReceiver) -> None:
        self._sink = sink

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self._sink.add(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, sink: OtlpReceiver) -> None:
        self._sink = sink

    async def Export(
        self, request: metrics_service_pb2.ExportMetricsServiceRequest, context: Any
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        self._sink.exports += 1
        if self._sink.keep:
            self._sink.metric_requests.append(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()

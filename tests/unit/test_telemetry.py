"""servicekit.telemetry (OTEL_* → SDK) and servicekit.rpctelemetry (per-RPC metrics, edge
sampling), against a real grpc.aio server on port 0 and the SDK's in-memory exporters."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tokenry.servicekit import telemetry as otel
from tokenry.servicekit.logging import JsonFormatter
from tokenry.servicekit.rpctelemetry import RpcTelemetry, instrument_server, rpc_duration

# --- settings --------------------------------------------------------------------------------


def test_nothing_is_exported_unless_an_endpoint_or_an_exporter_is_set() -> None:
    settings = otel.read_settings("issuer", env={})
    assert (settings.traces, settings.metrics) == ("none", "none")
    assert not settings.tracing and not settings.metering
    assert settings.service_name == "tokenry-issuer"


def test_an_otlp_endpoint_turns_otlp_on_for_both_signals() -> None:
    settings = otel.read_settings(
        "revocation", env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}
    )
    assert (settings.traces, settings.metrics) == ("otlp", "otlp")


def test_a_signal_endpoint_turns_on_only_that_signal() -> None:
    env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317"}
    settings = otel.read_settings("revocation", env=env)
    assert (settings.traces, settings.metrics) == ("otlp", "none")


def test_explicit_exporters_win_and_sdk_disabled_is_honoured() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "edge-issuer",
    }
    settings = otel.read_settings("issuer", env=env)
    assert (settings.traces, settings.metrics, settings.service_name) == (
        "console",
        "none",
        "edge-issuer",
    )
    off = otel.read_settings("issuer", env={**env, "OTEL_SDK_DISABLED": "true"})
    assert not off.tracing and not off.metering
    done = otel.configure(off, install=False)
    assert done.tracer_provider is None and done.meter_provider is None


@pytest.mark.parametrize(
    ("sampler", "arg", "ratio"),
    [
        ("", "", 1.0),
        ("always_off", "", 0.0),
        ("parentbased_always_on", "", 1.0),
        ("traceidratio", "0.01", 0.01),
        ("parentbased_traceidratio", "0.25", 0.25),
    ],
)
def test_sampling_ratio_from_the_standard_variables(sampler: str, arg: str, ratio: float) -> None:
    env = {"OTEL_TRACES_SAMPLER": sampler, "OTEL_TRACES_SAMPLER_ARG": arg}
    assert otel.read_settings("issuer", env=env).ratio == ratio


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_EXPORTER": "zipkin"},
        {"OTEL_METRICS_EXPORTER": "prometheus"},
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
        {"OTEL_TRACES_SAMPLER": "jaeger_remote"},
    ],
)
def test_bad_values_are_configuration_errors(env: dict[str, str]) -> None:
    with pytest.raises(otel.TelemetryError, match="OTEL_"):
        otel.read_settings("issuer", env=env)


def test_each_worker_scrapes_on_base_port_plus_its_index() -> None:
    settings = otel.read_settings("issuer", env={}, worker=3, metrics_listen=("127.0.0.1", 9400))
    assert settings.metrics_listen == ("127.0.0.1", 9403)
    assert settings.metering and not settings.tracing


# --- per-RPC metrics and edge sampling -------------------------------------------------------


class _Health(health_aio.HealthServicer):
    async def Check(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if request.service == "refuse":
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "no")
        return await super().Check(request, context)


async def _serve(rpc: RpcTelemetry) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    instrument_server(server, rpc)
    health_pb2_grpc.add_HealthServicer_to_server(_Health(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def _points(reader: InMemoryMetricReader, name: str) -> dict[tuple[str, str], int]:
    data = reader.get_metrics_data()
    out: dict[tuple[str, str], int] = {}
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    for p in metric.data.data_points:
                        attrs = p.attributes or {}
                        key = (str(attrs["rpc.method"]), str(attrs["rpc.grpc.status_code"]))
                        out[key] = p.count  # type: ignore[union-attr]
    return out


@pytest.fixture
async def traced() -> AsyncIterator[tuple[InMemoryMetricReader, InMemorySpanExporter, int]]:
    reader = InMemoryMetricReader()
    meters = otel.EdgeMeterProvider(metric_readers=[reader])
    spans = InMemorySpanExporter()
    tracers = TracerProvider(sampler=otel.FollowParent())
    tracers.add_span_processor(SimpleSpanProcessor(spans))
    draws = iter([0.5, 0.001, 0.9, 0.002, 0.003, 0.004, 0.005] + [0.5] * 100)
    rpc = RpcTelemetry(
        meters.get_meter("t"),
        tracers.get_tracer("t"),
        ratio=0.01,
        duration=rpc_duration(meters),
        rand=lambda: next(draws),
    )
    server, port = await _serve(rpc)
    try:
        yield reader, spans, port
    finally:
        await server.stop(None)


async def test_rpc_counts_by_method_and_code_and_spans_only_when_sampled(
    traced: tuple[InMemoryMetricReader, InMemorySpanExporter, int],
) -> None:
    reader, spans, port = traced
    untrusted = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"  # sampled=1
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        # draw 0.5 (not sampled, despite the caller's sampled flag)
        await stub.Check(health_pb2.HealthCheckRequest(), metadata=(("traceparent", untrusted),))
        # draw 0.001 (sampled): joins the caller's trace id
        await stub.Check(health_pb2.HealthCheckRequest(), metadata=(("traceparent", untrusted),))
        # draw 0.9 (not sampled)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Check(health_pb2.HealthCheckRequest(service="refuse"))
        # draw 0.002 (sampled), a root
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Check(health_pb2.HealthCheckRequest(service="refuse"))
    counts = _points(reader, "rpc.server.call.duration")
    assert counts == {
        ("grpc.health.v1.Health/Check", "OK"): 2,
        ("grpc.health.v1.Health/Check", "PERMISSION_DENIED"): 2,
    }
    finished = spans.get_finished_spans()
    assert len(finished) == 2
    joined, root = finished
    assert joined.kind == trace.SpanKind.SERVER
    assert format(joined.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert joined.attributes is not None and joined.attributes["rpc.grpc.status_code"] == "OK"
    assert root.parent is None
    assert root.attributes is not None
    assert root.attributes["rpc.grpc.status_code"] == "PERMISSION_DENIED"
    assert root.status.status_code == trace.StatusCode.ERROR


async def test_telemetry_off_leaves_the_server_untouched() -> None:
    server = grpc.aio.server()
    before = server.add_generic_rpc_handlers
    instrument_server(server)  # no SDK installed in this process's globals
    assert server.add_generic_rpc_handlers == before


def test_follow_parent_drops_under_an_unsampled_parent() -> None:
    provider = TracerProvider(sampler=otel.FollowParent())
    tracer = provider.get_tracer("t")
    parent = trace.NonRecordingSpan(
        trace.SpanContext(1, 2, is_remote=True, trace_flags=trace.TraceFlags(0))
    )
    child = tracer.start_span("x", context=trace.set_span_in_context(parent))
    assert not child.is_recording()
    root = tracer.start_span("y")
    assert root.is_recording()


def test_scrape_endpoint_serves_prometheus_text_with_a_worker_label() -> None:
    import urllib.request

    settings = otel.TelemetrySettings(metrics_listen=("127.0.0.1", 0), worker=2)
    done = otel.configure(settings, install=False)
    try:
        assert done.meter_provider is not None and done.metrics_port
        counter = done.meter_provider.get_meter("t").create_counter("tokenry.test.things")
        counter.add(3, {"kind": "a"})
        url = f"http://127.0.0.1:{done.metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    finally:
        done.shutdown()
    line = next(x for x in text.splitlines() if x.startswith("tokenry_test_things_total"))
    assert 'worker="2"' in line and 'kind="a"' in line and line.endswith(" 3.0")


# --- logs ------------------------------------------------------------------------------------


def test_json_logs_carry_trace_ids_and_extra_fields_but_never_secret_named_ones() -> None:
    provider = TracerProvider()
    record = logging.LogRecord("tokenry.x", logging.INFO, __file__, 1, "revoked %s", ("jti",), None)
    record.seq = 42
    record.client_secret = "s3cr3t"
    record.access_token = "eyJ"
    with provider.get_tracer("t").start_as_current_span("revoke") as span:
        line = JsonFormatter("revocation", worker=1).format(record)
    entry = json.loads(line)
    ids = span.get_span_context()
    assert entry["trace_id"] == format(ids.trace_id, "032x")
    assert entry["span_id"] == format(ids.span_id, "016x")
    assert entry["msg"] == "revoked jti" and entry["seq"] == 42 and entry["worker"] == 1
    assert "s3cr3t" not in line and "eyJ" not in line


async def test_client_spans_carry_the_trace_to_the_server_edge() -> None:
    from tokenry.servicekit.rpctelemetry import ClientTracing

    spans = InMemorySpanExporter()
    tracers = TracerProvider(sampler=otel.FollowParent())
    tracers.add_span_processor(SimpleSpanProcessor(spans))
    tracer = tracers.get_tracer("t")
    server, port = await _serve(RpcTelemetry(None, tracer, ratio=1.0))
    try:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", interceptors=[ClientTracing(tracer)]
        ) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            await stub.Check(health_pb2.HealthCheckRequest())  # no current span: no client span
            with tracer.start_as_current_span("caller"):
                await stub.Check(health_pb2.HealthCheckRequest())
    finally:
        await server.stop(None)
    by_kind = {s.kind: s for s in spans.get_finished_spans() if s.name != "caller"}
    client, caller = (
        by_kind[trace.SpanKind.CLIENT],
        next(s for s in spans.get_finished_spans() if s.name == "caller"),
    )
    server_spans = [s for s in spans.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
    assert len(server_spans) == 2  # the edge traces both (ratio 1), the second joins the trace
    joined = [s for s in server_spans if s.parent is not None]
    assert len(joined) == 1 and joined[0].parent.span_id == client.context.span_id
    assert client.parent is not None and client.parent.span_id == caller.context.span_id
    assert client.attributes is not None and client.attributes["rpc.grpc.status_code"] == "OK"

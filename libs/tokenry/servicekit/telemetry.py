"""OpenTelemetry for Tokenry's services: the SDK, set up from the standard ``OTEL_*`` variables.

Size: the SDK set-up is one concern (providers, exporters, sampler, scrape endpoint) read in
order; the per-RPC side is :mod:`tokenry.servicekit.rpctelemetry`.

Libraries (the verifier, the bus, the store) use only the OpenTelemetry *API*; this module is the
one place where a service installs the SDK (docs/design.md §8). :func:`configure`
runs in every worker process, before the service is built (``--workers N`` starts fresh
interpreters, so each sets up its own providers, exporters and scrape port).

Variables (the standard ones; docs/observability.md has the whole story):

===================================  ===========================================================
``OTEL_SDK_DISABLED``                ``true``: no SDK at all (no export, no scrape endpoint)
``OTEL_TRACES_EXPORTER``             ``otlp`` | ``console`` | ``none``
``OTEL_METRICS_EXPORTER``            ``otlp`` | ``console`` | ``none``
``OTEL_EXPORTER_OTLP_ENDPOINT``      where ``otlp`` sends (the per-signal variants work too)
``OTEL_EXPORTER_OTLP_PROTOCOL``      ``grpc`` (default) | ``http/protobuf``
``OTEL_SERVICE_NAME``                default ``tokenry-<service>``
``OTEL_TRACES_SAMPLER`` (+ ``_ARG``) the fraction of gRPC calls traced (see below)
``TOKENRY_METRICS_LISTEN``           ``host:port`` of the Prometheus scrape endpoint (off)
===================================  ===========================================================

**Differs from OpenTelemetry's default on purpose:** an unset exporter variable means ``none``
unless an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` or the signal's own), in which
case it means ``otlp``. OpenTelemetry's default is ``otlp`` to localhost:4317 always; a
service that nobody configured for telemetry must not spend CPU exporting into the void or log
connection errors every few seconds. With nothing configured no SDK is installed: the API's
no-op providers make every instrument free.

**Sampling** is decided once, at the gRPC edge (:mod:`tokenry.servicekit.rpctelemetry`): a
call is traced with the probability the sampler variables give (``always_on``/``always_off``,
``traceidratio``/``parentbased_traceidratio`` with ``OTEL_TRACES_SAMPLER_ARG``; unset = 1.0,
as OpenTelemetry's default ``parentbased_always_on``). A caller's ``sampled`` flag is never
trusted (anyone could force every call to be traced); its trace id is kept, so a sampled call
joins the caller's trace. Below the edge every span follows its parent, including across the
outbox and NATS, whose stored context Tokenry wrote itself (:class:`FollowParent`).

**Workers:** with ``--workers N`` worker ``i`` (0 = the first process) serves its scrape
endpoint on the base port + ``i`` and every metric carries a ``worker`` label (a resource
attribute, also sent over OTLP), so a scrape never mixes two processes' counters.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ConsoleMetricExporter,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from tokenry.core.errors import TokenryError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

__all__ = [
    "EXPORTERS",
    "EdgeMeterProvider",
    "EdgeTracerProvider",
    "PlainHistogram",
    "PlainSeries",
    "FollowParent",
    "Telemetry",
    "TelemetryError",
    "TelemetrySettings",
    "configure",
    "read_settings",
    "start_checked",
]

log = logging.getLogger(__name__)

EXPORTERS: Final = ("otlp", "console", "none")
PROTOCOLS: Final = ("grpc", "http/protobuf")
_TRUE: Final = ("true", "1", "yes", "on")


class TelemetryError(TokenryError, ValueError):
    """A bad ``OTEL_*`` value; the message names the variable, never its value's secrets."""


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    """What :func:`configure` installs; build it with :func:`read_settings`.

    Attributes:
        disabled: ``OTEL_SDK_DISABLED``: install nothing.
        service_name: the ``service.name`` resource attribute.
        traces: the trace exporter (``otlp``, ``console`` or ``none``).
        metrics: the metric exporter (``otlp``, ``console`` or ``none``).
        protocol: OTLP's transport, ``grpc`` or ``http/protobuf``.
        ratio: the fraction of gRPC calls traced at the edge, 0..1.
        metrics_listen: ``(host, port)`` of this worker's scrape endpoint, or None.
        worker: this process's index among ``--workers`` (0 for the first).
        export_interval: seconds between two OTLP/console metric exports.
    """

    disabled: bool = False
    service_name: str = "tokenry"
    traces: str = "none"
    metrics: str = "none"
    protocol: str = "grpc"
    ratio: float = 1.0
    metrics_listen: tuple[str, int] | None = None
    worker: int = 0
    export_interval: float = 60.0
    resource: Mapping[str, str] = field(default_factory=dict)

    @property
    def tracing(self) -> bool:
        return not self.disabled and self.traces != "none"

    @property
    def metering(self) -> bool:
        return not self.disabled and (self.metrics != "none" or self.metrics_listen is not None)


def _exporter(env: Mapping[str, str], signal: str) -> str:
    explicit = env.get(f"OTEL_{signal}_EXPORTER", "").strip().lower()
    if explicit:
        # OpenTelemetry allows a list; Tokenry exports each signal to one place.
        if explicit not in EXPORTERS:
            raise TelemetryError(f"OTEL_{signal}_EXPORTER must be one of {', '.join(EXPORTERS)}")
        return explicit
    endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "") or env.get(
        f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT", ""
    )
    return "otlp" if endpoint.strip() else "none"


def _ratio(env: Mapping[str, str]) -> float:
    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
    if name in ("always_on", "parentbased_always_on"):
        return 1.0
    if name in ("always_off", "parentbased_always_off"):
        return 0.0
    if name in ("traceidratio", "parentbased_traceidratio"):
        arg = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip() or "1.0"
        try:
            ratio = float(arg)
        except ValueError:
            raise TelemetryError("OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1") from None
        if not 0.0 <= ratio <= 1.0:
            raise TelemetryError("OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1")
        return ratio
    raise TelemetryError(
        "OTEL_TRACES_SAMPLER must be always_on, always_off, traceidratio or their "
        "parentbased_ forms"
    )


def read_settings(
    service: str,
    *,
    env: Mapping[str, str] | None = None,
    worker: int = 0,
    metrics_listen: tuple[str, int] | None = None,
) -> TelemetrySettings:
    """The settings the ``OTEL_*`` variables describe for ``service``'s worker ``worker``.

    Args:
        service: the service's short name (``issuer``); the default ``service.name`` is
            ``tokenry-<service>``.
        env: the environment (default ``os.environ``).
        worker: the process's index; the scrape port is ``metrics_listen``'s port + it.
        metrics_listen: ``TOKENRY_METRICS_LISTEN`` as parsed by servicekit.variables.

    Raises:
        TelemetryError: a variable has a value Tokenry does not understand.
    """
    env = os.environ if env is None else env
    disabled = env.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE
    protocol = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip().lower() or "grpc"
    if protocol not in PROTOCOLS:
        raise TelemetryError(f"OTEL_EXPORTER_OTLP_PROTOCOL must be one of {', '.join(PROTOCOLS)}")
    interval_ms = env.get("OTEL_METRIC_EXPORT_INTERVAL", "").strip() or "60000"
    try:
        interval = float(interval_ms) / 1000.0
    except ValueError:
        raise TelemetryError("OTEL_METRIC_EXPORT_INTERVAL must be milliseconds") from None
    listen = None
    if metrics_listen is not None:
        host, port = metrics_listen
        listen = (host, port + worker if port else 0)
    return TelemetrySettings(
        disabled=disabled,
        service_name=env.get("OTEL_SERVICE_NAME", "").strip() or f"tokenry-{service}",
        traces=_exporter(env, "TRACES"),
        metrics=_exporter(env, "METRICS"),
        protocol=protocol,
        ratio=_ratio(env),
        metrics_listen=listen,
        worker=worker,
        export_interval=max(interval, 0.05),
    )


class FollowParent(Sampler):
    """Samples what its parent sampled; a root is sampled (only the gRPC edge, which has
    already drawn, and explicit roots start one).

    Remote parents count too: below the edge they come from Tokenry's own outbox and NATS
    headers, written by a process that decided at its edge. The edge never hands an
    untrusted caller's flags to the SDK (see :mod:`tokenry.servicekit.rpctelemetry`).
    """

    def should_sample(  # noqa: PLR0917 - the SDK's signature
        self,
        parent_context: Context | None,
        trace_id: int,  # noqa: ARG002
        name: str,  # noqa: ARG002
        kind: SpanKind | None = None,  # noqa: ARG002
        attributes: Attributes = None,
        links: Any = None,  # noqa: ARG002
        trace_state: TraceState | None = None,  # noqa: ARG002
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if parent.is_valid and not parent.trace_flags.sampled:
            return SamplingResult(Decision.DROP, None, parent.trace_state)
        state = parent.trace_state if parent.is_valid else None
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, state)

    def get_description(self) -> str:
        return "TokenryFollowParent"


class PlainSeries:
    """One attribute set of a :class:`PlainHistogram`: plain integers, bumped on the hot path
    (≈ 0.3 µs, where the SDK's ``Histogram.record`` costs 5–15 µs per reader here)."""

    __slots__ = ("_bounds", "attributes", "count", "counts", "max", "min", "sum")

    def __init__(self, bounds: tuple[float, ...], attributes: Mapping[str, str]) -> None:
        self._bounds = bounds
        self.attributes = dict(attributes)
        self.counts = [0] * (len(bounds) + 1)
        self.count = 0
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")

    def record(self, value: float) -> None:
        # OpenTelemetry's explicit buckets: bucket i holds bounds[i-1] < value <= bounds[i].
        self.counts[bisect_left(self._bounds, value)] += 1
        self.count += 1
        self.sum += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)


class PlainHistogram:
    """A cumulative explicit-bucket histogram kept in :class:`PlainSeries`, merged into every
    collection of its :class:`EdgeMeterProvider` (OTLP and the scrape endpoint alike)."""

    def __init__(self, name: str, unit: str, description: str, bounds: tuple[float, ...]):
        self.name, self.unit, self.description = name, unit, description
        self.bounds = tuple(bounds)
        self._series: dict[frozenset[tuple[str, str]], PlainSeries] = {}
        self._start = time.time_ns()

    def series(self, attributes: Mapping[str, str]) -> PlainSeries:
        """The series for ``attributes``, created once (bind it outside the hot path)."""
        key = frozenset(attributes.items())
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = PlainSeries(self.bounds, attributes)
        return found

    def metric(self, now_ns: int) -> Metric | None:
        points = [
            HistogramDataPoint(
                attributes=s.attributes,
                start_time_unix_nano=self._start,
                time_unix_nano=now_ns,
                count=s.count,
                sum=s.sum,
                bucket_counts=list(s.counts),
                explicit_bounds=list(self.bounds),
                min=s.min,
                max=s.max,
            )
            for s in list(self._series.values())
            if s.count
        ]
        if not points:
            return None
        data = Histogram(points, AggregationTemporality.CUMULATIVE)
        return Metric(self.name, self.description, self.unit, data)


class EdgeMeterProvider(MeterProvider):
    """The SDK meter provider plus :class:`PlainHistogram` s for the per-call hot paths.

    Each reader's collection gets the plain histograms appended (a wrapper around the
    reader's collect callback, which the SDK sets on registration): the SDK has no public
    hook for pre-aggregated data, and recording every call through its API would cost more
    than the 5 % telemetry may cost on issuance (docs/benchmarks/telemetry.md).
    """

    def __init__(self, *, metric_readers: Sequence[MetricReader] = (), **kwargs: Any) -> None:
        super().__init__(metric_readers=metric_readers, **kwargs)
        self._plain: list[PlainHistogram] = []
        self._resource = kwargs.get("resource") or Resource.create({})
        for reader in metric_readers:
            original = reader._collect
            if original is not None:
                reader._set_collect_callback(self._merged(original))

    def plain_histogram(
        self, name: str, unit: str, description: str, bounds: tuple[float, ...]
    ) -> PlainHistogram:
        histogram = PlainHistogram(name, unit, description, bounds)
        self._plain.append(histogram)
        return histogram

    def _merged(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def collect(reader: MetricReader, *args: Any, **kwargs: Any) -> MetricsData | None:
            data: MetricsData | None = original(reader, *args, **kwargs)
            now = time.time_ns()
            extra = [m for h in self._plain if (m := h.metric(now)) is not None]
            if not extra:
                return data
            scope = ScopeMetrics(InstrumentationScope("tokenry.rpc"), extra, "")
            if data is None or not data.resource_metrics:
                return MetricsData([ResourceMetrics(self._resource, [scope], "")])
            first, *rest = data.resource_metrics
            merged = ResourceMetrics(
                first.resource, [*first.scope_metrics, scope], first.schema_url
            )
            return MetricsData([merged, *rest])

        return collect


class EdgeTracerProvider(TracerProvider):
    """The SDK provider, carrying the probability with which the gRPC edge traces a call."""

    def __init__(self, *, edge_ratio: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.edge_ratio = edge_ratio


@dataclass
class Telemetry:
    """What :func:`configure` installed; :meth:`shutdown` flushes and stops it.

    Attributes:
        settings: the settings it was built from.
        tracer_provider: the SDK provider, or None when traces are off.
        meter_provider: the SDK provider, or None when metrics are off.
        metrics_port: the scrape endpoint's bound port, or None.
    """

    settings: TelemetrySettings
    tracer_provider: EdgeTracerProvider | None = None
    meter_provider: EdgeMeterProvider | None = None
    metrics_port: int | None = None
    _http: WSGIServer | None = None

    def shutdown(self) -> None:
        """Flush pending spans and metrics (bounded by the exporters' timeouts), then stop."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        for provider in (self.tracer_provider, self.meter_provider):
            if provider is not None:
                try:
                    provider.shutdown()
                except Exception as exc:  # never let telemetry fail a shutdown
                    log.warning("telemetry shutdown: %s", type(exc).__name__)


def _resource(settings: TelemetrySettings) -> Resource:
    return Resource.create(
        {
            "service.name": settings.service_name,
            "service.namespace": "tokenry",
            "service.instance.id": f"{socket.gethostname()}:{os.getpid()}",
            "worker": str(settings.worker),
            **settings.resource,
        }
    )


def _span_exporter(settings: TelemetrySettings) -> SpanExporter:
    if settings.traces == "console":
        return ConsoleSpanExporter()
    if settings.protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpSpanExporter,
        )

        return HttpSpanExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _metric_exporter(settings: TelemetrySettings) -> MetricExporter:
    if settings.metrics == "console":
        return ConsoleMetricExporter()
    if settings.protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HttpMetricExporter,
        )

        return HttpMetricExporter()
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter()


def configure(settings: TelemetrySettings, *, install: bool = True) -> Telemetry:
    """Build the providers ``settings`` ask for and (``install``) make them OpenTelemetry's
    global ones, which the libraries' API calls reach. Call once per process.

    Raises:
        OSError: the scrape endpoint cannot listen (port in use).
    """
    done = Telemetry(settings)
    if settings.disabled:
        return done
    resource = _resource(settings)
    if settings.tracing:
        tracer_provider = EdgeTracerProvider(
            edge_ratio=settings.ratio, resource=resource, sampler=FollowParent()
        )
        exporter = _span_exporter(settings)
        processor = (
            SimpleSpanProcessor(exporter)
            if settings.traces == "console"
            else BatchSpanProcessor(exporter)
        )
        tracer_provider.add_span_processor(processor)
        done.tracer_provider = tracer_provider
        if install:
            trace.set_tracer_provider(tracer_provider)
    if settings.metering:
        readers: list[MetricReader] = []
        if settings.metrics != "none":
            readers.append(
                PeriodicExportingMetricReader(
                    _metric_exporter(settings),
                    export_interval_millis=settings.export_interval * 1000.0,
                )
            )
        if settings.metrics_listen is not None:
            reader, http, port = _scrape_endpoint(settings.metrics_listen)
            readers.append(reader)
            done._http, done.metrics_port = http, port
        meter_provider = EdgeMeterProvider(resource=resource, metric_readers=readers)
        done.meter_provider = meter_provider
        if install:
            metrics.set_meter_provider(meter_provider)
    log.info(
        "telemetry: traces=%s (ratio %g) metrics=%s scrape=%s",
        settings.traces,
        settings.ratio,
        settings.metrics,
        f"{settings.metrics_listen[0]}:{done.metrics_port}" if settings.metrics_listen else "off",
    )
    return done


def _scrape_endpoint(listen: tuple[str, int]) -> tuple[MetricReader, WSGIServer, int]:
    """A Prometheus text endpoint on its own registry (no process-global collectors), with
    the ``worker`` resource attribute copied onto every series as a label."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=True)
    reader = PrometheusMetricReader(
        registry=registry, resource_attribute_filter=lambda key: key == "worker"
    )
    http, _thread = start_http_server(listen[1], addr=listen[0], registry=registry)
    return reader, http, int(http.server_address[1])


def start_checked(settings: TelemetrySettings, who: str, listen_variable: str) -> Telemetry:
    """:func:`configure`, or exit 2 with one line when the scrape port cannot be bound (for a
    process outside servicekit.main, such as the gateway, whose settings were read with
    :func:`read_settings` among its other variables)."""
    try:
        return configure(settings)
    except OSError:
        host, port = settings.metrics_listen or ("", 0)
        raise SystemExit(
            f"{who}: configuration error: cannot serve metrics on {host}:{port} (in use?);"
            f" set {listen_variable}"
        ) from None

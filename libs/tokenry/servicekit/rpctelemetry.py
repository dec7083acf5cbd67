"""Per-RPC metrics and server spans, wrapped around each method once, at registration.

Not an interceptor: a grpc.aio server interceptor costs ≈ 20 µs per call (docs/design.md §7),
which alone would eat most of the 5 % that telemetry may cost on issuance (docs/spec.md §8). Instead
:func:`instrument_server` wraps each method handler as it is registered (the way
:func:`tokenry.servicekit.errors.guard` does): per call one coroutine frame, a few integer
bumps in a :class:`~tokenry.servicekit.telemetry.PlainHistogram` series bound at registration
(the SDK's ``Histogram.record`` measured 5–15 µs per reader per call here), and a span only
when the call is sampled.

The OpenTelemetry gRPC instrumentation (opentelemetry-instrumentation-grpc) was measured in
the same run (docs/benchmarks/telemetry.md): it is an interceptor, starts a span object on
every call (sampled or not) and reads every metadata entry into attributes.

Sampling happens here, at the edge: a call is traced with the configured probability, drawn
locally; the caller's ``sampled`` flag is ignored (an untrusted caller could otherwise have
every call traced), but its trace id is kept so a sampled call joins the caller's trace. A
call that is not sampled starts no span at all.

Metric (OpenTelemetry semantic conventions for RPC):

``rpc.server.call.duration`` (s, histogram): ``rpc.system`` = grpc, ``rpc.method``
(``tokenry.v1.Issuer/Token``), ``rpc.grpc.status_code`` (``OK``, ``UNAUTHENTICATED``, …). Its
count is the call rate, its non-OK share the error rate; the issuer's ``Token`` method is the
token-endpoint latency, the introspector's ``Introspect`` the introspection latency.

``tokenry.client_auth.failures`` (counter): calls answered UNAUTHENTICATED, by ``auth.method``
(``client_secret_basic``, ``client_secret_post``, ``private_key_jwt``, ``bearer``, ``none``)
and ``rpc.method``; a plain integer bumped only on that path.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeAlias, cast

import grpc
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from tokenry.servicekit.telemetry import EdgeMeterProvider, PlainHistogram, PlainSeries

__all__ = [
    "DURATION_BUCKETS",
    "ClientTracing",
    "RpcTelemetry",
    "credential_type",
    "edge_parent",
    "from_globals",
    "instrument_server",
    "rpc_duration",
]

#: seconds; from a cached call (≈ 0.3 ms) to a client's usual deadline
DURATION_BUCKETS: Final = (
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
_W3C: Final = TraceContextTextMapPropagator()
_CODE_NAMES: Final = {code: code.name for code in grpc.StatusCode}
_CODE_BY_VALUE: Final = {code.value[0]: code.name for code in grpc.StatusCode}

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def _code_name(code: object) -> str:
    if code is None:
        return "OK"
    if isinstance(code, grpc.StatusCode):
        return _CODE_NAMES[code]
    if isinstance(code, int):
        return _CODE_BY_VALUE.get(code, "UNKNOWN")
    return "UNKNOWN"


class RpcTelemetry:
    """The instruments and the edge sampler shared by every wrapped method of a server.

    Args:
        meter: where the duration histogram lives (None: no metrics).
        tracer: where server spans start (None: no traces).
        ratio: the probability that a call is traced.
    """

    def __init__(
        self,
        meter: metrics.Meter | None,
        tracer: trace.Tracer | None,
        ratio: float = 1.0,
        *,
        duration: PlainHistogram | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._tracer = tracer if ratio > 0.0 else None
        self._ratio = ratio
        self._rand = rand
        self._duration = duration
        self._auth_failures: dict[tuple[str, str], int] = {}
        if meter is not None:
            meter.create_observable_counter(
                "tokenry.client_auth.failures",
                callbacks=[self._observe_auth_failures],
                unit="{call}",
                description="Calls refused UNAUTHENTICATED, by the credential presented",
            )

    def _observe_auth_failures(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(n, {"auth.method": how, "rpc.method": method})
            for (how, method), n in list(self._auth_failures.items())
        ]

    def _auth_failed(
        self, method: str, request: Any, ctx: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        """Count an UNAUTHENTICATED answer by what the caller presented (only on this path)."""
        how = _presented(request, ctx)
        key = (how, method)
        self._auth_failures[key] = self._auth_failures.get(key, 0) + 1

    @property
    def active(self) -> bool:
        return self._duration is not None or self._tracer is not None

    def _edge_parent(self, ctx: grpc.aio.ServicerContext[Any, Any]) -> Context | None:
        """The context a sampled call's span starts under, or None when not sampled."""
        if self._ratio < 1.0 and self._rand() >= self._ratio:
            return None
        carrier: dict[str, str] = {}
        for key, value in ctx.invocation_metadata() or ():
            if key in ("traceparent", "tracestate") and isinstance(value, str):
                carrier[key] = value
        return edge_parent(carrier)

    def _start(
        self, method: str, ctx: grpc.aio.ServicerContext[Any, Any]
    ) -> tuple[trace.Span, object] | None:
        if self._tracer is None:
            return None
        parent = self._edge_parent(ctx)
        if parent is None:
            return None
        service, _, name = method.partition("/")
        span = self._tracer.start_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        return span, token

    def _finish(self, started: tuple[trace.Span, object] | None, code: str) -> None:
        if started is None:
            return
        span, token = started
        otel_context.detach(cast(Any, token))
        span.set_attribute("rpc.grpc.status_code", code)
        if code != "OK":
            span.set_status(Status(StatusCode.ERROR, code))
        span.end()

    def wrap(self, method: str, handler: Handler) -> Handler:
        """``handler`` with its calls measured (and traced when sampled)."""
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            unary = cast(Callable[..., Awaitable[Any]], handler.unary_unary)
            return grpc.unary_unary_rpc_method_handler(self._unary(method, unary), **kwargs)
        if handler.unary_stream is not None:
            stream = cast(Callable[..., AsyncIterator[Any]], handler.unary_stream)
            return grpc.unary_stream_rpc_method_handler(self._stream(method, stream), **kwargs)
        return handler  # client- and bidi-streaming (reflection) stay as they are

    def _series(self, method: str) -> dict[str, PlainSeries] | None:
        """The method's histogram series by status code, bound once at registration."""
        if self._duration is None:
            return None
        base = {"rpc.system": "grpc", "rpc.method": method.lstrip("/")}
        return {
            name: self._duration.series({**base, "rpc.grpc.status_code": name})
            for name in _CODE_NAMES.values()
        }

    def _unary(
        self, method: str, inner: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        by_code = self._series(method)
        name = method.lstrip("/")
        clock = time.perf_counter
        start_span, finish, auth_failed = self._start, self._finish, self._auth_failed

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            began = clock()
            started = start_span(name, context)
            code = "UNKNOWN"
            try:
                response = await inner(request, context)
                code = _code_name(context.code())
                return response
            except grpc.aio.AbortError:
                code = _code_name(context.code())
                raise
            except BaseException as exc:
                code = _unexpected(exc)
                raise
            finally:
                if by_code is not None:
                    (by_code.get(code) or by_code["UNKNOWN"]).record(clock() - began)
                    if code == "UNAUTHENTICATED":
                        auth_failed(name, request, context)
                finish(started, code)

        return unary

    def _stream(
        self, method: str, inner: Callable[..., AsyncIterator[Any]]
    ) -> Callable[..., AsyncIterator[Any]]:
        by_code = self._series(method)
        name = method.lstrip("/")
        start_span, finish = self._start, self._finish

        async def stream(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            began = time.perf_counter()
            started = start_span(name, context)
            code = "UNKNOWN"
            try:
                async for item in inner(request, context):
                    yield item
                code = _code_name(context.code())
            except grpc.aio.AbortError:
                code = _code_name(context.code())
                raise
            except BaseException as exc:
                code = _unexpected(exc)
                raise
            finally:
                if by_code is not None:
                    (by_code.get(code) or by_code["UNKNOWN"]).record(time.perf_counter() - began)
                finish(started, code)

        return stream


class ClientTracing(grpc.aio.UnaryUnaryClientInterceptor):
    """Client spans for unary calls made inside a sampled span, with the W3C ``traceparent``
    added to the call's metadata (OpenTelemetry API only: usable by any application).

    A call made outside a recording span gets nothing added and starts no span: the server's
    edge decides about sampling anyway (its caller's flags are never trusted).
    """

    def __init__(self, tracer: trace.Tracer | None = None) -> None:
        self._tracer = tracer

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        if not trace.get_current_span().is_recording():
            return await continuation(client_call_details, request)
        method = client_call_details.method
        name = (method.decode() if isinstance(method, bytes) else str(method)).lstrip("/")
        service, _, short = name.partition("/")
        tracer = self._tracer or trace.get_tracer("tokenry.rpc")
        span = tracer.start_span(
            name,
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": short},
        )
        carrier: dict[str, str] = {}
        _W3C.inject(carrier, context=trace.set_span_in_context(span))
        metadata = grpc.aio.Metadata(*(client_call_details.metadata or ()))
        for key, value in carrier.items():
            metadata[key] = value
        details = grpc.aio.ClientCallDetails(
            client_call_details.method,
            client_call_details.timeout,
            metadata,
            client_call_details.credentials,
            client_call_details.wait_for_ready,
        )
        code = "UNKNOWN"
        try:
            call = await continuation(details, request)
            code = _code_name(await call.code())
            return call
        finally:
            span.set_attribute("rpc.grpc.status_code", code)
            if code != "OK":
                span.set_status(Status(StatusCode.ERROR, code))
            span.end()


def edge_parent(carrier: Mapping[str, str]) -> Context:
    """The parent of a span the edge decided to sample: the caller's W3C trace context
    (``traceparent``/``tracestate`` in ``carrier``) with its sampled flag overruled, so the span
    joins the caller's trace whatever the caller asked for; a new root when there is none.

    Shared by the gRPC wrapper and the HTTP middleware (servicekit.httptelemetry): callers are
    untrusted at both edges.
    """
    if "traceparent" not in carrier:
        return Context()
    remote = trace.get_current_span(_W3C.extract(carrier)).get_span_context()
    if not remote.is_valid:
        return Context()
    # Keep the caller's trace id, overrule its sampled flag: the edge's draw decided.
    forced = SpanContext(
        remote.trace_id,
        remote.span_id,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=remote.trace_state,
    )
    return trace.set_span_in_context(NonRecordingSpan(forced))


def _presented(request: Any, ctx: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The client-authentication method a refused call used (see :func:`credential_type`)."""
    authorization = None
    for key, value in ctx.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            authorization = value
            break
    return credential_type(
        authorization,
        assertion=bool(getattr(request, "client_assertion", "")),
        secret=bool(getattr(request, "client_secret", "")),
    )


def credential_type(authorization: str | None, *, assertion: bool, secret: bool) -> str:
    """The client-authentication method of a refused call (RFC 6749 §2.3, RFC 7523 §2.2):
    ``private_key_jwt`` (an assertion), the ``Authorization`` scheme (``client_secret_basic``,
    ``bearer``, ``other``), ``client_secret_post`` (a secret in the body), or ``none``. Never
    the credential itself."""
    if assertion:
        return "private_key_jwt"
    if authorization is not None:
        scheme = authorization.split(" ", 1)[0].lower()
        return {"basic": "client_secret_basic", "bearer": "bearer"}.get(scheme, "other")
    return "client_secret_post" if secret else "none"


def _unexpected(exc: BaseException) -> str:
    return "CANCELLED" if isinstance(exc, asyncio.CancelledError) else "UNKNOWN"


def from_globals() -> RpcTelemetry | None:
    """The instruments for the SDK providers :mod:`tokenry.servicekit.telemetry` installed as
    OpenTelemetry's globals; None when neither traces nor metrics are on (nothing to wrap)."""
    from tokenry.servicekit.telemetry import EdgeMeterProvider, EdgeTracerProvider

    meter_provider = metrics.get_meter_provider()
    tracer_provider = trace.get_tracer_provider()
    meter, duration = None, None
    if isinstance(meter_provider, EdgeMeterProvider):
        meter = meter_provider.get_meter("tokenry.rpc")
        duration = rpc_duration(meter_provider)
    tracer = None
    ratio = 0.0
    if isinstance(tracer_provider, EdgeTracerProvider):
        ratio = tracer_provider.edge_ratio
        tracer = tracer_provider.get_tracer("tokenry.rpc")
    rpc = RpcTelemetry(meter, tracer, ratio, duration=duration)
    return rpc if rpc.active else None


def rpc_duration(provider: EdgeMeterProvider) -> PlainHistogram:
    """The ``rpc.server.call.duration`` histogram on ``provider`` (plain integers per call)."""
    return provider.plain_histogram(
        "rpc.server.call.duration",
        "s",
        "gRPC server calls by method and status code (count = rate)",
        DURATION_BUCKETS,
    )


def instrument_server(server: grpc.aio.Server, rpc: RpcTelemetry | None = None) -> None:
    """Wrap every unary and server-streaming method registered on ``server`` from now on.

    ``rpc`` defaults to :func:`from_globals`; when telemetry is off nothing is wrapped and the
    server is left exactly as it was.
    """
    rpc = rpc if rpc is not None else from_globals()
    if rpc is None:
        return
    add_generic = server.add_generic_rpc_handlers
    add_registered = server.add_registered_method_handlers

    def generic(handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        for handler in handlers:
            methods = getattr(handler, "_method_handlers", None)
            if isinstance(methods, dict):
                # grpc.method_handlers_generic_handler's dict, keyed "/pkg.Service/Method"
                handler._method_handlers = {  # type: ignore[attr-defined]
                    path: rpc.wrap(path, h) for path, h in methods.items()
                }
        add_generic(tuple(handlers))

    def registered(service: str, handlers: Mapping[str, Handler]) -> None:
        add_registered(
            service, {name: rpc.wrap(f"/{service}/{name}", h) for name, h in handlers.items()}
        )

    server.add_generic_rpc_handlers = generic  # type: ignore[method-assign,assignment]
    server.add_registered_method_handlers = registered  # type: ignore[method-assign,assignment]

"""HTTP server telemetry (the gateway's): one raw ASGI middleware, spans only when sampled.

The HTTP twin of :mod:`tokenry.servicekit.rpctelemetry`, with the same rules:

- **Sampling at the edge.** A request is traced with the configured probability, drawn here;
  the caller's W3C ``traceparent`` is extracted so a sampled request joins the caller's trace,
  but its ``sampled`` flag is ignored (any client on the internet could otherwise have every
  request traced). A request that is not sampled starts no span at all.
- **Plain integers on the hot path.** The duration histogram is a
  :class:`~tokenry.servicekit.telemetry.PlainHistogram` (a few integer bumps per request), not
  the SDK's ``Histogram.record`` (5–15 µs per reader here, docs/benchmarks/telemetry.md).
- **Bounded labels.** The route is the matched route *template* (the gateway's paths are
  static), ``unmatched`` for any other path; the method is one of the standard ones or
  ``_OTHER``; never a query string, a header, a token or a client id.

It wraps the whole ASGI app, the gateway's raw fast path for the token, introspection and
revocation POSTs included, and adds no Starlette middleware.

Metrics (OpenTelemetry HTTP semantic conventions):

``http.server.request.duration`` (s, histogram): ``http.request.method``, ``http.route``,
``http.response.status_code``. Its count is the request rate, its 5xx share the error rate;
``POST /oauth2/token`` is the token endpoint's latency.

``tokenry.client_auth.failures`` (counter): responses 401 of the routes that authenticate the
*client* (:data:`CLIENT_AUTH_ROUTES`: token, introspection, revocation), by ``auth.method``
(the credential type presented: ``client_secret_basic``, ``client_secret_post``,
``private_key_jwt``, ``bearer``, ``none``) and ``rpc.method`` = ``<METHOD> <route>`` — the gRPC
services' counter and labels, so the authentication-failure alert and dashboard cover the
gateway unchanged. Other 401s are not client authentication and are not counted here: a wrong
user password at the login page, an invalid bearer token at userinfo (RFC 6750 §3.1); they
show as 401 in ``http.server.request.duration`` (docs/observability.md).

Span: ``<METHOD> <route>``, kind server, with ``http.request.method``, ``http.route``,
``url.scheme`` and ``http.response.status_code`` (error status from 500 up).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, Final, TypeAlias
from urllib.parse import parse_qsl

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

from tokenry.core.clientauth import TOKEN_ENDPOINT_PATH
from tokenry.servicekit.rpctelemetry import DURATION_BUCKETS, credential_type, edge_parent

if TYPE_CHECKING:
    from tokenry.servicekit.telemetry import EdgeMeterProvider, PlainHistogram, PlainSeries

__all__ = ["CLIENT_AUTH_ROUTES", "UNMATCHED", "HttpTelemetry", "http_duration", "instrument_asgi"]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
App: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

UNMATCHED: Final = "unmatched"
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
_FORM: Final = b"application/x-www-form-urlencoded"
#: the gateway's routes whose 401 is a failed client authentication: the token endpoint
#: (RFC 6749 §2.3), introspection (RFC 7662 §2.1) and revocation (RFC 7009 §2.1)
CLIENT_AUTH_ROUTES: Final = frozenset({TOKEN_ENDPOINT_PATH, "/oauth2/introspect", "/oauth2/revoke"})


def _pattern(template: str) -> re.Pattern[str]:
    """A Starlette-style template (``/clients/{id}``) as a full-match pattern."""
    parts = re.split(r"(\{[^}]*\})", template)
    body = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(body)


class HttpTelemetry:
    """ASGI middleware measuring (and, when sampled, tracing) every HTTP request of ``app``.

    Args:
        app: the ASGI application.
        templates: the route templates the app serves (bounded label values).
        meter: where the auth-failure counter lives (None: no metrics).
        tracer: where server spans start (None: no traces).
        ratio: the probability that a request is traced.
        duration: the request-duration histogram (None: no metrics).
        client_auth_routes: the templates whose 401 counts as a client-authentication failure.
    """

    def __init__(
        self,
        app: App,
        templates: Iterable[str],
        *,
        meter: metrics.Meter | None = None,
        tracer: trace.Tracer | None = None,
        ratio: float = 1.0,
        duration: PlainHistogram | None = None,
        rand: Callable[[], float] = random.random,
        client_auth_routes: Iterable[str] = CLIENT_AUTH_ROUTES,
    ) -> None:
        self._app = app
        self._client_auth_routes = frozenset(client_auth_routes)
        chosen = list(templates)
        self._static = {t: t for t in chosen if "{" not in t}
        self._patterns = [(_pattern(t), t) for t in chosen if "{" in t]
        self._tracer = tracer if ratio > 0.0 else None
        self._ratio = ratio
        self._rand = rand
        self._duration = duration
        self._series: dict[tuple[str, str, int], PlainSeries] = {}
        self._auth_failures: dict[tuple[str, str], int] = {}
        if meter is not None:
            meter.create_observable_counter(
                "tokenry.client_auth.failures",
                callbacks=[self._observe_auth_failures],
                unit="{call}",
                description="Calls refused UNAUTHENTICATED, by the credential presented",
            )

    @property
    def active(self) -> bool:
        return self._duration is not None or self._tracer is not None

    def route(self, path: str) -> str:
        """The template ``path`` matches, or :data:`UNMATCHED` (a bounded label)."""
        found = self._static.get(path)
        if found is not None:
            return found
        for pattern, template in self._patterns:
            if pattern.fullmatch(path):
                return template
        return UNMATCHED

    def auth_failures(self) -> dict[tuple[str, str], int]:
        """``(auth.method, rpc.method) -> count`` (a copy)."""
        return dict(self._auth_failures)

    def _observe_auth_failures(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(n, {"auth.method": how, "rpc.method": where})
            for (how, where), n in list(self._auth_failures.items())
        ]

    def _record(self, method: str, route: str, status: int, seconds: float) -> None:
        if self._duration is None:
            return
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = self._duration.series(
                {
                    "http.request.method": method,
                    "http.route": route,
                    "http.response.status_code": str(status),
                }
            )
        series.record(seconds)

    def _start(self, scope: Scope, method: str, route: str) -> tuple[trace.Span, object] | None:
        if self._tracer is None or (self._ratio < 1.0 and self._rand() >= self._ratio):
            return None
        carrier: dict[str, str] = {}
        for name, value in scope.get("headers") or ():
            if name in (b"traceparent", b"tracestate"):
                carrier[name.decode("latin-1")] = value.decode("latin-1")
        span = self._tracer.start_span(
            f"{method} {route}",
            context=edge_parent(carrier),
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "http.route": route,
                "url.scheme": str(scope.get("scheme", "http")),
            },
        )
        return span, otel_context.attach(trace.set_span_in_context(span))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        began = time.perf_counter()
        method = scope["method"] if scope["method"] in _METHODS else "_OTHER"
        route = self.route(scope["path"])
        started = self._start(scope, method, route)
        status = 500  # unless the app starts a response
        body: list[bytes] = []

        async def reading() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(body) < 64:
                body.append(message.get("body", b""))
            return message

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self._app(scope, reading if method == "POST" else receive, sending)
        finally:
            self._record(method, route, status, time.perf_counter() - began)
            if status == 401 and route in self._client_auth_routes:
                self._auth_failed(scope, f"{method} {route}", body)
            if started is not None:
                _finish(started, status)

    def _auth_failed(self, scope: Scope, where: str, body: list[bytes]) -> None:
        """Count a 401 by the credential type presented (never the credential)."""
        authorization = None
        form = False
        for name, value in scope.get("headers") or ():
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-type":
                form = value.split(b";", 1)[0].strip().lower() == _FORM
        names: set[str] = set()
        if form and body:
            try:
                pairs = parse_qsl(b"".join(body).decode("latin-1"), keep_blank_values=True)
            except ValueError:
                pairs = []
            names = {k for k, v in pairs if v}
        how = credential_type(
            authorization,
            assertion="client_assertion" in names,
            secret="client_secret" in names,
        )
        key = (how, where)
        self._auth_failures[key] = self._auth_failures.get(key, 0) + 1


def _finish(started: tuple[trace.Span, object], status: int) -> None:
    span, token = started
    otel_context.detach(token)  # type: ignore[arg-type]
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR, str(status)))
    span.end()


def http_duration(provider: EdgeMeterProvider) -> PlainHistogram:
    """The ``http.server.request.duration`` histogram on ``provider``."""
    return provider.plain_histogram(
        "http.server.request.duration",
        "s",
        "HTTP requests by method, route template and status code (count = rate)",
        DURATION_BUCKETS,
    )


def instrument_asgi(app: App, templates: Iterable[str]) -> App:
    """``app`` measured and traced with the SDK providers servicekit.telemetry installed as
    OpenTelemetry's globals; ``app`` itself, untouched, when telemetry is off."""
    from tokenry.servicekit.telemetry import EdgeMeterProvider, EdgeTracerProvider

    meter_provider = metrics.get_meter_provider()
    tracer_provider = trace.get_tracer_provider()
    meter, duration = None, None
    if isinstance(meter_provider, EdgeMeterProvider):
        meter = meter_provider.get_meter("tokenry.http")
        duration = http_duration(meter_provider)
    tracer, ratio = None, 0.0
    if isinstance(tracer_provider, EdgeTracerProvider):
        tracer, ratio = tracer_provider.get_tracer("tokenry.http"), tracer_provider.edge_ratio
    wrapped = HttpTelemetry(
        app, templates, meter=meter, tracer=tracer, ratio=ratio, duration=duration
    )
    return wrapped if wrapped.active else app

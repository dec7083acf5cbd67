"""servicekit.httptelemetry (the gateway's HTTP metrics and edge-sampled spans), around a small
Starlette app driven in process by httpx's ASGI transport, with the SDK's in-memory exporters."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tokenry.servicekit import telemetry as otel
from tokenry.servicekit.httptelemetry import (
    CLIENT_AUTH_ROUTES,
    UNMATCHED,
    HttpTelemetry,
    http_duration,
)
from tokenry.services.gateway import metadata

CALLER = "0af7651916cd43dd8448eb211c80319c"


async def _token(request: Request) -> Response:
    form = (await request.body()).decode()
    ok = request.headers.get("authorization") == "Basic ok" or "client_secret=ok" in form
    return Response(b"{}", 200 if ok else 401)


async def _refused(_request: Request) -> Response:
    return Response(b"{}", 401)


async def _item(_request: Request) -> Response:
    return Response(b"item")


async def _boom(_request: Request) -> Response:
    raise RuntimeError("boom")


ROUTES = [
    Route("/oauth2/token", _token, methods=["POST"]),
    Route("/oauth2/introspect", _refused, methods=["POST"]),
    Route("/oauth2/revoke", _refused, methods=["POST"]),
    Route("/oauth2/login", _refused, methods=["POST"]),  # a wrong user password
    Route("/oauth2/userinfo", _refused, methods=["GET"]),  # a bad bearer token
    Route("/items/{item_id}", _item, methods=["GET"]),
    Route("/boom", _boom, methods=["GET"]),
]


class Harness:
    def __init__(self, draws: list[float]) -> None:
        self.reader = InMemoryMetricReader()
        meters = otel.EdgeMeterProvider(metric_readers=[self.reader])
        self.spans = InMemorySpanExporter()
        tracers = TracerProvider(sampler=otel.FollowParent())
        tracers.add_span_processor(SimpleSpanProcessor(self.spans))
        it = iter(draws + [0.5] * 100)
        self.app = HttpTelemetry(
            Starlette(routes=ROUTES),
            [r.path for r in ROUTES],
            meter=meters.get_meter("t"),
            tracer=tracers.get_tracer("t"),
            ratio=0.01,
            duration=http_duration(meters),
            rand=lambda: next(it),
        )
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        self.http = httpx.AsyncClient(transport=transport, base_url="https://gw.test")

    def points(self, name: str) -> dict[tuple[str, ...], int]:
        data = self.reader.get_metrics_data()
        assert data is not None
        out: dict[tuple[str, ...], int] = {}
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        for p in metric.data.data_points:
                            attrs = dict(p.attributes or {})
                            value: Any = getattr(p, "count", None) or getattr(p, "value", 0)
                            out[tuple(str(attrs[k]) for k in sorted(attrs))] = value
        return out


@pytest.fixture
def harness() -> Harness:
    return Harness([0.5, 0.001, 0.9, 0.002])


async def test_requests_counted_by_route_template_and_status(harness: Harness) -> None:
    h = harness.http
    await h.post("/oauth2/token", content=b"x=1", headers={"authorization": "Basic ok"})
    await h.post("/oauth2/token", content=b"client_secret=bad", headers=_FORM)
    await h.get("/items/123")
    await h.get("/items/456")
    await h.get("/no/such/path?token=secret")
    await h.get("/boom")
    got = harness.points("http.server.request.duration")
    # labels sorted by name: method, status code, route
    assert got == {
        ("POST", "200", "/oauth2/token"): 1,
        ("POST", "401", "/oauth2/token"): 1,
        ("GET", "200", "/items/{item_id}"): 2,
        ("GET", "404", UNMATCHED): 1,
        ("GET", "500", "/boom"): 1,
    }
    assert "secret" not in repr(got) and "123" not in repr(got)


_FORM = {"content-type": "application/x-www-form-urlencoded"}


async def test_401s_counted_by_the_credential_type_presented(harness: Harness) -> None:
    h = harness.http
    await h.post("/oauth2/token", content=b"client_secret=bad", headers=_FORM)
    await h.post("/oauth2/token", content=b"", headers={"authorization": "Basic bad"})
    await h.post("/oauth2/token", content=b"client_assertion=e30.e30.x", headers=_FORM)
    await h.post("/oauth2/token", content=b"client_id=x", headers=_FORM)
    await h.post("/oauth2/token", content=b"client_secret=ok", headers=_FORM)  # 200
    got = harness.points("tokenry.client_auth.failures")
    where = "POST /oauth2/token"
    assert got == {
        ("client_secret_post", where): 1,
        ("client_secret_basic", where): 1,
        ("private_key_jwt", where): 1,
        ("none", where): 1,
    }


async def test_only_client_authenticating_routes_count_401s(harness: Harness) -> None:
    """A wrong user password or a bad bearer token is no client-authentication failure: it
    must not feed the authentication-failure alert (docs/observability.md)."""
    h = harness.http
    form = b"username=alice&password=wrong&client_secret=looks-like-one"
    assert (await h.post("/oauth2/login", content=form, headers=_FORM)).status_code == 401
    bearer = {"authorization": "Bearer expired"}
    assert (await h.get("/oauth2/userinfo", headers=bearer)).status_code == 401
    for path in ("/oauth2/introspect", "/oauth2/revoke"):
        refused = await h.post(path, content=b"token=x", headers={"authorization": "Basic bad"})
        assert refused.status_code == 401
    assert harness.points("tokenry.client_auth.failures") == {
        ("client_secret_basic", "POST /oauth2/introspect"): 1,
        ("client_secret_basic", "POST /oauth2/revoke"): 1,
    }
    # ... while both still show as 401s of their routes
    durations = harness.points("http.server.request.duration")
    assert durations[("POST", "401", "/oauth2/login")] == 1
    assert durations[("GET", "401", "/oauth2/userinfo")] == 1


def test_client_auth_routes_are_the_gateways_client_authenticating_endpoints() -> None:
    paths = {metadata.TOKEN_PATH, metadata.INTROSPECT_PATH, metadata.REVOKE_PATH}
    assert paths == CLIENT_AUTH_ROUTES
    assert metadata.USERINFO_PATH not in CLIENT_AUTH_ROUTES


async def test_spans_only_when_the_edge_samples_whatever_the_caller_says(
    harness: Harness,
) -> None:
    h = harness.http
    sampled = {"traceparent": f"00-{CALLER}-b7ad6b7169203331-01"}
    unsampled = {"traceparent": f"00-{CALLER}-b7ad6b7169203331-00"}
    await h.get("/items/1", headers=sampled)  # draw 0.5: not traced despite the flag
    await h.get("/items/2", headers=unsampled)  # draw 0.001: traced despite the flag
    await h.get("/items/3")  # draw 0.9: not traced
    await h.get("/boom")  # draw 0.002: traced, a root, an error
    finished = harness.spans.get_finished_spans()
    assert [s.name for s in finished] == ["GET /items/{item_id}", "GET /boom"]
    joined, root = finished
    assert joined.kind == trace.SpanKind.SERVER
    assert format(joined.context.trace_id, "032x") == CALLER  # joins the caller's trace
    assert joined.attributes is not None
    assert joined.attributes["http.route"] == "/items/{item_id}"
    assert joined.attributes["http.response.status_code"] == 200
    assert root.parent is None
    assert root.status.status_code == trace.StatusCode.ERROR


async def test_telemetry_off_returns_the_app_itself() -> None:
    from tokenry.servicekit.httptelemetry import instrument_asgi

    app = Starlette(routes=ROUTES)
    assert instrument_asgi(app, ["/x"]) is app  # no SDK in this process's globals

"""The gateway's telemetry (issue 15) as an operator runs it: ``python -m
tokenry.services.gateway`` with ``TOKENRY_METRICS_LISTEN`` and an OTLP endpoint (a real OTLP
receiver started by the test). The scrape is parsed with prometheus-client's parser and passes ``promtool check metrics``: request
counts by route template and status, tokens issued and 401s through the gRPC services' counters.
A revocation POST carrying a caller's *unsampled* ``traceparent`` is traced anyway (the edge's own
draw decides, here always_on) in the caller's trace, with its PostgreSQL queries as children."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import pytest
from otlp_support import CLIENT, SERVER, OtlpReceiver, ReceivedSpan
from prometheus_client.parser import text_string_to_metric_families

from tokenry.devstack.ports import free_tcp_port
from tokenry.servicekit.config import Settings

from gateway_support import register, wait_ready
from suite import process_env, run_suite, stop_all

pytestmark = pytest.mark.integration

CALLER = "4bf92f3577b34da6a3ce929d0e0e4736"


def _env(settings: Settings, endpoint: str, listen: str, metrics: str) -> dict[str, str]:
    assert settings.kek is not None
    extra = {
        "TOKENRY_DEV": "1",
        "TOKENRY_LOG_LEVEL": "WARNING",
        "TOKENRY_GATEWAY_LISTEN": listen,
        "TOKENRY_METRICS_LISTEN": metrics,
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    return process_env(settings, extra, keep_otel=False)


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = {
                k: v for k, v in s.labels.items() if k != "worker" and not k.startswith("otel_")
            }
            out[(s.name, frozenset(labels.items()))] = s.value
    return out


def _value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _promtool_check(text: str) -> None:
    """``promtool check metrics`` (Debian's prometheus package; make test installs it)."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install Debian's 'prometheus' package (make test does)"
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    # exit 3: lint warnings (naming advice); 1: a malformed exposition
    assert done.returncode in (0, 3), done.stdout + done.stderr
    assert "error" not in done.stderr.lower(), done.stderr


def _revoke_trace(spans: list[ReceivedSpan]) -> bool:
    return any(s.name == "POST /oauth2/revoke" and s.kind == SERVER for s in spans) and any(
        s.kind == CLIENT for s in spans
    )


async def test_gateway_scrape_and_spans(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    receiver = OtlpReceiver()
    endpoint = await receiver.start()
    listen = f"127.0.0.1:{free_tcp_port()}"
    metrics_port = free_tcp_port()
    log = (tmp_path / "gateway.log").open("wb")
    proc = None
    secrets: dict[str, str] = {}
    try:
        async with run_suite(settings, pool, services=("keyrotator",)) as suite:
            secrets.update(suite.secrets)
            await register(pool, settings, secrets)
            proc = subprocess.Popen(
                [sys.executable, "-m", "tokenry.services.gateway"],
                env=_env(settings, endpoint, listen, f"127.0.0.1:{metrics_port}"),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            async with httpx.AsyncClient(base_url=f"http://{listen}", timeout=10) as http:
                await wait_ready(http, timeout=30)
                auth = httpx.BasicAuth("demo", secrets["demo"])
                form = {"grant_type": "client_credentials"}
                tokens = [
                    (await http.post("/oauth2/token", data=form, auth=auth)).json()
                    for _ in range(2)
                ]
                bad = httpx.BasicAuth("demo", "wrong")
                assert (await http.post("/oauth2/token", data=form, auth=bad)).status_code == 401
                assert (await http.get("/no/such/path")).status_code == 404
                unsampled = {"traceparent": f"00-{CALLER}-00f067aa0ba902b7-00"}
                revoked = await http.post(
                    "/oauth2/revoke",
                    data={"token": tokens[0]["access_token"]},
                    auth=auth,
                    headers=unsampled,
                )
                assert revoked.status_code == 200
                # The scrape endpoint, as Prometheus reads it.
                text = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
            started = time.monotonic()
            await receiver.wait_for(_revoke_trace, timeout=30)
            print(f"revoke trace exported after {time.monotonic() - started:.2f} s")
    finally:
        stop_all([] if proc is None else [proc])
        log.close()
        await receiver.stop()

    _promtool_check(text)
    got = _samples(text)
    count = "http_server_request_duration_seconds_count"
    route = {"http_request_method": "POST", "http_route": "/oauth2/token"}
    assert _value(got, count, **route, http_response_status_code="200") == 2
    assert _value(got, count, **route, http_response_status_code="401") == 1
    assert (
        _value(
            got,
            count,
            http_request_method="GET",
            http_route="unmatched",
            http_response_status_code="404",
        )
        == 1
    )
    issued = {"grant": "client_credentials", "format": "jwt", "client": "demo"}
    assert _value(got, "tokenry_tokens_issued_total", **issued) == 2
    failures = {"auth_method": "client_secret_basic", "rpc_method": "POST /oauth2/token"}
    assert _value(got, "tokenry_client_auth_failures_total", **failures) == 1
    assert "/no/such/path" not in text and secrets["demo"] not in text
    assert 'worker="0"' in text

    (span,) = [s for s in receiver.spans if s.name == "POST /oauth2/revoke"]
    assert span.trace_id == CALLER  # joined the caller's trace; its 00 flag was ignored
    assert span.service == "tokenry-gateway"
    queries = [s for s in receiver.spans if s.kind == CLIENT and s.parent_span_id == span.span_id]
    assert queries and {s.attributes["db.system"] for s in queries} == {"postgresql"}
    dump = repr(receiver.spans)
    assert tokens[0]["access_token"] not in dump and secrets["demo"] not in dump

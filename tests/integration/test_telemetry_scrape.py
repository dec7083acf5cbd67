"""A real scrape (issue 15): the issuer runs as processes with ``--workers 2`` and
TOKENRY_METRICS_LISTEN; each worker serves its own port (base + index) with a ``worker``
label; the text parses with prometheus-client's parser and passes ``promtool check metrics``;
the counts match the calls made. The alert rules in deploy/otel pass ``promtool check rules``.

promtool comes from Debian's ``prometheus`` package (``make test`` installs it as root); these
tests fail, never skip, without it.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import asyncpg
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tokenry.devstack.ports import free_tcp_port
from tokenry.servicekit.config import Settings
from tokenry.v1 import issuer_pb2, issuer_pb2_grpc

from suite import process_env, register_clients, stop_all, wait_serving

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "tokenry.v1.Issuer/Token"


def _promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: install Debian's 'prometheus' package (make test does)"
    return found


def _env(
    settings: Settings, issuer_port: int, keyrotator_port: int, metrics: int
) -> dict[str, str]:
    assert settings.kek is not None
    extra = {
        "TOKENRY_ISSUER_LISTEN": f"127.0.0.1:{issuer_port}",
        "TOKENRY_KEYROTATOR_LISTEN": f"127.0.0.1:{keyrotator_port}",
        "TOKENRY_METRICS_LISTEN": f"127.0.0.1:{metrics}",
    }
    return process_env(settings, extra, keep_otel=False)


def _scrape(port: int, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                return str(r.read().decode())
        except OSError:
            assert time.monotonic() < deadline, f"no scrape endpoint on {port}"
            time.sleep(0.1)


def _token_calls(text: str) -> dict[tuple[str, str], float]:
    """(worker, status code) → count of Token calls, from the parsed exposition."""
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "rpc_server_call_duration_seconds_count"
                and sample.labels.get("rpc_method") == TOKEN
            ):
                key = (sample.labels["worker"], sample.labels["rpc_grpc_status_code"])
                out[key] = out.get(key, 0.0) + sample.value
    return out


def _sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def _check_metrics(text: str) -> None:
    done = subprocess.run(
        [_promtool(), "check", "metrics"], input=text, capture_output=True, text=True
    )
    # promtool exits 3 for lint *warnings* (naming advice) and 1 for a malformed exposition.
    assert done.returncode in (0, 3), done.stdout + done.stderr
    assert "error" not in done.stderr.lower(), done.stderr


async def test_scrape_per_worker_parses_and_counts_token_calls(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    client_secrets = await register_clients(pool, settings)
    issuer_port, keyrotator_port = free_tcp_port(), free_tcp_port()
    base = free_tcp_port()
    while True:  # base and base + 1 (worker 1) both free
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", base + 1))
            break
        except OSError:
            base = free_tcp_port()
    env = _env(settings, issuer_port, keyrotator_port, base)
    keyrotator_env = {**env, "TOKENRY_METRICS_LISTEN": ""}
    keyrotator = subprocess.Popen(
        [sys.executable, "-m", "tokenry.services.keyrotator"],
        env=keyrotator_env,
        stderr=subprocess.DEVNULL,
    )
    issuer = subprocess.Popen(
        [sys.executable, "-m", "tokenry.services.issuer", "--workers", "2"],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    good = "Basic " + base64.b64encode(f"demo:{client_secrets['demo']}".encode()).decode()
    bad = "Basic " + base64.b64encode(b"demo:not-the-secret").decode()
    try:
        await wait_serving(f"127.0.0.1:{keyrotator_port}", timeout=30)
        await wait_serving(f"127.0.0.1:{issuer_port}", timeout=30)
        issued, refused = 0, 0
        # several connections, so both workers take some (SO_REUSEPORT spreads connections)
        for i in range(8):
            async with grpc.aio.insecure_channel(
                f"127.0.0.1:{issuer_port}",
                options=[("grpc.use_local_subchannel_pool", 1), ("grpc.channel_id", str(i))],
            ) as channel:
                stub = issuer_pb2_grpc.IssuerStub(channel)
                request = issuer_pb2.TokenRequest(grant_type="client_credentials")
                for _ in range(3):
                    try:
                        await stub.Token(request, metadata=(("authorization", good),), timeout=10)
                        issued += 1
                    except grpc.aio.AioRpcError as exc:
                        # the issuer may still be fetching its key: TEMPORARILY_UNAVAILABLE
                        assert exc.code() == grpc.StatusCode.UNAVAILABLE  # noqa: PT017
                with pytest.raises(grpc.aio.AioRpcError) as refusal:
                    await stub.Token(request, metadata=(("authorization", bad),), timeout=10)
                assert refusal.value.code() == grpc.StatusCode.UNAUTHENTICATED
                refused += 1
        assert issued >= 20
        # A refused call's count can trail its status: grpc.aio's abort sends the status
        # before the handler's measuring wrapper resumes, so a scrape right after the last
        # refusal may miss it. Scrape again until the counts settle (10 s at most).
        expected = (issued, refused, issued, refused)
        deadline = time.monotonic() + 10
        while True:
            texts = {0: _scrape(base), 1: _scrape(base + 1)}
            counted = _counted(texts)
            if counted == expected or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        for text in texts.values():
            _check_metrics(text)
        # Token calls OK and UNAUTHENTICATED, tokens issued, client-authentication failures.
        assert counted == expected
        secret = client_secrets["demo"]
        assert all(secret not in text for text in texts.values())
    finally:
        stop_all((issuer, keyrotator))


def _counted(texts: dict[int, str]) -> tuple[float, float, float, float]:
    """Over every worker's scrape: Token calls OK and UNAUTHENTICATED, client-credentials JWTs
    issued to ``demo``, and its failed client_secret_basic authentications."""
    counts: dict[tuple[str, str], float] = {}
    for worker, text in texts.items():
        per = _token_calls(text)
        assert all(w == str(worker) for w, _ in per), "each port is one worker's series"
        for key, value in per.items():
            counts[key] = counts.get(key, 0.0) + value
    issued = sum(
        _sum(
            t,
            "tokenry_tokens_issued_total",
            grant="client_credentials",
            format="jwt",
            client="demo",
        )
        for t in texts.values()
    )
    failures = sum(
        _sum(
            t,
            "tokenry_client_auth_failures_total",
            auth_method="client_secret_basic",
            rpc_method=TOKEN,
        )
        for t in texts.values()
    )
    return (
        sum(v for (_, code), v in counts.items() if code == "OK"),
        sum(v for (_, code), v in counts.items() if code == "UNAUTHENTICATED"),
        issued,
        failures,
    )


def test_alert_rules_pass_promtool() -> None:
    rules = ROOT / "deploy" / "otel" / "alerts.yaml"
    done = subprocess.run(
        [_promtool(), "check", "rules", str(rules)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_bad_metrics_listen_is_a_configuration_error(settings: Settings) -> None:
    env = {**_env(settings, free_tcp_port(), free_tcp_port(), 1), "TOKENRY_METRICS_LISTEN": "x"}
    done = subprocess.run(
        [sys.executable, "-m", "tokenry.services.issuer"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "TOKENRY_METRICS_LISTEN" in done.stderr


async def test_revocation_and_keyrotator_export_relay_outbox_nats_pool_and_key_gauges(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    from tokenry.v1 import revocation_pb2, revocation_pb2_grpc

    client_secrets = await register_clients(pool, settings)
    ports = {name: (free_tcp_port(), free_tcp_port()) for name in ("keyrotator", "revocation")}
    env = _env(settings, free_tcp_port(), ports["keyrotator"][0], 0)
    procs = []
    for name, (grpc_port, metrics_port) in ports.items():
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", f"tokenry.services.{name}"],
                env={
                    **env,
                    f"TOKENRY_{name.upper()}_LISTEN": f"127.0.0.1:{grpc_port}",
                    "TOKENRY_METRICS_LISTEN": f"127.0.0.1:{metrics_port}",
                },
                stderr=subprocess.DEVNULL,
            )
        )
    try:
        for grpc_port, _ in ports.values():
            await wait_serving(f"127.0.0.1:{grpc_port}", timeout=30)
        auth = "Basic " + base64.b64encode(f"admin:{client_secrets['admin']}".encode()).decode()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{ports['revocation'][0]}") as channel:
            resp = await revocation_pb2_grpc.RevocationStub(channel).Revoke(
                revocation_pb2.RevokeRequest(jti="A" * 22),
                metadata=(("authorization", auth),),
                timeout=10,
            )
        assert resp.seq > 0
        deadline = time.monotonic() + 30
        while True:  # the gauges are sampled every few seconds; the lease may move at first
            texts = {name: _scrape(m) for name, (_, m) in ports.items()}
            leaders = sum(_sum(t, "tokenry_relay_leader") for t in texts.values())
            published = sum(_sum(t, "tokenry_relay_published_total") for t in texts.values())
            keys = _sum(texts["keyrotator"], "tokenry_keys_age_seconds")
            if leaders == 1 and published >= 1 and keys > 0:
                break
            assert time.monotonic() < deadline, (leaders, published, keys)
            time.sleep(0.2)
        for text in texts.values():
            _check_metrics(text)
            assert _sum(text, "tokenry_nats_connected", connection="relay") == 1
            assert _sum(text, "tokenry_db_pool_connections", state="max") > 0
        revocation = texts["revocation"]
        assert "tokenry_outbox_backlog" in revocation
        assert "tokenry_outbox_oldest_unpublished_seconds" in revocation
        assert (
            _sum(
                revocation,
                "rpc_server_call_duration_seconds_count",
                rpc_method="tokenry.v1.Revocation/Revoke",
                rpc_grpc_status_code="OK",
            )
            == 1
        )
        assert _sum(texts["keyrotator"], "tokenry_keys_next_transition_seconds", state="active")
    finally:
        stop_all(procs)

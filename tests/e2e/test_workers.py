"""`--workers N`: N processes share the port; SIGTERM to the supervisor stops them all — on
asyncio's loop and on uvloop (TOKENRY_EVENT_LOOP)."""

from __future__ import annotations

import base64
import secrets
import signal
import subprocess
import sys
import time

import asyncpg
import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenry.devstack import EmbeddedNats
from tokenry.devstack.ports import free_tcp_port
from tokenry.servicekit.config import Settings
from tokenry.v1 import issuer_pb2, issuer_pb2_grpc

from suite import process_env, register_clients

pytestmark = pytest.mark.e2e


def _env(settings: Settings, issuer_port: int, keyrotator_port: int) -> dict[str, str]:
    assert settings.kek is not None
    extra = {
        "TOKENRY_ISSUER_LISTEN": f"127.0.0.1:{issuer_port}",
        "TOKENRY_KEYROTATOR_LISTEN": f"127.0.0.1:{keyrotator_port}",
    }
    return process_env(settings, extra)


def _wait_serving(addr: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            except grpc.RpcError:
                pass
            assert time.monotonic() < deadline, f"{addr} never SERVING"
            time.sleep(0.1)


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
async def test_issuer_with_two_workers_shares_the_port(
    settings: Settings, pool: asyncpg.Pool, nats_server: EmbeddedNats, event_loop: str
) -> None:
    client_secrets = await register_clients(pool, settings)
    issuer_port, keyrotator_port = free_tcp_port(), free_tcp_port()
    env = {**_env(settings, issuer_port, keyrotator_port), "TOKENRY_EVENT_LOOP": event_loop}
    keyrotator = subprocess.Popen(
        [sys.executable, "-m", "tokenry.services.keyrotator"], env=env, stderr=subprocess.DEVNULL
    )
    issuer = subprocess.Popen(
        [sys.executable, "-m", "tokenry.services.issuer", "--workers", "2"],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_serving(f"127.0.0.1:{keyrotator_port}")
        _wait_serving(f"127.0.0.1:{issuer_port}")
        workers = psutil.Process(issuer.pid).children()
        assert len(workers) == 1, "the supervisor runs one worker itself and spawns N-1"
        auth = (
            (
                "authorization",
                "Basic " + base64.b64encode(f"demo:{client_secrets['demo']}".encode()).decode(),
            ),
        )
        # Several connections: SO_REUSEPORT spreads connections, not requests.
        for _ in range(6):
            with grpc.insecure_channel(
                f"127.0.0.1:{issuer_port}",
                options=[
                    ("grpc.use_local_subchannel_pool", 1),
                    ("grpc.channel_id", secrets.token_hex(4)),
                ],
            ) as channel:
                resp = issuer_pb2_grpc.IssuerStub(channel).Token(
                    issuer_pb2.TokenRequest(grant_type="client_credentials"),
                    metadata=auth,
                    timeout=10,
                )
                assert resp.access_token
        issuer.send_signal(signal.SIGTERM)
        assert issuer.wait(30) == 0 or issuer.returncode is not None
        psutil.wait_procs(workers, timeout=10)
        assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    finally:
        for proc in (issuer, keyrotator):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)


def test_an_unknown_event_loop_is_a_configuration_error(settings: Settings) -> None:
    env = {**_env(settings, free_tcp_port(), free_tcp_port()), "TOKENRY_EVENT_LOOP": "trio"}
    done = subprocess.run(
        [sys.executable, "-m", "tokenry.services.issuer"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "TOKENRY_EVENT_LOOP must be one of asyncio, uvloop" in done.stderr

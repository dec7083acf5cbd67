"""`tokenry dev --insecure` keeps plaintext and says so loudly (issue 13 item 5).

The TLS default is the e2e walking skeleton's (tests/e2e/test_walking_skeleton.py runs over the
dev CA); this is the opt-out, with the shared PostgreSQL and NATS of the test session.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from databases import new_database
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenry.devstack import EmbeddedNats, EmbeddedPostgres
from tokenry.devstack.ports import free_tcp_port

pytestmark = pytest.mark.integration

TOKENRY = Path(sys.executable).parent / "tokenry"


async def test_insecure_dev_stack_is_plaintext_and_says_so(
    pg_server: EmbeddedPostgres, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    dsn = await new_database(pg_server, template=None)
    home = tmp_path / "home"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TOKENRY_")},
        "TOKENRY_HOME": str(home),
        "TOKENRY_DATABASE_URL": dsn,
        "TOKENRY_NATS_URL": nats_server.url,
        "TOKENRY_NATS_PREFIX": f"t{free_tcp_port()}",
        "TOKENRY_NATS_STREAM": f"T{free_tcp_port()}",
    }
    for name in ("issuer", "revocation", "keyrotator", "introspector"):
        env[f"TOKENRY_{name.upper()}_LISTEN"] = f"127.0.0.1:{free_tcp_port()}"
    proc = subprocess.Popen(
        [str(TOKENRY), "dev", "--insecure"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not (home / "dev.json").exists():
            assert proc.poll() is None, proc.communicate()[0].decode()
            assert time.monotonic() < deadline, "tokenry dev --insecure never came up"
            time.sleep(0.05)
        dev = json.loads((home / "dev.json").read_text())
        assert dev["tls_ca"] is None
        assert not (home / "tls").exists()  # no CA is made for a plaintext stack
        async with grpc.aio.insecure_channel(dev["addrs"]["issuer"]) as channel:
            resp = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        # The gateway keeps plain http on loopback, and is the issuer URL (issue 14).
        assert dev["gateway_url"].startswith("http://127.0.0.1:")
        assert dev["issuer_url"] == dev["gateway_url"]
        with urllib.request.urlopen(f"{dev['gateway_url']}/health/ready", timeout=10) as ready:
            assert ready.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, output
    assert "WARNING --insecure: every listener and NATS are PLAINTEXT" in output
    assert "TLS          OFF (--insecure)" in output
    logs = "".join(p.read_text() for p in (home / "logs").glob("*.log"))
    assert "PLAINTEXT listener" in logs  # each service says it too

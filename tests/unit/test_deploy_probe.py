"""deploy/k8s/base/probe/health.py, the services' exec probe, against a real TLS listener.

The listener is servicekit's own (``tls.add_listener`` with client certificates required, as on
the key rotator and the revocation service), with certificates carrying the SANs
deploy/k8s/base/certificates.yaml gives: the probe passes while SERVING, fails when NOT_SERVING,
and fails without the pod's certificate or when the name it checks is not the server's.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from tokenry.devstack.ca import CertificateAuthority
from tokenry.servicekit import tls

REPO = Path(__file__).resolve().parents[2]
PROBE = REPO / "deploy" / "k8s" / "base" / "probe" / "health.py"
NAME = "tokenry-keyrotator"


def _probe() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tokenry_deploy_probe", PROBE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def listener(
    tmp_path: Path,
) -> AsyncIterator[tuple[int, health_aio.HealthServicer, dict[str, str]]]:
    ca = CertificateAuthority.generate()
    ca.write(tmp_path / "ca.crt", tmp_path / "ca.key")
    ca.issue(
        NAME,
        dns=(NAME, f"{NAME}.tokenry.svc"),
        ips=(),
        uris=(f"spiffe://cluster.local/ns/tokenry/sa/{NAME}",),
    ).write(tmp_path / "tls.crt", tmp_path / "tls.key")
    files = tls.ServerTls(tmp_path / "tls.crt", tmp_path / "tls.key", tmp_path / "ca.crt", True)
    server = grpc.aio.server()
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = tls.add_listener(server, "127.0.0.1", 0, tls.Transport(server=files))
    await server.start()
    env = {
        "TOKENRY_TLS_CA": str(tmp_path / "ca.crt"),
        "TOKENRY_TLS_CERT": str(tmp_path / "tls.crt"),
        "TOKENRY_TLS_KEY": str(tmp_path / "tls.key"),
    }
    try:
        yield port, health, env
    finally:
        await server.stop(None)


async def _check(port: int, name: str, env: dict[str, str]) -> int:
    return await asyncio.to_thread(_probe().check, port, name, env)


async def test_the_probe_follows_the_health_status_over_mtls(
    listener: tuple[int, health_aio.HealthServicer, dict[str, str]],
) -> None:
    port, health, env = listener
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    assert await _check(port, NAME, env) == 0
    await health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert await _check(port, NAME, env) == 1


async def test_the_probe_fails_without_the_pods_certificate_or_the_servers_name(
    listener: tuple[int, health_aio.HealthServicer, dict[str, str]],
) -> None:
    port, health, env = listener
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    no_cert = {"TOKENRY_TLS_CA": env["TOKENRY_TLS_CA"]}
    assert await _check(port, NAME, no_cert) == 1  # the mTLS listener refuses the handshake
    assert await _check(port, "tokenry-issuer", env) == 1  # not this server's name
    assert await _check(port, NAME, {}) == 2  # nothing to trust: a configuration error


def test_the_probe_rejects_bad_arguments() -> None:
    assert _probe().main(["health.py"]) == 2
    assert _probe().main(["health.py", "port", NAME]) == 2

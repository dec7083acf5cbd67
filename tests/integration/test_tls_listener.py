"""TLS on a real servicekit listener (issue 13 item 1): mTLS refusals, reload, maximum age.

Certificates are made here with ``cryptography``'s x509 API (tokenry.devstack.ca). The server is
the servicekit one every service uses (``new_server`` + ``listen``), with one extra method that
answers the serial of the caller's verified certificate (``suite.whoami_server``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenry.devstack.ca import CertificateAuthority, Issued
from tokenry.servicekit.tls import ServerTls, Transport
from tokenry.tls import ClientTls

from suite import WHOAMI, whoami_server


@dataclass
class Pki:
    root: Path
    ca: CertificateAuthority
    other: CertificateAuthority

    def files(self, name: str, issued: Issued) -> tuple[Path, Path]:
        cert, key = self.root / f"{name}.pem", self.root / f"{name}-key.pem"
        issued.write(cert, key)
        return cert, key

    def client(self, name: str, issued: Issued | None = None) -> ClientTls:
        ca_path = self.root / "ca.pem"
        if issued is None:
            return ClientTls(ca=ca_path)
        cert, key = self.files(name, issued)
        return ClientTls(ca=ca_path, cert=cert, key=key)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = CertificateAuthority.generate("test CA")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    return Pki(tmp_path, ca, CertificateAuthority.generate("another CA"))


def server_transport(pki: Pki, *, client_auth: bool = True, **kw: Any) -> Transport:
    cert, key = pki.files("server", pki.ca.issue("server"))
    return Transport(ServerTls(cert, key, pki.root / "ca.pem", client_auth), **kw)


@pytest.fixture
async def mtls_server(pki: Pki) -> AsyncIterator[int]:
    async with whoami_server(server_transport(pki)) as port:
        yield port


def whoami_call(channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(WHOAMI)


async def whoami(tls: ClientTls, port: int, timeout: float = 5.0) -> str:
    async with tls.aio_channel(f"127.0.0.1:{port}") as channel:
        answer = await whoami_call(channel)(b"", timeout=timeout)
    return bytes(answer).decode()


async def test_client_certificate_from_the_ca_is_accepted_and_visible(
    pki: Pki, mtls_server: int
) -> None:
    issued = pki.ca.issue("client-a")
    assert await whoami(pki.client("a", issued), mtls_server) == format(issued.serial, "x")


async def test_rejects_client_without_certificate_where_mtls_is_required(
    pki: Pki, mtls_server: int
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await whoami(pki.client("none"), mtls_server)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_rejects_client_certificate_from_another_ca(pki: Pki, mtls_server: int) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await whoami(pki.client("foreign", pki.other.issue("foreign")), mtls_server)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_rejects_expired_client_certificate(pki: Pki, mtls_server: int) -> None:
    now = dt.datetime.now(dt.UTC)
    expired = pki.ca.issue(
        "expired", not_before=now - dt.timedelta(days=2), not_after=now - dt.timedelta(days=1)
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await whoami(pki.client("expired", expired), mtls_server)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_server_tls_without_client_auth_accepts_anonymous_client(pki: Pki) -> None:
    async with whoami_server(server_transport(pki, client_auth=False)) as port:
        assert await whoami(pki.client("none"), port) == "none"


async def test_rejects_plaintext_client_on_a_tls_listener(pki: Pki, mtls_server: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mtls_server}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=3
            )
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def _server_serial(port: int, ca: Path, *, maximum: ssl.TLSVersion | None = None) -> int:
    """Open a fresh TLS connection and return the serial of the server's certificate."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.set_alpn_protocols(["h2"])
    if maximum is not None:
        ctx.minimum_version = min(maximum, ssl.TLSVersion.TLSv1_2)
        ctx.maximum_version = maximum
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


async def test_certificate_swap_reaches_new_connections_without_restart(pki: Pki) -> None:
    first = pki.ca.issue("server-1")
    cert, key = pki.files("server", first)
    transport = Transport(ServerTls(cert, key, pki.root / "ca.pem", client_auth=False))
    async with whoami_server(transport) as port:
        ca = pki.root / "ca.pem"
        assert await asyncio.to_thread(_server_serial, port, ca) == first.serial
        async with pki.client("none").aio_channel(f"127.0.0.1:{port}") as kept:
            await whoami_call(kept)(b"", timeout=5)
            second = pki.ca.issue("server-2")
            second.write(cert, key)  # what cert-manager or the SPIRE helper does
            assert await asyncio.to_thread(_server_serial, port, ca) == second.serial
            # The connection opened before the swap lasts (until its maximum age).
            assert await whoami_call(kept)(b"", timeout=5) == b"none"


async def test_half_written_pair_keeps_the_old_certificate(pki: Pki) -> None:
    first = pki.ca.issue("server-1")
    cert, key = pki.files("server", first)
    transport = Transport(ServerTls(cert, key, pki.root / "ca.pem", client_auth=False))
    async with whoami_server(transport) as port:
        ca = pki.root / "ca.pem"
        cert.write_bytes(pki.ca.issue("server-2").cert_pem)  # the key not yet replaced
        assert await asyncio.to_thread(_server_serial, port, ca) == first.serial


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_tls_1_1_is_refused_and_1_2_accepted(pki: Pki) -> None:
    async with whoami_server(server_transport(pki, client_auth=False)) as port:
        ca = pki.root / "ca.pem"
        # Negative control: the same client capped at TLS 1.2 completes the handshake.
        await asyncio.to_thread(_server_serial, port, ca, maximum=ssl.TLSVersion.TLSv1_2)
        with pytest.raises(ssl.SSLError):
            await asyncio.to_thread(_server_serial, port, ca, maximum=ssl.TLSVersion.TLSv1_1)


async def test_connection_outliving_its_certificate_is_closed_at_max_age(pki: Pki) -> None:
    """TLS never re-checks an open connection: the maximum age is what ends it, and the
    reconnect with the now-expired certificate is refused."""
    transport = server_transport(pki, max_connection_age=4.0, max_connection_age_grace=0.2)
    async with whoami_server(transport) as port:
        start = time.monotonic()
        now = dt.datetime.now(dt.UTC)
        short = pki.ca.issue(
            "short-lived",
            not_before=now - dt.timedelta(minutes=1),
            not_after=now + dt.timedelta(seconds=2),
        )
        tls = pki.client("short", short)
        async with tls.aio_channel(f"127.0.0.1:{port}") as channel:
            call = whoami_call(channel)
            assert await call(b"", timeout=5) == format(short.serial, "x").encode()
            await asyncio.sleep(max(0.0, start + 2.8 - time.monotonic()))
            # Past notAfter, the open connection still works: nothing re-checks it.
            assert await call(b"", timeout=5) == format(short.serial, "x").encode()
            # Past the maximum age (+10 % jitter, + grace): GOAWAY, then a new handshake.
            await asyncio.sleep(max(0.0, start + 5.5 - time.monotonic()))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call(b"", timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE

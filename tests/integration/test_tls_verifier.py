"""The library over TLS (issue 13 item 1, last bullet): ``start_verifier`` and the client side
take channel credentials, against the real services listening with TLS and a TLS nats-server.

Everything trusts one CA made here with ``cryptography``'s x509 API (tokenry.devstack.ca); the
services get their TLS from ``Settings.tls`` exactly as ``TOKENRY_TLS_*`` would give it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest

from tokenry.client import ClientSecretBasic, IssuerTokenFetcher, TokenSource, bearer_channel
from tokenry.devstack.ca import CertificateAuthority, DevPki, dev_pki
from tokenry.devstack.nats import EmbeddedNats, NatsServerTls
from tokenry.jose.errors import VerificationError
from tokenry.servicekit.config import Settings
from tokenry.servicekit.tls import ServerTls, Transport
from tokenry.tls import ClientTls
from tokenry.v1 import revocation_pb2, revocation_pb2_grpc
from tokenry.verifier import start_verifier

from suite import basic, register_clients, serving, start_unary_server

pytestmark = pytest.mark.integration

SERVICES = ("keyrotator", "issuer", "revocation")
WAIT = 20.0


@pytest.fixture
def pki(tmp_path: Path) -> DevPki:
    return dev_pki(tmp_path / "tls", [*SERVICES, "nats", "backend"])


@pytest.fixture
def tls_nats(tmp_path: Path, pki: DevPki) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(
        tmp_path / "nats-store",
        tls=NatsServerTls(pki.cert("nats"), pki.key("nats"), pki.ca, verify=True),
    )
    server.start()
    yield server
    server.stop()


@contextlib.asynccontextmanager
async def tls_suite(
    settings: Settings, pool: asyncpg.Pool, pki: DevPki, nats: EmbeddedNats
) -> AsyncIterator[tuple[dict[str, str], dict[str, str]]]:
    """The services on port 0 with TLS listeners and TLS to NATS; (addresses, secrets)."""
    secrets = await register_clients(pool, settings)

    def own(name: str) -> Settings:
        return dataclasses.replace(
            settings,
            nats_url=nats.url,
            tls=Transport(
                ServerTls(pki.cert(name), pki.key(name), pki.ca),
                nats=ClientTls(pki.ca, pki.cert(name), pki.key(name)),
            ),
        )

    async with serving(SERVICES, own, probe=ClientTls(pki.ca), timeout=WAIT) as addrs:
        yield addrs, secrets


def _verifier_args(settings: Settings, addrs: dict[str, str], nats: EmbeddedNats) -> dict[str, Any]:
    return {
        "issuer": settings.issuer_url,
        "audience": "demo-api",
        "keyrotator_addr": addrs["keyrotator"],
        "revocation_addr": addrs["revocation"],
        "nats_url": nats.url,
        "subjects": settings.subjects,
        "stream": settings.stream.name,
    }


async def test_verifier_and_bearer_channel_over_tls_end_to_end(
    settings: Settings, pool: asyncpg.Pool, pki: DevPki, tls_nats: EmbeddedNats
) -> None:
    backend_tls = ClientTls(pki.ca, pki.cert("backend"), pki.key("backend"))
    async with tls_suite(settings, pool, pki, tls_nats) as (addrs, secrets):
        runtime = await asyncio.wait_for(
            start_verifier(
                **_verifier_args(settings, addrs, tls_nats),
                channel_credentials=backend_tls.channel_credentials(),
                nats_tls=backend_tls.ssl_context(),
            ),
            WAIT,
        )
        try:
            await asyncio.wait_for(runtime.state.wait_current(), WAIT)
            # The caller side: a token source over a TLS issuer channel, attached by
            # bearer_channel to a TLS backend that verifies it with the runtime above.
            async with ClientTls(pki.ca).aio_channel(addrs["issuer"]) as issuer:
                source = TokenSource(
                    IssuerTokenFetcher(
                        issuer, ClientSecretBasic("demo", secrets["demo"]), scope="demo.read"
                    )
                )
                backend, port = await _tls_backend(pki, runtime)
                try:
                    creds = ClientTls(pki.ca).channel_credentials()
                    async with bearer_channel(f"127.0.0.1:{port}", source, creds) as channel:
                        hello: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                            "/demo.Greeter/Hello"
                        )
                        jti = (await hello(b"", timeout=10)).decode()
                        # Revoked over TLS, delivered over TLS NATS, rejected by the verifier.
                        async with ClientTls(pki.ca).aio_channel(addrs["revocation"]) as rch:
                            await revocation_pb2_grpc.RevocationStub(rch).Revoke(
                                revocation_pb2.RevokeRequest(jti=jti, reason="tls test"),
                                metadata=[("authorization", basic("admin", secrets["admin"]))],
                                timeout=10,
                            )
                        # Once the verifier has the revocation it refuses the token, and the
                        # client interceptor retries once with a fresh one: a new jti answers.
                        deadline = time.monotonic() + WAIT
                        while (await hello(b"", timeout=10)).decode() == jti:
                            assert time.monotonic() < deadline, "revocation never arrived"
                            await asyncio.sleep(0.01)
                finally:
                    await backend.stop(None)
        finally:
            await runtime.close()


async def _tls_backend(pki: DevPki, runtime: Any) -> tuple[grpc.aio.Server, int]:
    """A resource server on TLS that answers the jti of the token it verified."""

    async def hello(_request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        auth = dict(context.invocation_metadata() or ()).get("authorization", "")
        try:
            claims = await runtime.verifier.verify(str(auth).removeprefix("Bearer "))
        except VerificationError:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "bad token")
        return str(claims["jti"]).encode()

    transport = Transport(ServerTls(pki.cert("backend"), pki.key("backend")))
    return await start_unary_server(transport, "/demo.Greeter/Hello", hello)


async def test_verifier_without_credentials_cannot_reach_tls_services(
    settings: Settings, pool: asyncpg.Pool, pki: DevPki, tls_nats: EmbeddedNats
) -> None:
    """Negative control: plaintext channels to the same TLS services never bootstrap."""
    backend_tls = ClientTls(pki.ca, pki.cert("backend"), pki.key("backend"))
    async with tls_suite(settings, pool, pki, tls_nats) as (addrs, _secrets):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                start_verifier(
                    **_verifier_args(settings, addrs, tls_nats),
                    nats_tls=backend_tls.ssl_context(),
                ),
                3.0,
            )
        other = CertificateAuthority.generate("another CA")
        (pki.folder / "other-ca.pem").write_bytes(other.cert_pem)
        with pytest.raises(TimeoutError):  # a CA that did not sign the services' certificates
            await asyncio.wait_for(
                start_verifier(
                    **_verifier_args(settings, addrs, tls_nats),
                    channel_credentials=ClientTls(
                        pki.folder / "other-ca.pem"
                    ).channel_credentials(),
                    nats_tls=backend_tls.ssl_context(),
                ),
                3.0,
            )

"""RFC 8705 over real mTLS listeners (issue 13 item 4): ``tls_client_auth`` client
authentication at the issuer, certificate-bound access tokens (``cnf.x5t#S256``), their check
by the aio server interceptor against the caller's certificate, and ``cnf`` in introspection.

Every certificate comes from one CA (tokenry.devstack.ca); each carries
``spiffe://tokenry.dev/<name>``, so "any certificate from the CA is not any client" is tested
with a certificate of that same CA.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tokenry.core.clients import CLIENT_CREDENTIALS, TLS_CLIENT_AUTH, Client
from tokenry.devstack.ca import DEV_TRUST_DOMAIN, DevPki, dev_pki
from tokenry.servicekit.config import Settings
from tokenry.servicekit.tls import ServerTls, Transport
from tokenry.store.clients import ClientStore
from tokenry.tls import ClientTls
from tokenry.v1 import introspector_pb2, introspector_pb2_grpc, issuer_pb2, issuer_pb2_grpc
from tokenry.verifier import AuthInterceptor, MethodPolicy, current_claims, start_verifier

from suite import basic, mtls_listeners, register_clients, serving, start_unary_server

pytestmark = pytest.mark.integration

SERVICES = ("keyrotator", "issuer", "revocation", "introspector")
CLIENT_CERTS = ("bound-svc", "dn-svc", "other", "backend")


def thumbprint(pki: DevPki, name: str) -> str:
    cert = x509.load_pem_x509_certificate(pki.cert(name).read_bytes())
    digest = hashlib.sha256(cert.public_bytes(Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


@dataclasses.dataclass
class Mesh:
    pki: DevPki
    addrs: dict[str, str]
    secrets: dict[str, str]
    runtime: Any
    mtls_port: int  # the backend's mTLS port
    plain_port: int  # the backend's TLS port without client certificates

    def tls(self, name: str | None = None) -> ClientTls:
        if name is None:
            return ClientTls(self.pki.ca)
        return ClientTls(self.pki.ca, self.pki.cert(name), self.pki.key(name))


async def _register(pool: asyncpg.Pool) -> None:
    store = ClientStore(pool)
    common: dict[str, Any] = {
        "secret_hash": None,
        "pepper_id": None,
        "grant_types": frozenset({CLIENT_CREDENTIALS}),
        "scopes": frozenset({"demo.read"}),
        "audiences": ("demo-api",),
        "auth_method": TLS_CLIENT_AUTH,
    }
    await store.upsert(
        Client(
            client_id="bound-svc",
            tls_client_auth_san_uri=f"spiffe://{DEV_TRUST_DOMAIN}/bound-svc",
            certificate_bound=True,
            **common,
        )
    )
    await store.upsert(Client(client_id="dn-svc", tls_client_auth_subject_dn="CN=dn-svc", **common))


async def _backend(pki: DevPki, runtime: Any, *, mtls: bool) -> tuple[grpc.aio.Server, int]:
    async def hello(_request: bytes, _context: Any) -> bytes:
        return str(current_claims()["sub"]).encode()

    tls = ServerTls(pki.cert("backend"), pki.key("backend"), pki.ca if mtls else None, mtls)
    auth = AuthInterceptor(runtime.verifier, {"/demo.Greeter/*": MethodPolicy()})
    return await start_unary_server(Transport(tls), "/demo.Greeter/Hello", hello, [auth])


@pytest.fixture
async def mesh(settings: Settings, pool: asyncpg.Pool, tmp_path: Path) -> AsyncIterator[Mesh]:
    pki = dev_pki(tmp_path / "tls", [*SERVICES, *CLIENT_CERTS])
    created = await register_clients(pool, settings)
    await _register(pool)
    backend_tls = ClientTls(pki.ca, pki.cert("backend"), pki.key("backend"))
    backends: list[grpc.aio.Server] = []
    runtime = None
    async with serving(SERVICES, mtls_listeners(settings, pki), probe=backend_tls) as addrs:
        try:
            runtime = await asyncio.wait_for(
                start_verifier(
                    issuer=settings.issuer_url,
                    audience="demo-api",
                    keyrotator_addr=addrs["keyrotator"],
                    revocation_addr=addrs["revocation"],
                    nats_url=settings.nats_url,
                    subjects=settings.subjects,
                    stream=settings.stream.name,
                    channel_credentials=backend_tls.channel_credentials(),
                ),
                30,
            )
            await asyncio.wait_for(runtime.state.wait_current(), 20)
            mtls_server, mtls_port = await _backend(pki, runtime, mtls=True)
            plain_server, plain_port = await _backend(pki, runtime, mtls=False)
            backends += [mtls_server, plain_server]
            yield Mesh(pki, addrs, created, runtime, mtls_port, plain_port)
        finally:
            for server in backends:
                await server.stop(None)
            if runtime is not None:
                await runtime.close()


async def _token(mesh: Mesh, cert: str, client_id: str) -> str:
    async with mesh.tls(cert).aio_channel(mesh.addrs["issuer"]) as channel:
        resp = await issuer_pb2_grpc.IssuerStub(channel).Token(
            issuer_pb2.TokenRequest(grant_type="client_credentials", client_id=client_id),
            timeout=10,
        )
    return str(resp.access_token)


async def _secret_token(mesh: Mesh) -> str:
    async with mesh.tls("other").aio_channel(mesh.addrs["issuer"]) as channel:
        resp = await issuer_pb2_grpc.IssuerStub(channel).Token(
            issuer_pb2.TokenRequest(grant_type="client_credentials"),
            metadata=(("authorization", basic("demo", mesh.secrets["demo"])),),
            timeout=10,
        )
    return str(resp.access_token)


async def _hello(mesh: Mesh, token: str, *, cert: str | None, mtls: bool = True) -> Any:
    port = mesh.mtls_port if mtls else mesh.plain_port
    async with mesh.tls(cert).aio_channel(f"127.0.0.1:{port}") as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/demo.Greeter/Hello"
        )
        return await call(b"", metadata=(("authorization", f"Bearer {token}"),), timeout=10)


async def _refused(coro: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await coro
    return caught.value


async def test_tls_client_auth_by_san_uri_mints_a_token_bound_to_that_certificate(
    mesh: Mesh,
) -> None:
    token = await _token(mesh, "bound-svc", "bound-svc")
    claims = claims_of(token)
    assert claims["cnf"] == {"x5t#S256": thumbprint(mesh.pki, "bound-svc")}
    assert claims["sub"] == claims["client_id"] == "bound-svc"


async def test_tls_client_auth_by_subject_dn(mesh: Mesh) -> None:
    token = await _token(mesh, "dn-svc", "dn-svc")
    assert "cnf" not in claims_of(token)  # not registered as bound


@pytest.mark.parametrize("client_id", ["bound-svc", "dn-svc"])
async def test_another_certificate_from_the_same_ca_is_not_that_client(
    mesh: Mesh, client_id: str
) -> None:
    error = await _refused(_token(mesh, "other", client_id))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "invalid_client" in (error.details() or "")


async def test_bound_token_over_the_right_connection_is_accepted(mesh: Mesh) -> None:
    token = await _token(mesh, "bound-svc", "bound-svc")
    assert await _hello(mesh, token, cert="bound-svc") == b"bound-svc"
    assert await _hello(mesh, token, cert="bound-svc") == b"bound-svc"  # the cached path


async def test_bound_token_over_another_clients_connection_is_refused(mesh: Mesh) -> None:
    token = await _token(mesh, "bound-svc", "bound-svc")
    await _hello(mesh, token, cert="bound-svc")  # cached as verified first
    error = await _refused(_hello(mesh, token, cert="other"))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "certificate" in (error.details() or "")


async def test_bound_token_without_a_client_certificate_is_refused_no_bearer_downgrade(
    mesh: Mesh,
) -> None:
    token = await _token(mesh, "bound-svc", "bound-svc")
    error = await _refused(_hello(mesh, token, cert=None, mtls=False))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_unbound_token_works_without_a_client_certificate(mesh: Mesh) -> None:
    token = await _secret_token(mesh)
    assert "cnf" not in claims_of(token)
    assert await _hello(mesh, token, cert=None, mtls=False) == b"demo"


async def test_introspection_answer_carries_cnf(mesh: Mesh) -> None:
    token = await _token(mesh, "bound-svc", "bound-svc")
    async with mesh.tls("other").aio_channel(mesh.addrs["introspector"]) as channel:
        resp = await introspector_pb2_grpc.IntrospectorStub(channel).Introspect(
            introspector_pb2.IntrospectRequest(token=token),
            metadata=(("authorization", basic("demo-api", mesh.secrets["demo-api"])),),
            timeout=10,
        )
    assert resp.active
    assert json.loads(resp.cnf_json) == {"x5t#S256": thumbprint(mesh.pki, "bound-svc")}

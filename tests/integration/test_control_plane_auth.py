"""The authenticated control plane (issue 13 item 3): ListRevocations, GetHead (revocation
service) and GetJwks (key rotator) are readable by authenticated verifiers only — an mTLS
certificate whose SAN matches TOKENRY_VERIFIER_ALLOWED_IDS, or a client holding
``tokenry:verifier`` — against the real services with mTLS listeners and PostgreSQL. grpc
Python either requires and verifies client certificates or requests none, so the SAN path
needs an mTLS port; there, a workload whose certificate is not an allowed verifier may still
read as a client holding ``tokenry:verifier``. Each way is tested for refusal and success,
then ``start_verifier`` with either credential.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from assertion_support import public_jwks, sign_assertion
from cryptography.hazmat.primitives.asymmetric import ec

from tokenry.client import ClientSecretBasic
from tokenry.core.client_assertion import CLIENT_ASSERTION_TYPE
from tokenry.core.clients import (
    ADMIN_SCOPE,
    VERIFIER_SCOPE,
    private_key_jwt_client,
)
from tokenry.devstack.ca import DEV_TRUST_DOMAIN, DevPki, dev_pki
from tokenry.servicekit.config import Settings
from tokenry.store.clients import ClientStore
from tokenry.tls import ClientTls
from tokenry.v1 import keyrotator_pb2, keyrotator_pb2_grpc, revocation_pb2, revocation_pb2_grpc
from tokenry.verifier import start_verifier

from suite import add_secret_client, basic, mtls_listeners, serving

pytestmark = pytest.mark.integration

SERVICES = ("keyrotator", "revocation")
ISSUER = "https://issuer.test"
JWT_KEY = ec.generate_private_key(ec.SECP256R1())


@dataclasses.dataclass
class Plane:
    addrs: dict[str, str]
    pki: DevPki
    secrets: dict[str, str]
    settings: Settings

    def tls(self, name: str | None = None) -> ClientTls:
        if name is None:
            return ClientTls(self.pki.ca)
        return ClientTls(self.pki.ca, self.pki.cert(name), self.pki.key(name))


async def _register(pool: asyncpg.Pool, settings: Settings) -> dict[str, str]:
    created = {}
    for client_id, scopes in (
        ("verifier-client", {VERIFIER_SCOPE}),
        ("demo", {"demo.read"}),
        ("admin", {ADMIN_SCOPE}),
    ):
        created[client_id] = await add_secret_client(
            pool, settings, client_id, scopes=scopes, audiences=("demo-api",)
        )
    store = ClientStore(pool)
    jwks = public_jwks(JWT_KEY, kid="a1")
    for client_id, scopes in (("jwt-verifier", {VERIFIER_SCOPE}), ("jwt-admin", {ADMIN_SCOPE})):
        await store.upsert(
            private_key_jwt_client(client_id, jwks, scopes=scopes, audiences=("demo-api",))
        )
    return created


def _assertion(client_id: str) -> str:
    return sign_assertion(client_id, ISSUER, JWT_KEY, kid="a1")


@pytest.fixture
async def plane(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Plane]:
    monkeypatch.setenv("TOKENRY_VERIFIER_AUTH", "required")
    monkeypatch.setenv("TOKENRY_VERIFIER_ALLOWED_IDS", f"spiffe://{DEV_TRUST_DOMAIN}/verifier-*")
    pki = dev_pki(tmp_path / "tls", [*SERVICES, "verifier-a", "workload"])
    settings = dataclasses.replace(settings, issuer_url=ISSUER)
    created = await _register(pool, settings)
    probe = ClientTls(pki.ca, pki.cert("workload"), pki.key("workload"))
    async with serving(SERVICES, mtls_listeners(settings, pki), probe=probe) as addrs:
        yield Plane(addrs, pki, created, settings)


Read = Callable[[Plane, ClientTls, tuple[tuple[str, str], ...]], Awaitable[Any]]


async def _get_head(plane: Plane, tls: ClientTls, md: tuple[tuple[str, str], ...]) -> Any:
    async with tls.aio_channel(plane.addrs["revocation"]) as ch:
        stub = revocation_pb2_grpc.RevocationStub(ch)
        return await stub.GetHead(revocation_pb2.GetHeadRequest(), metadata=md, timeout=10)


async def _list(plane: Plane, tls: ClientTls, md: tuple[tuple[str, str], ...]) -> Any:
    async with tls.aio_channel(plane.addrs["revocation"]) as ch:
        stub = revocation_pb2_grpc.RevocationStub(ch)
        call = stub.ListRevocations(
            revocation_pb2.ListRevocationsRequest(), metadata=md, timeout=10
        )
        return [msg async for msg in call]


async def _jwks(plane: Plane, tls: ClientTls, md: tuple[tuple[str, str], ...]) -> Any:
    async with tls.aio_channel(plane.addrs["keyrotator"]) as ch:
        stub = keyrotator_pb2_grpc.KeyRotatorStub(ch)
        return await stub.GetJwks(keyrotator_pb2.GetJwksRequest(), metadata=md, timeout=10)


READS: dict[str, Read] = {"GetHead": _get_head, "ListRevocations": _list, "GetJwks": _jwks}


async def _refused(read: Read, plane: Plane, tls: ClientTls, md: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await read(plane, tls, md)
    return caught.value.code()


@pytest.mark.parametrize("rpc", READS)
async def test_reader_without_a_client_certificate_is_refused(plane: Plane, rpc: str) -> None:
    code = await _refused(READS[rpc], plane, plane.tls(), ())
    assert code == grpc.StatusCode.UNAVAILABLE  # the mTLS handshake fails


@pytest.mark.parametrize("rpc", READS)
async def test_anonymous_reader_is_refused(plane: Plane, rpc: str) -> None:
    code = await _refused(READS[rpc], plane, plane.tls("workload"), ())
    assert code == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("rpc", READS)
async def test_certificate_with_allowed_spiffe_id_may_read(plane: Plane, rpc: str) -> None:
    assert await READS[rpc](plane, plane.tls("verifier-a"), ()) is not None


@pytest.mark.parametrize("rpc", READS)
async def test_certificate_from_the_ca_with_another_spiffe_id_is_refused(
    plane: Plane, rpc: str
) -> None:
    code = await _refused(READS[rpc], plane, plane.tls("workload"), ())
    assert code == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("rpc", READS)
async def test_client_holding_verifier_scope_may_read(plane: Plane, rpc: str) -> None:
    md = (("authorization", basic("verifier-client", plane.secrets["verifier-client"])),)
    assert await READS[rpc](plane, plane.tls("workload"), md) is not None


@pytest.mark.parametrize("rpc", READS)
async def test_private_key_jwt_client_holding_verifier_scope_may_read(
    plane: Plane, rpc: str
) -> None:
    md = (
        ("client-assertion-type", CLIENT_ASSERTION_TYPE),
        ("client-assertion", _assertion("jwt-verifier")),
    )
    assert await READS[rpc](plane, plane.tls("workload"), md) is not None


@pytest.mark.parametrize("rpc", READS)
async def test_client_without_verifier_scope_is_denied(plane: Plane, rpc: str) -> None:
    for client_id in ("demo", "admin"):  # not even an admin: the scope is the permission
        md = (("authorization", basic(client_id, plane.secrets[client_id])),)
        code = await _refused(READS[rpc], plane, plane.tls("workload"), md)
        assert code == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("rpc", READS)
async def test_wrong_secret_of_the_verifier_client_is_refused(plane: Plane, rpc: str) -> None:
    md = (("authorization", basic("verifier-client", "wrong")),)
    code = await _refused(READS[rpc], plane, plane.tls("workload"), md)
    assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_admin_rpc_accepts_private_key_jwt(plane: Plane) -> None:
    md = (
        ("client-assertion-type", CLIENT_ASSERTION_TYPE),
        ("client-assertion", _assertion("jwt-admin")),
    )
    async with plane.tls("workload").aio_channel(plane.addrs["keyrotator"]) as ch:
        stub = keyrotator_pb2_grpc.KeyRotatorStub(ch)
        resp = await stub.ListKeys(keyrotator_pb2.ListKeysRequest(), metadata=md, timeout=10)
    assert resp is not None


def _verifier_args(plane: Plane, nats_url: str) -> dict[str, Any]:
    return {
        "issuer": ISSUER,
        "audience": "demo-api",
        "keyrotator_addr": plane.addrs["keyrotator"],
        "revocation_addr": plane.addrs["revocation"],
        "nats_url": nats_url,
        "subjects": plane.settings.subjects,
        "stream": plane.settings.stream.name,
    }


async def _current(**kwargs: Any) -> None:
    runtime = await asyncio.wait_for(start_verifier(**kwargs), timeout=30)
    try:
        await asyncio.wait_for(runtime.state.wait_current(), timeout=20)
        assert not runtime.state.is_stale()
    finally:
        await runtime.close()


async def test_start_verifier_with_client_credentials(plane: Plane) -> None:
    await _current(
        **_verifier_args(plane, plane.settings.nats_url),
        channel_credentials=plane.tls("workload").channel_credentials(),
        client_auth=ClientSecretBasic("verifier-client", plane.secrets["verifier-client"]),
    )


async def test_start_verifier_with_its_mtls_certificate(plane: Plane) -> None:
    await _current(
        **_verifier_args(plane, plane.settings.nats_url),
        channel_credentials=plane.tls("verifier-a").channel_credentials(),
    )

"""Test helpers: the Tokenry services running in-process on port 0, against real servers (or as
their own processes: :func:`process_env`, :func:`stop_all`), the clients they know, and small
servicekit listeners for transport tests (:func:`start_unary_server`)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenry.core.clients import ADMIN_SCOPE, secret_client
from tokenry.devstack.ca import DevPki
from tokenry.servicekit.config import Settings
from tokenry.servicekit.server import Service, listen, new_server, serve
from tokenry.servicekit.tls import ServerTls, Transport, peer_certificate
from tokenry.services.introspector import app as introspector_app
from tokenry.services.issuer import app as issuer_app
from tokenry.services.keyrotator import app as keyrotator_app
from tokenry.services.revocation import app as revocation_app
from tokenry.store.clients import ClientStore
from tokenry.tls import ClientTls
from tokenry.v1 import issuer_pb2, issuer_pb2_grpc, revocation_pb2, revocation_pb2_grpc

APPS = {
    "keyrotator": keyrotator_app,
    "issuer": issuer_app,
    "revocation": revocation_app,
    "introspector": introspector_app,
}
DEFAULT_SERVICES = ("keyrotator", "issuer", "revocation")
#: The one method of :func:`whoami_server`.
WHOAMI = "/tokenry.test.Peer/Whoami"


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@dataclass
class Suite:
    settings: Settings
    addrs: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)

    def channel(self, service: str) -> grpc.aio.Channel:
        if service not in self.channels:
            self.channels[service] = grpc.aio.insecure_channel(self.addrs[service])
        return self.channels[service]

    async def token(self, client_id: str = "demo", **kwargs: Any) -> issuer_pb2.TokenResponse:
        stub = issuer_pb2_grpc.IssuerStub(self.channel("issuer"))
        req = issuer_pb2.TokenRequest(grant_type="client_credentials", **kwargs)
        return await stub.Token(
            req, metadata=[("authorization", basic(client_id, self.secrets[client_id]))], timeout=10
        )

    async def revoke(self, jti: str, client_id: str = "admin", **kwargs: Any) -> int:
        stub = revocation_pb2_grpc.RevocationStub(self.channel("revocation"))
        resp = await stub.Revoke(
            revocation_pb2.RevokeRequest(jti=jti, **kwargs),
            metadata=[("authorization", basic(client_id, self.secrets[client_id]))],
            timeout=10,
        )
        return resp.seq


async def add_secret_client(
    pool: asyncpg.Pool,
    settings: Settings,
    client_id: str,
    *,
    scopes: Iterable[str],
    audiences: tuple[str, ...],
    **fields: Any,
) -> str:
    """Registers (or replaces) ``client_id`` with a fresh random secret, hashed under the
    settings' first pepper (:func:`secret_client`); returns the secret."""
    pepper = next(iter(settings.peppers.values()))
    secret = secrets.token_urlsafe(32)
    client = secret_client(client_id, secret, pepper, scopes=scopes, audiences=audiences, **fields)
    await ClientStore(pool).upsert(client)
    return secret


async def register_clients(pool: asyncpg.Pool, settings: Settings) -> dict[str, str]:
    created = {}
    for client_id, scopes, audiences in (
        ("demo", {"demo.read", "demo.write"}, ("demo-api",)),
        ("admin", {ADMIN_SCOPE}, ("tokenry",)),
        ("other", {"demo.read"}, ("other-api",)),
        # A resource server: its client id is its audience; it may introspect.
        ("demo-api", {"tokenry:introspect"}, ()),
    ):
        created[client_id] = await add_secret_client(
            pool, settings, client_id, scopes=scopes, audiences=audiences
        )
    return created


def process_env(
    settings: Settings, extra: Mapping[str, str], *, keep_otel: bool = True
) -> dict[str, str]:
    """The environment of a Tokenry service run as its own process against ``settings``'
    servers: this process's environment (less its ``OTEL_*`` variables unless ``keep_otel``),
    the settings' database, NATS, issuer URL, KEK and first pepper, then ``extra``."""
    pepper = next(iter(settings.peppers.values()))
    inherited = {k: v for k, v in os.environ.items() if keep_otel or not k.startswith("OTEL_")}
    env = {
        **inherited,
        "TOKENRY_DATABASE_URL": settings.database_url,
        "TOKENRY_NATS_URL": settings.nats_url,
        "TOKENRY_NATS_PREFIX": settings.subjects.prefix,
        "TOKENRY_NATS_STREAM": settings.stream.name,
        "TOKENRY_ISSUER_URL": settings.issuer_url,
        "TOKENRY_SECRET_PEPPER": pepper.key.decode(),
    }
    if settings.kek is not None:
        env["TOKENRY_KEK"] = settings.kek.encoded()
    return env | dict(extra)


def stop_all(procs: Iterable[subprocess.Popen[bytes]], timeout: float = 20.0) -> None:
    """SIGTERM every process still running, all before waiting on any (a shutdown may wait on
    its peers), then up to ``timeout`` s each; SIGKILL what is still there."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


async def wait_serving(addr: str, timeout: float = 20.0, tls: ClientTls | None = None) -> None:
    """Until ``addr``'s grpc.health answers SERVING (over ``tls`` when given)."""
    channel = grpc.aio.insecure_channel(addr) if tls is None else tls.aio_channel(addr)
    async with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            with contextlib.suppress(grpc.RpcError):
                resp = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{addr} not SERVING after {timeout}s")
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def serving(
    services: Iterable[str],
    settings_of: Callable[[str], Settings],
    *,
    probe: ClientTls | None = None,
    timeout: float = 20.0,
) -> AsyncIterator[dict[str, str]]:
    """``services`` in-process on port 0, each SERVING (asked over ``probe`` when given) before
    the next starts; yields their addresses. ``settings_of(name)`` is that service's settings
    (its own listener, say: :func:`mtls_listeners`). All stop on the way out."""
    stop = asyncio.Event()
    tasks = []
    addrs: dict[str, str] = {}
    try:
        for name in services:
            module = APPS[name]
            service = module.build(settings_of(name), "127.0.0.1", 0)
            addrs[name] = f"127.0.0.1:{service.port}"
            tasks.append(
                asyncio.create_task(
                    serve(service, stop, grace=1, service_names=module.SERVICE_NAMES)
                )
            )
            await wait_serving(addrs[name], timeout, probe)
        yield addrs
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def served(service: Service, service_names: Sequence[str]) -> AsyncIterator[str]:
    """An already built service (its own options: a clock, a config) in-process until the block
    ends; yields its address once it is SERVING."""
    stop = asyncio.Event()
    task = asyncio.create_task(serve(service, stop, grace=1, service_names=service_names))
    addr = f"127.0.0.1:{service.port}"
    try:
        await wait_serving(addr)
        yield addr
    finally:
        stop.set()
        await task


def mtls_listeners(
    settings: Settings, pki: DevPki, clients_ca: Path | None = None, **transport: float
) -> Callable[[str], Settings]:
    """For :func:`serving`: each service on its own ``pki`` certificate, requiring a client
    certificate from ``clients_ca`` (the pki's CA unless given); ``transport``: the
    ``max_connection_age*`` options of :class:`Transport`."""

    def own(name: str) -> Settings:
        tls = ServerTls(pki.cert(name), pki.key(name), clients_ca or pki.ca, client_auth=True)
        return replace(settings, tls=Transport(tls, **transport))

    return own


@contextlib.asynccontextmanager
async def run_suite(
    settings: Settings, pool: asyncpg.Pool, services: tuple[str, ...] = DEFAULT_SERVICES
) -> AsyncIterator[Suite]:
    suite = Suite(settings, secrets=await register_clients(pool, settings))
    try:
        async with serving(services, lambda _name: settings) as addrs:
            suite.addrs.update(addrs)
            yield suite
    finally:
        for channel in suite.channels.values():
            await channel.close()


async def _whoami(_request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    cert = peer_certificate(context)
    return b"none" if cert is None else format(cert.serial_number, "x").encode()


async def start_unary_server(
    transport: Transport,
    method: str,
    handler: Callable[[bytes, grpc.aio.ServicerContext[Any, Any]], Awaitable[bytes]],
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> tuple[grpc.aio.Server, int]:
    """The listener every service uses (``new_server`` + ``listen`` on a free loopback port),
    started, with one extra bytes-in, bytes-out ``method`` ("/pkg.Service/Method"); the
    caller stops it."""
    service, name = method.strip("/").split("/")
    server, _health = new_server((), tls=transport, interceptors=interceptors)
    rpc: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(handler)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {name: rpc}),))
    port = listen(server, "127.0.0.1", 0, transport)
    await server.start()
    return server, port


@contextlib.asynccontextmanager
async def whoami_server(transport: Transport) -> AsyncIterator[int]:
    """:func:`start_unary_server` with :data:`WHOAMI`, which answers the serial of the caller's
    verified certificate in hex, or ``none``; yields the port, stops the server at the end."""
    server, port = await start_unary_server(transport, WHOAMI, _whoami)
    try:
        yield port
    finally:
        await server.stop(None)

"""Helpers shared by the revocation and event-pipeline tests (test_revocation_*, test_pipeline_*,
test_outbox*): services run in-process with their own stop switch, their own PostgreSQL/NATS in
tmp_path for tests that kill a server, a fault-injecting TCP proxy, token minting with the real
active key, and waiting on conditions. The tests at the bottom check the helpers themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from bus_support import stream_outbox_seqs, wait_until  # noqa: F401 (the pipeline tests import them here)

from tokenry.bus.codec import Subjects
from tokenry.bus.nats_conn import StreamSettings
from tokenry.core.client_secrets import Pepper, pepper_id
from tokenry.core.ids import new_gid, new_jti
from tokenry.core.keywrap import Kek
from tokenry.devstack import EmbeddedNats, EmbeddedPostgres
from tokenry.devstack.ports import free_tcp_port
from tokenry.servicekit.config import Settings
from tokenry.servicekit.server import serve
from tokenry.servicekit.status import oauth_error_of
from tokenry.services.keyrotator import app as keyrotator_app
from tokenry.services.revocation import app as revocation_app
from tokenry.services.revocation.settings import RevocationSettings
from tokenry.store.active_key import ActiveKeys
from tokenry.store.keys import KeyStore
from tokenry.store.migrate import migrate
from tokenry.v1 import revocation_pb2, revocation_pb2_grpc
from tokenry.verifier import VerifierRuntime, start_verifier
from tokenry.verifier._feed import SyncSettings

from suite import basic, process_env, register_clients, wait_serving

# These tests restart PostgreSQL/NATS from a process that is busy with gRPC. gRPC core's fork
# handlers then find other threads inside gRPC, skip themselves, and the forked child can crash
# before it execs (seen: SIGSEGV in the child of EmbeddedPostgres.start). Nothing here forks a
# process that uses gRPC afterwards, so the handlers are not needed. Read by gRPC core when it
# first initialises (the first channel or server), which is after test collection.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

ROOT = Path(__file__).resolve().parents[2]
FAST_SYNC = SyncSettings(gap_grace=0.3, behind_grace=1.0, snapshot_jitter=0.2, check_interval=0.1)
FAST_REVOCATION = RevocationSettings(heartbeat_interval=0.25, lease_ttl=1.0, sweep_interval=3600)


class ShiftedClock:
    """The system clock plus an offset the test moves (the service reads ``now`` from it)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


# --- services ------------------------------------------------------------------------------------


@dataclass
class Running:
    """One service running in-process until :meth:`stop`."""

    name: str
    addr: str
    _stop: asyncio.Event
    _task: asyncio.Task[None]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(self._task, timeout=30)


async def start_service(
    name: str,
    settings: Settings,
    *,
    options: RevocationSettings | None = None,
    port: int = 0,
    **build_kwargs: Any,
) -> Running:
    stop = asyncio.Event()
    if name == "revocation":
        service = revocation_app.build(
            settings, "127.0.0.1", port, options=options or FAST_REVOCATION, **build_kwargs
        )
        names = revocation_app.SERVICE_NAMES
    else:
        service = keyrotator_app.build(settings, "127.0.0.1", port)
        names = keyrotator_app.SERVICE_NAMES
    task = asyncio.create_task(serve(service, stop, grace=1, service_names=names))
    addr = f"127.0.0.1:{service.port}"
    await wait_serving(addr, timeout=30)
    return Running(name, addr, stop, task)


class StoreJwks:
    """The JWKS straight from PostgreSQL (what the key rotator's GetJwks serves), for tests that
    must not run a key rotator — it runs an outbox relay of its own."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._keys = KeyStore(pool)

    async def fetch(self) -> tuple[str, int]:
        jwks, seq = await self._keys.published()
        return json.dumps({"keys": jwks}), seq


async def make_keys(settings: Settings, pool: asyncpg.Pool) -> None:
    """Let a key rotator create the signing keys, then stop it (and its relay)."""
    keyrotator = await start_service("keyrotator", settings)
    await keyrotator.stop()
    # Its relay may have held the publisher lease: free it for the relays under test.
    await pool.execute("DELETE FROM leases WHERE name = 'event-publisher'")


@dataclass
class Stack:
    """The revocation service (and, unless told otherwise, a key rotator) against one
    database, with registered clients "demo", "admin" and "other"."""

    settings: Settings
    pool: asyncpg.Pool
    secrets: dict[str, str]
    keyrotator: Running | None
    revocation: Running
    channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)
    runtimes: list[VerifierRuntime] = field(default_factory=list)

    def stub(self, addr: str | None = None) -> revocation_pb2_grpc.RevocationStub:
        addr = addr or self.revocation.addr
        if addr not in self.channels:
            self.channels[addr] = grpc.aio.insecure_channel(addr)
        return revocation_pb2_grpc.RevocationStub(self.channels[addr])

    def auth(self, client_id: str = "admin") -> list[tuple[str, str]]:
        return [("authorization", basic(client_id, self.secrets[client_id]))]

    async def revoke(
        self, caller: str = "admin", /, timeout: float = 10, **target: Any
    ) -> revocation_pb2.RevokeResponse:
        request = revocation_pb2.RevokeRequest(**target)
        resp: revocation_pb2.RevokeResponse = await self.stub().Revoke(
            request, metadata=self.auth(caller), timeout=timeout
        )
        return resp

    async def verifier(self, *, sync: SyncSettings = FAST_SYNC, **kwargs: Any) -> VerifierRuntime:
        if self.keyrotator is not None:
            kwargs.setdefault("keyrotator_addr", self.keyrotator.addr)
        else:
            kwargs.setdefault("jwks_source", StoreJwks(self.pool))
        runtime = await asyncio.wait_for(
            start_verifier(
                issuer=self.settings.issuer_url,
                audience="demo-api",
                nats_url=kwargs.pop("nats_url", self.settings.nats_url),
                subjects=self.settings.subjects,
                stream=self.settings.stream.name,
                revocation_addr=self.revocation.addr,
                sync=sync,
                **kwargs,
            ),
            timeout=60,
        )
        self.runtimes.append(runtime)
        return runtime

    async def close(self) -> None:
        for runtime in self.runtimes:
            await runtime.close()
        for channel in self.channels.values():
            await channel.close()
        for running in (self.revocation, self.keyrotator):
            if running is not None:
                with contextlib.suppress(Exception):
                    await running.stop()


@contextlib.asynccontextmanager
async def stack(
    settings: Settings,
    pool: asyncpg.Pool,
    *,
    options: RevocationSettings | None = None,
    keyrotator: bool = True,
) -> AsyncIterator[Stack]:
    """``keyrotator=False``: the keys are made, then the key rotator is stopped, so the
    revocation service's relay is the only event publisher (tests of heartbeats, failover)."""
    secrets = await register_clients(pool, settings)
    if keyrotator:
        rotator: Running | None = await start_service("keyrotator", settings)
    else:
        await make_keys(settings, pool)
        rotator = None
    revocation = await start_service("revocation", settings, options=options)
    s = Stack(settings, pool, secrets, rotator, revocation)
    try:
        yield s
    finally:
        await s.close()


@contextlib.asynccontextmanager
async def revocation_only(
    settings: Settings, pool: asyncpg.Pool, **build_kwargs: Any
) -> AsyncIterator[Stack]:
    """The suite's clients and the revocation service alone (built with ``build_kwargs``: a
    clock, say), no key rotator and no keys."""
    secrets = await register_clients(pool, settings)
    revocation = await start_service("revocation", settings, **build_kwargs)
    s = Stack(settings, pool, secrets, None, revocation)
    try:
        yield s
    finally:
        await s.close()


# --- own servers (for tests that kill one) --------------------------------------------------


async def own_postgres(tmp_path: Path) -> EmbeddedPostgres:
    pg = EmbeddedPostgres(tmp_path / "pg" / "data", fsync=False)
    await asyncio.to_thread(pg.start)
    conn = await asyncpg.connect(pg.dsn())
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return pg


async def own_nats(tmp_path: Path) -> EmbeddedNats:
    server = EmbeddedNats(tmp_path / "nats" / "store")
    await asyncio.to_thread(server.start)
    return server


def make_settings(database_url: str, nats_url: str, *, max_age: float = 600) -> Settings:
    pepper_key = os.urandom(24).hex().encode()
    tag = uuid.uuid4().hex[:10]
    return Settings(
        dev=True,
        database_url=database_url,
        nats_url=nats_url,
        issuer_url="https://issuer.test",
        subjects=Subjects(f"t{tag}"),
        stream=StreamSettings(name=f"T{tag}", max_age=max_age),
        log_level="WARNING",
        access_token_alg="ES256",
        kek=Kek.generate(),
        peppers={pepper_id(pepper_key): Pepper(pepper_id(pepper_key), pepper_key)},
    )


def service_env(settings: Settings, options: RevocationSettings, listen: str) -> dict[str, str]:
    """The environment for a revocation service run as its own process."""
    extra = {
        "TOKENRY_DEV": "1",
        "TOKENRY_REVOCATION_LISTEN": listen,
        "TOKENRY_HEARTBEAT_INTERVAL": str(options.heartbeat_interval),
        "TOKENRY_PUBLISHER_LEASE_TTL": str(options.lease_ttl),
        "TOKENRY_SWEEP_INTERVAL": str(options.sweep_interval),
        "TOKENRY_LOG_LEVEL": "WARNING",
    }
    return process_env(settings, extra)


def spawn_revocation(
    settings: Settings, options: RevocationSettings, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    listen = f"127.0.0.1:{free_tcp_port()}"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tokenry.services.revocation"],
            env=service_env(settings, options, listen),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, listen


def kill(proc: subprocess.Popen[bytes]) -> None:
    """Crash simulation: SIGKILL, no chance to release the lease."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


# --- tokens -------------------------------------------------------------------------------------


async def mint(pool: asyncpg.Pool, settings: Settings, **claims: Any) -> tuple[str, dict[str, Any]]:
    """A JWT access token signed with the real active key (as the issuer signs), with any
    claims overridden — e.g. an exp in the past or an iat right at a watermark."""
    assert settings.kek is not None
    keys = ActiveKeys(KeyStore(pool), settings.kek, settings.access_token_alg)
    await keys.refresh()
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": settings.issuer_url,
        "sub": "demo",
        "aud": "demo-api",
        "exp": now + 600,
        "iat": now,
        "jti": new_jti(),
        "client_id": "demo",
        "scope": "demo.read",
        "gid": new_gid(),
    }
    body.update(claims)
    return keys.current().sign(body), body


# --- waiting and failures -----------------------------------------------------------------------


def oauth_code(err: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str]:
    detail = oauth_error_of(err)
    return err.code(), detail.error if detail is not None else ""


class TcpProxy:
    """A TCP forwarder whose link can be cut: a client behind it is disconnected and cannot
    reconnect until :meth:`resume` (the fault proxy of asyncpg's test_adversity)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._cut = False
        self.port = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._links.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            self._links.discard(writer)
            writer.close()

    def cut(self) -> None:
        self._cut = True
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    def resume(self) -> None:
        self._cut = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

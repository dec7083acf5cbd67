"""Composition root of the revocation service; it also runs the outbox relay and the sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from functools import partial

import asyncpg

from tokenry.bus import codec
from tokenry.bus.nats_conn import connect
from tokenry.bus.relay import OutboxRelay, RelaySettings
from tokenry.core.client_cache import CachedClients
from tokenry.core.clientauth import AssertionContext, assertion_audiences
from tokenry.core.clock import Clock, SystemClock
from tokenry.flows.revocation import OpaqueTokens, RevocationFlow
from tokenry.servicekit.clockskew import (
    DATABASE_CLOCK_SQL,
    ClockSkewGate,
    DatabaseAlignedClock,
)
from tokenry.servicekit.config import Settings
from tokenry.servicekit.errors import guard
from tokenry.servicekit.metrics import (
    OutboxGauges,
    metrics_on,
    observe_nats,
    observe_pool,
    observe_relay,
)
from tokenry.servicekit.server import (
    Closer,
    Ready,
    Service,
    listen,
    new_server,
    set_serving,
)
from tokenry.servicekit.verifier_access import VerifierAccess
from tokenry.services.revocation.clients import CoalescedClients
from tokenry.services.revocation.servicer import RevocationServicer
from tokenry.services.revocation.settings import RevocationSettings
from tokenry.services.revocation.sweeper import Sweeper
from tokenry.store.assertion_jtis import AssertionJtiStore
from tokenry.store.clients import ClientStore
from tokenry.store.db import UNAVAILABLE_ERRORS, create_pool
from tokenry.store.idempotency import IdempotencyStore
from tokenry.store.keys import KeyStore
from tokenry.store.outbox import OutboxStore
from tokenry.store.presented_tokens import JwtTokens, StoreOpaqueTokens
from tokenry.store.revocation_recorder import PgRevocationRecorder
from tokenry.store.revocations import RevocationStore
from tokenry.v1 import revocation_pb2, revocation_pb2_grpc

SERVICE_NAMES = (revocation_pb2.DESCRIPTOR.services_by_name["Revocation"].full_name,)


def build(
    settings: Settings,
    host: str,
    port: int,
    *,
    options: RevocationSettings | None = None,
    clock: Clock | None = None,
    opaque: OpaqueTokens | None = None,
) -> Service:
    """The service; ``options`` default to ``TOKENRY_*`` variables (see settings.py)."""
    options = options or RevocationSettings.from_env()
    clock = clock or SystemClock()
    ready: Ready[RevocationFlow] = Ready()
    # Errors map to statuses through guard() (no per-call interceptor, docs/design.md §7).
    server, health = new_server(SERVICE_NAMES, tls=settings.tls)
    revocation_pb2_grpc.add_RevocationServicer_to_server(
        guard(
            RevocationServicer(ready, VerifierAccess.from_env(os.environ, dev=settings.dev)),
            UNAVAILABLE_ERRORS,
        ),
        server,
    )
    bound = listen(server, host, port, settings.tls)
    closers: list[Closer] = []

    async def startup(stop: asyncio.Event) -> None:
        # Fail fast while PostgreSQL is down (docs/spec.md §7): a call never waits for a connection
        # longer than this; the client retries.
        pool = await create_pool(settings.database_url, command_timeout=5.0)
        closers.append(pool.close)
        if metrics_on():
            observe_pool(pool)
        store = RevocationStore(pool)
        # Watermarks and event times on PostgreSQL's clock, not this host's: a revocation
        # service running slow would set a subject watermark in the past (servicekit.clockskew).
        database_time = ClockSkewGate(
            read_database_clock=partial(pool.fetchval, DATABASE_CLOCK_SQL),
            clock=clock,
            max_skew=float("inf"),  # measure only: revoking never stops for a clock
        )
        with contextlib.suppress(Exception):
            await database_time.measure()
        aligned = DatabaseAlignedClock(clock, database_time)
        fresh_clients = CoalescedClients(ClientStore(pool))
        ready.set(
            RevocationFlow(
                clients=fresh_clients,
                cached_clients=CachedClients(fresh_clients, clock),
                peppers=settings.peppers,
                recorder=PgRevocationRecorder(
                    store, partial(codec.revocation_event, settings.subjects), aligned
                ),
                clock=aligned,
                jwts=JwtTokens(KeyStore(pool), clock),
                opaque=opaque or StoreOpaqueTokens(pool),
                max_clock_skew=options.max_clock_skew,
                # private_key_jwt (RFC 7523), replay-protected in the issuer's jti store.
                assertions=AssertionContext(
                    audiences=assertion_audiences(settings.issuer_url),
                    clock=clock,
                    replay=AssertionJtiStore(pool, clock),
                ),
            )
        )
        # Revoking works from here on, NATS or not (docs/spec.md §4.5): the relay delivers later.
        await set_serving(health, SERVICE_NAMES, serving=True)
        sweeper = Sweeper(
            revocations=store,
            outbox=OutboxStore(pool),
            clock=clock,
            outbox_max_age=settings.stream.max_age,
            interval=options.sweep_interval,
            idempotency=IdempotencyStore(pool),
        )
        tasks = [
            asyncio.create_task(sweeper.run(stop), name="revocation-sweeper"),
            asyncio.create_task(database_time.run(stop), name="revocation-database-time"),
        ]
        if metrics_on():  # the outbox backlog and its oldest event's age, from PostgreSQL
            gauges = OutboxGauges(pool)
            tasks.append(asyncio.create_task(gauges.run(stop), name="outbox-gauges"))
        if options.relay:
            tasks.append(asyncio.create_task(_relay(settings, options, pool, clock, stop)))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    return Service("revocation", server, bound, health, startup, closers)


async def _relay(
    settings: Settings,
    options: RevocationSettings,
    pool: asyncpg.Pool,
    clock: Clock,
    stop: asyncio.Event,
) -> None:
    nc = await connect(
        settings.nats_url, name="tokenry-revocation", tls=settings.tls.nats_context()
    )
    if metrics_on():
        observe_nats(nc, "relay")
    try:
        relay = OutboxRelay(
            pool=pool,
            nc=nc,
            subjects=settings.subjects,
            stream=settings.stream,
            # Unique per relay, even for several services in one process (tests).
            holder=f"revocation:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            clock=clock,
            settings=RelaySettings(
                heartbeat_interval=options.heartbeat_interval, lease_ttl=options.lease_ttl
            ),
        )
        if metrics_on():
            observe_relay(relay)
        await relay.run(stop)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()

"""Composition root of the introspector (holds no signing keys: it verifies, never signs)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from nats.aio.msg import Msg

from tokenry.bus.nats_conn import connect
from tokenry.core.client_cache import CachedClients
from tokenry.core.clientauth import (
    AssertionContext,
    ProvenSecrets,
    assertion_audiences,
)
from tokenry.core.clock import Clock, SystemClock
from tokenry.jose import JwksCache
from tokenry.servicekit.config import Settings
from tokenry.servicekit.errors import guard
from tokenry.servicekit.metrics import metrics_on, observe_cache, observe_nats, observe_pool
from tokenry.servicekit.server import (
    Closer,
    Ready,
    Service,
    listen,
    new_server,
    set_serving,
)
from tokenry.services.introspector.cache import PositiveCache
from tokenry.services.introspector.handlers import IntrospectorHandlers
from tokenry.services.introspector.invalidation import CacheInvalidator
from tokenry.services.introspector.servicer import IntrospectorServicer
from tokenry.store.assertion_jtis import AssertionJtiStore
from tokenry.store.clients import ClientStore
from tokenry.store.db import UNAVAILABLE_ERRORS, create_pool
from tokenry.store.introspection import BatchedOpaqueRecords, StoreRevocationCheck
from tokenry.store.jwks_source import StoreJwksSource
from tokenry.store.keys import KeyStore
from tokenry.store.outbox_feed import AppliedSeq, OutboxFeed, OutboxFeedSettings
from tokenry.store.revocation_checks import RevocationChecks
from tokenry.v1 import introspector_pb2, introspector_pb2_grpc

log = logging.getLogger(__name__)
SERVICE_NAMES = (introspector_pb2.DESCRIPTOR.services_by_name["Introspector"].full_name,)
KEY_REFRESH_INTERVAL = 2.0  # a revoked or retired key stops verifying within this


def _on_nats_event(invalidator: CacheInvalidator) -> Any:
    async def on_event(msg: Msg) -> None:
        invalidator.event(msg.subject, msg.data)

    return on_event


@dataclass(frozen=True, slots=True)
class IntrospectorOptions:
    """Tuning of the introspector beyond the shared settings."""

    #: a cached positive answer is re-checked against PostgreSQL after this many seconds, so
    #: a revocation whose NOTIFY and NATS event were both lost flips the answer within it
    cache_max_age: float = 5.0
    cache_size: int = 50_000
    #: the outbox feed's LISTEN connection (default: the database URL). LISTEN needs a session
    #: of its own: point this at PostgreSQL directly when the pool goes through a
    #: transaction-pooling proxy such as PgBouncer.
    listen_url: str | None = None
    feed: OutboxFeedSettings = field(default_factory=OutboxFeedSettings)


def build(
    settings: Settings,
    host: str,
    port: int,
    clock: Clock | None = None,
    options: IntrospectorOptions | None = None,
    *,
    applied: AppliedSeq | None = None,
) -> Service:
    """The introspector. ``applied`` (optional) follows the outbox seq up to which the caches
    have been invalidated from PostgreSQL, so a caller can await it."""
    clock = clock or SystemClock()
    options = options or IntrospectorOptions()
    applied = applied or AppliedSeq()
    listen_url = options.listen_url or settings.database_url
    ready: Ready[IntrospectorHandlers] = Ready()
    server, health = new_server(SERVICE_NAMES, tls=settings.tls)
    introspector_pb2_grpc.add_IntrospectorServicer_to_server(
        guard(IntrospectorServicer(ready, UNAVAILABLE_ERRORS), UNAVAILABLE_ERRORS), server
    )
    bound = listen(server, host, port, settings.tls)
    closers: list[Closer] = []

    async def startup(stop: asyncio.Event) -> None:
        pool = await create_pool(settings.database_url)
        closers.append(pool.close)
        if metrics_on():
            observe_pool(pool)
        jwks = JwksCache(StoreJwksSource(KeyStore(pool)), clock)
        await jwks.refresh(force=True)
        cache = PositiveCache(clock, size=options.cache_size, max_age=options.cache_max_age)
        if metrics_on():  # the introspection cache hit ratio (issue 15)
            observe_cache(cache, "tokenry.introspector.cache")
        clients = CachedClients(ClientStore(pool), clock)
        records = BatchedOpaqueRecords(pool, settings.issuer_url)
        closers.append(records.close)  # closers run in reverse: before the pool closes
        ready.set(
            IntrospectorHandlers(
                clients=clients,
                peppers=settings.peppers,
                opaque=records,
                revocations=StoreRevocationCheck(RevocationChecks(pool)),
                keys=jwks,
                issuer_url=settings.issuer_url,
                clock=clock,
                cache=cache,
                # private_key_jwt (RFC 7523), replay-protected in the issuer's jti store.
                assertions=AssertionContext(
                    audiences=assertion_audiences(settings.issuer_url),
                    clock=clock,
                    replay=AssertionJtiStore(pool, clock),
                ),
                proven=ProvenSecrets(),
            )
        )
        invalidator = CacheInvalidator(settings.subjects.prefix, cache, clients, jwks)
        # Invalidation from PostgreSQL: NOTIFY at commit, then the new outbox rows; no NATS
        # needed. Its first connection clears the cache (the epoch keeps out lookups that
        # overlapped), so answers cached before the feed was listening cannot outlive it.
        feed = OutboxFeed(
            functools.partial(_connect_listener, listen_url),
            invalidator,
            applied=applied,
            settings=options.feed,
        )
        feed_task = asyncio.create_task(feed.run(stop), name="introspector-outbox-feed")
        try:
            # Introspection works from here on, NATS or not; events only invalidate the
            # cache sooner than its age bound (docs/spec.md §4.5).
            await set_serving(health, SERVICE_NAMES, serving=True)
            nc = await connect(
                settings.nats_url, name="tokenry-introspector", tls=settings.tls.nats_context()
            )
            closers.append(nc.close)
            if metrics_on():
                observe_nats(nc, "events")
            # The same events through NATS: the backstop while the feed's link is down.
            await nc.subscribe(settings.subjects.events, cb=_on_nats_event(invalidator))
            while not stop.is_set():
                await jwks.refresh(force=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), KEY_REFRESH_INTERVAL)
        finally:
            feed_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed_task

    return Service("introspector", server, bound, health, startup, closers)


async def _connect_listener(dsn: str) -> asyncpg.Connection:
    # The feed bounds the attempt itself (OutboxFeedSettings.timeout).
    return await asyncpg.connect(dsn)

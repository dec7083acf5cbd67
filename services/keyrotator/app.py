"""Composition root of the key rotator: the RPCs, the leader-elected schedule, the outbox relay."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket

from tokenry.bus.nats_conn import connect
from tokenry.bus.relay import OutboxRelay
from tokenry.core.clientauth import AssertionContext, assertion_audiences
from tokenry.core.clock import SystemClock
from tokenry.servicekit.config import Settings
from tokenry.servicekit.errors import guard
from tokenry.servicekit.metrics import (
    KeyGauges,
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
from tokenry.services.keyrotator import config as rotator_config
from tokenry.services.keyrotator.config import RotatorConfig
from tokenry.services.keyrotator.handlers import KeyRotatorHandlers
from tokenry.services.keyrotator.leader import RotationLeader
from tokenry.services.keyrotator.servicer import KeyRotatorServicer
from tokenry.store.assertion_jtis import AssertionJtiStore
from tokenry.store.clients import ClientStore
from tokenry.store.db import UNAVAILABLE_ERRORS, create_pool
from tokenry.store.idempotency import IdempotencyStore
from tokenry.store.keys import KeyStore
from tokenry.store.leases import LeaseStore
from tokenry.v1 import keyrotator_pb2, keyrotator_pb2_grpc

log = logging.getLogger(__name__)
SERVICE_NAMES = (keyrotator_pb2.DESCRIPTOR.services_by_name["KeyRotator"].full_name,)


def build(
    settings: Settings, host: str, port: int, *, config: RotatorConfig | None = None
) -> Service:
    """The key rotator; ``config`` defaults to the ``TOKENRY_KEY_*`` environment (config.py)."""
    cfg = config or rotator_config.load(os.environ, settings)
    for problem in cfg.warnings:
        log.warning("DEV MODE: unsafe key timing tolerated: %s", problem)
    clock = SystemClock()
    # Unique per instance, so that two rotators in one process are two candidates.
    holder = f"keyrotator:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    ready: Ready[KeyRotatorHandlers] = Ready()
    unavailable = UNAVAILABLE_ERRORS
    server, health = new_server(SERVICE_NAMES, tls=settings.tls)
    keyrotator_pb2_grpc.add_KeyRotatorServicer_to_server(
        guard(
            KeyRotatorServicer(ready, VerifierAccess.from_env(os.environ, dev=settings.dev)),
            unavailable,
        ),
        server,
    )
    bound = listen(server, host, port, settings.tls)
    closers: list[Closer] = []

    async def startup(stop: asyncio.Event) -> None:
        pool = await create_pool(settings.database_url)
        closers.append(pool.close)
        if metrics_on():
            observe_pool(pool)
        handlers = KeyRotatorHandlers(
            keys=KeyStore(pool),
            config=cfg,
            subjects=settings.subjects,
            clock=clock,
            clients=ClientStore(pool),
            peppers=settings.peppers,
            idempotency=IdempotencyStore(pool),
            assertions=AssertionContext(
                audiences=assertion_audiences(settings.issuer_url),
                clock=clock,
                replay=AssertionJtiStore(pool, clock),
            ),
        )
        ready.set(handlers)
        leader = RotationLeader(
            handlers=handlers,
            leases=LeaseStore(pool),
            holder=holder,
            clock=clock,
            lease_ttl=cfg.lease_ttl,
        )
        # A replica that gets the lease at once creates the first keys before it reports
        # SERVING, so a fresh deployment's issuers find an active key right away.
        try:
            for _ in range(8):
                if await leader.step() > 0:
                    break
        except Exception as exc:
            log.warning("first key rotator step failed: %s; the loop retries", type(exc).__name__)

        async def relay(stop: asyncio.Event) -> None:
            nc = await connect(
                settings.nats_url, name="tokenry-keyrotator", tls=settings.tls.nats_context()
            )
            closers.append(nc.close)
            if metrics_on():
                observe_nats(nc, "relay")
            publisher = OutboxRelay(
                pool=pool,
                nc=nc,
                subjects=settings.subjects,
                stream=settings.stream,
                holder=holder,
                clock=clock,
            )
            if metrics_on():
                observe_relay(publisher)
            await publisher.run(stop)

        await set_serving(health, SERVICE_NAMES, serving=True)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(leader.run(stop), name="keyrotator-leader")
            tasks.create_task(relay(stop), name="keyrotator-relay")
            if metrics_on():  # key ages and the rotation schedule (the overdue alert)
                gauges = KeyGauges(handlers, clock.now)
                tasks.create_task(gauges.run(stop), name="keyrotator-key-gauges")

    return Service("keyrotator", server, bound, health, startup, closers)


__all__ = ["SERVICE_NAMES", "build"]

"""Composition root of the revocation service; it also runs the outbox relay."""

from __future__ import annotations

import asyncio
import os
import socket

from tokenry.bus.nats_conn import connect
from tokenry.bus.relay import OutboxRelay
from tokenry.core.clock import SystemClock
from tokenry.servicekit.config import Settings
from tokenry.servicekit.server import Closer, Ready, Service, new_server, set_serving
from tokenry.services.revocation.handlers import RevocationHandlers
from tokenry.services.revocation.servicer import RevocationServicer
from tokenry.store.clients import ClientStore
from tokenry.store.db import UNAVAILABLE_ERRORS, create_pool
from tokenry.store.revocations import RevocationStore
from tokenry.v1 import revocation_pb2, revocation_pb2_grpc

SERVICE_NAMES = (revocation_pb2.DESCRIPTOR.services_by_name["Revocation"].full_name,)


def build(settings: Settings, host: str, port: int) -> Service:
    clock = SystemClock()
    ready: Ready[RevocationHandlers] = Ready()
    server, health = new_server(SERVICE_NAMES, unavailable=UNAVAILABLE_ERRORS)
    revocation_pb2_grpc.add_RevocationServicer_to_server(RevocationServicer(ready), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    closers: list[Closer] = []

    async def startup(stop: asyncio.Event) -> None:
        pool = await create_pool(settings.database_url)
        closers.append(pool.close)
        ready.set(
            RevocationHandlers(
                clients=ClientStore(pool),
                peppers=settings.peppers,
                store=RevocationStore(pool),
                subjects=settings.subjects,
                clock=clock,
            )
        )
        # Revoking works from here on, NATS or not (SPEC §4.5): the relay delivers later.
        await set_serving(health, SERVICE_NAMES, serving=True)
        nc = await connect(settings.nats_url, name="tokenry-revocation")
        closers.append(nc.close)
        relay = OutboxRelay(
            pool=pool,
            nc=nc,
            subjects=settings.subjects,
            stream=settings.stream,
            holder=f"revocation:{socket.gethostname()}:{os.getpid()}",
            clock=clock,
        )
        await relay.run(stop)

    return Service("revocation", server, bound, health, startup, closers)

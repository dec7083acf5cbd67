"""Composition root of the key rotator."""

from __future__ import annotations

import asyncio
import os
import socket

from tokenry.bus.nats_conn import connect
from tokenry.bus.relay import OutboxRelay
from tokenry.core.clock import SystemClock
from tokenry.servicekit.config import Settings
from tokenry.servicekit.server import Closer, Ready, Service, new_server, set_serving
from tokenry.services.keyrotator.handlers import KeyRotatorHandlers
from tokenry.services.keyrotator.servicer import KeyRotatorServicer
from tokenry.store.db import UNAVAILABLE_ERRORS, create_pool
from tokenry.store.keys import KeyStore
from tokenry.v1 import keyrotator_pb2, keyrotator_pb2_grpc

SERVICE_NAMES = (keyrotator_pb2.DESCRIPTOR.services_by_name["KeyRotator"].full_name,)


def build(settings: Settings, host: str, port: int) -> Service:
    if settings.kek is None:
        raise ValueError("the key rotator needs TOKENRY_KEK")
    kek = settings.kek
    clock = SystemClock()
    ready: Ready[KeyRotatorHandlers] = Ready()
    server, health = new_server(SERVICE_NAMES, unavailable=UNAVAILABLE_ERRORS)
    keyrotator_pb2_grpc.add_KeyRotatorServicer_to_server(KeyRotatorServicer(ready), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    closers: list[Closer] = []

    async def startup(stop: asyncio.Event) -> None:
        pool = await create_pool(settings.database_url)
        closers.append(pool.close)
        handlers = KeyRotatorHandlers(
            keys=KeyStore(pool),
            kek=kek,
            subjects=settings.subjects,
            clock=clock,
            alg=settings.access_token_alg,
        )
        await handlers.ensure_active_key()
        ready.set(handlers)
        nc = await connect(settings.nats_url, name="tokenry-keyrotator")
        closers.append(nc.close)
        relay = OutboxRelay(
            pool=pool,
            nc=nc,
            subjects=settings.subjects,
            stream=settings.stream,
            holder=f"keyrotator:{socket.gethostname()}:{os.getpid()}",
            clock=clock,
        )
        await set_serving(health, SERVICE_NAMES, serving=True)
        await relay.run(stop)

    return Service("keyrotator", server, bound, health, startup, closers)

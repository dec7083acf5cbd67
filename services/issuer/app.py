"""Composition root of the issuer."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tokenry.core.clock import SystemClock
from tokenry.servicekit.config import Settings
from tokenry.servicekit.server import Closer, Ready, Service, new_server, set_serving
from tokenry.services.issuer.handlers import IssuerHandlers
from tokenry.services.issuer.servicer import IssuerServicer
from tokenry.store.active_key import ActiveKeys
from tokenry.store.clients import ClientStore
from tokenry.store.db import UNAVAILABLE_ERRORS, create_pool
from tokenry.store.keys import KeyStore
from tokenry.v1 import issuer_pb2, issuer_pb2_grpc

log = logging.getLogger(__name__)
SERVICE_NAMES = (issuer_pb2.DESCRIPTOR.services_by_name["Issuer"].full_name,)
KEY_CHECK_INTERVAL = 5.0  # backup for the key events (SPEC §5)


def build(settings: Settings, host: str, port: int) -> Service:
    if settings.kek is None:
        raise ValueError("the issuer needs TOKENRY_KEK to open the active signing key")
    kek = settings.kek
    ready: Ready[IssuerHandlers] = Ready()
    server, health = new_server(SERVICE_NAMES, unavailable=UNAVAILABLE_ERRORS)
    issuer_pb2_grpc.add_IssuerServicer_to_server(IssuerServicer(ready), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    closers: list[Closer] = []

    async def startup(stop: asyncio.Event) -> None:
        pool = await create_pool(settings.database_url)
        closers.append(pool.close)
        keys = ActiveKeys(KeyStore(pool), kek, settings.access_token_alg)
        ready.set(
            IssuerHandlers(
                clients=ClientStore(pool),
                peppers=settings.peppers,
                keys=keys,
                issuer_url=settings.issuer_url,
                clock=SystemClock(),
            )
        )
        serving = False
        while not stop.is_set():
            try:
                await keys.refresh()
            except Exception as exc:
                log.warning("active key check failed: %s", type(exc).__name__)
            if not serving:
                with contextlib.suppress(Exception):
                    keys.current()
                    await set_serving(health, SERVICE_NAMES, serving=True)
                    serving = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), KEY_CHECK_INTERVAL if serving else 0.5)

    return Service("issuer", server, bound, health, startup, closers)

"""Wiring a verifier to Tokenry: JWKS from the key rotator, revocations from NATS."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import grpc
from nats.aio.client import Client as NatsClient

from tokenry.bus.codec import Subjects
from tokenry.bus.nats_conn import connect
from tokenry.core.clock import Clock, SystemClock
from tokenry.verifier.jwks import GrpcJwksSource, JwksCache
from tokenry.verifier.state import DEFAULT_STALENESS_BUDGET, RevocationState
from tokenry.verifier.sync import EventSubscriber
from tokenry.verifier.verifier import Verifier, VerifierConfig

SWEEP_INTERVAL = 60.0


@dataclass
class VerifierRuntime:
    """A running verifier and what feeds it; ``await runtime.close()`` when done."""

    verifier: Verifier
    state: RevocationState
    jwks: JwksCache
    _channel: grpc.aio.Channel
    _nc: NatsClient
    _subscriber: EventSubscriber
    _sweeper: asyncio.Task[None]

    async def close(self) -> None:
        self._sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sweeper
        await self._subscriber.close()
        await self.jwks.close()
        await self._nc.close()
        await self._channel.close()


async def start_verifier(
    *,
    issuer: str,
    audience: str,
    keyrotator_addr: str,
    nats_url: str,
    subjects: Subjects | None = None,
    stream: str = "TOKENRY_EVENTS",
    staleness_budget: float = DEFAULT_STALENESS_BUDGET,
    clock: Clock | None = None,
) -> VerifierRuntime:
    """Start a verifier for ``audience`` that trusts ``issuer``.

    Returns once subscribed; tokens are accepted from the first heartbeat that proves the state
    current (fail closed until then).
    """
    clock = clock or SystemClock()
    subjects = subjects or Subjects()
    channel = grpc.aio.insecure_channel(keyrotator_addr)
    jwks = JwksCache(GrpcJwksSource(channel), clock)
    state = RevocationState(clock, staleness_budget=staleness_budget)
    await jwks.refresh(force=True)
    nc = await connect(nats_url, name=f"tokenry-verifier:{audience}")
    subscriber = EventSubscriber(nc=nc, subjects=subjects, stream=stream, state=state, jwks=jwks)
    await subscriber.start()

    async def sweep() -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            state.sweep()

    verifier = Verifier(VerifierConfig(issuer=issuer, audience=audience), jwks, state, clock)
    return VerifierRuntime(
        verifier, state, jwks, channel, nc, subscriber, asyncio.create_task(sweep())
    )

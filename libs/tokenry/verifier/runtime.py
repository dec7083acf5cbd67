"""Wiring a verifier to Tokenry: JWKS from the key rotator, revocations from a snapshot of the
revocation service plus the NATS event stream (SPEC §4.3)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import grpc
from nats.aio.client import Client as NatsClient

from tokenry.bus.codec import Subjects
from tokenry.bus.consumer import JetStreamEvents
from tokenry.bus.nats_conn import connect
from tokenry.core.clock import Clock, SystemClock
from tokenry.verifier.introspection import Introspector
from tokenry.verifier.jwks import GrpcJwksSource, JwksCache, JwksSource
from tokenry.verifier.state import DEFAULT_STALENESS_BUDGET, RevocationState
from tokenry.verifier.sync import EventSubscriber, GrpcSnapshotSource, SyncSettings
from tokenry.verifier.verifier import Verifier, VerifierConfig

SWEEP_INTERVAL = 60.0


@dataclass
class VerifierRuntime:
    """A running verifier and what feeds it; ``await runtime.close()`` when done."""

    verifier: Verifier
    state: RevocationState
    jwks: JwksCache
    subscriber: EventSubscriber
    _channels: list[grpc.aio.Channel]
    _nc: NatsClient
    _sweeper: asyncio.Task[None]
    _closed: bool = field(default=False)

    @property
    def nats_connected(self) -> bool:
        """Whether the NATS connection is up (it reconnects by itself; for health checks)."""
        return bool(self._nc.is_connected)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sweeper
        await self.subscriber.close()
        await self.jwks.close()
        with contextlib.suppress(Exception):
            await self._nc.close()
        for channel in self._channels:
            await channel.close()


async def start_verifier(
    *,
    issuer: str,
    audience: str,
    keyrotator_addr: str | None = None,
    nats_url: str,
    subjects: Subjects | None = None,
    stream: str = "TOKENRY_EVENTS",
    staleness_budget: float = DEFAULT_STALENESS_BUDGET,
    clock: Clock | None = None,
    revocation_addr: str | None = None,
    sync: SyncSettings | None = None,
    config: VerifierConfig | None = None,
    introspector: Introspector | None = None,
    jwks_source: JwksSource | None = None,
) -> VerifierRuntime:
    """Start a verifier for ``audience`` that trusts ``issuer``.

    With ``revocation_addr`` (recommended) the verifier bootstraps from the revocation
    service's snapshot and is current as soon as this returns; it can also repair any loss of
    events by a new snapshot. Without it, it replays the event stream from its beginning and
    accepts tokens from the first heartbeat that proves its state current (fail closed until
    then). Either way it returns once subscribed, retrying its dependencies until then.

    Args:
        revocation_addr: the revocation service (host:port), for snapshots.
        sync: gap/lag/snapshot tuning (see :class:`~.sync.SyncSettings`).
        config: overrides ``issuer``/``audience`` and sets limits (leeway, cache size…).
        introspector: enables the introspection fallback while stale (``StalePolicy``).
        jwks_source: where keys come from instead of the key rotator at ``keyrotator_addr``
            (one of the two is required).
    """
    clock = clock or SystemClock()
    subjects = subjects or Subjects()
    channels: list[grpc.aio.Channel] = []
    if jwks_source is None:
        if keyrotator_addr is None:
            raise ValueError("give keyrotator_addr or jwks_source")
        channels.append(grpc.aio.insecure_channel(keyrotator_addr))
        jwks_source = GrpcJwksSource(channels[0])
    jwks = JwksCache(jwks_source, clock)
    state = RevocationState(clock, staleness_budget=staleness_budget)
    snapshots = None
    if revocation_addr is not None:
        channels.append(grpc.aio.insecure_channel(revocation_addr))
        snapshots = GrpcSnapshotSource(channels[-1])
    subscriber: list[EventSubscriber] = []

    async def reconnected() -> None:
        for sub in subscriber:
            sub.notify_reconnected()

    nc = await connect(nats_url, name=f"tokenry-verifier:{audience}", reconnected=reconnected)
    subscriber.append(
        EventSubscriber(
            events=JetStreamEvents(nc, subjects, stream),
            state=state,
            jwks=jwks,
            snapshots=snapshots,
            clock=clock,
            settings=sync,
        )
    )
    try:
        await subscriber[0].start()
    except BaseException:
        await subscriber[0].close()
        await nc.close()
        for channel in channels:
            await channel.close()
        raise

    async def sweep() -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            state.sweep()

    config = config or VerifierConfig(issuer=issuer, audience=audience)
    verifier = Verifier(config, jwks, state, clock, introspector=introspector)
    return VerifierRuntime(
        verifier, state, jwks, subscriber[0], channels, nc, asyncio.create_task(sweep())
    )

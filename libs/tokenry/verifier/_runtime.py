"""Wiring a verifier to Tokenry: JWKS from the key rotator, revocations from a snapshot of the
revocation service plus the NATS event stream (docs/spec.md §4.3)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from nats.aio.client import Client as NatsClient

from tokenry.bus.codec import Subjects
from tokenry.bus.consumer import JetStreamEvents
from tokenry.bus.nats_conn import connect
from tokenry.core.clock import Clock, SystemClock
from tokenry.jose import JwksCache, JwksSource
from tokenry.tls import ClientTls
from tokenry.verifier._control_auth import ControlPlaneAuth, control_plane_interceptors
from tokenry.verifier._feed import EventSubscriber, SyncSettings
from tokenry.verifier._introspection import Introspector
from tokenry.verifier._jwks import GrpcJwksSource
from tokenry.verifier._snapshot import GrpcSnapshotSource
from tokenry.verifier._state import DEFAULT_STALENESS_BUDGET, RevocationState
from tokenry.verifier._verifier import Verifier, VerifierConfig

SWEEP_INTERVAL = 60.0
# gRPC's default reconnect backoff grows to 120 s: a verifier whose snapshot source or key
# rotator was down would reopen up to minutes after they came back. Its calls are rare and
# cheap, so retry the connection briskly (capped at 2 s, well inside the staleness budget).
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
)


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
    _watchers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def nats_connected(self) -> bool:
        """Whether the NATS connection is up (it reconnects by itself; for health checks)."""
        return bool(self._nc.is_connected)

    def watch_staleness(
        self,
        on_change: Callable[[bool], Awaitable[None] | None],
        *,
        interval: float = 0.25,
    ) -> None:
        """Opt-in: call ``on_change(stale)`` now and whenever staleness flips (docs/spec.md §4.4).

        Typical use: set this host's grpc.health to NOT_SERVING while stale, so that load
        balancers route around a verifier that would answer UNAVAILABLE anyway::

            async def report(stale: bool) -> None:
                status = NOT_SERVING if stale else SERVING
                await health.set("", status)

            runtime.watch_staleness(report)
        """

        async def watch() -> None:
            last: bool | None = None
            while True:
                stale = self.state.is_stale()
                if stale != last:
                    last = stale
                    result = on_change(stale)
                    if inspect.isawaitable(result):
                        await result
                await asyncio.sleep(interval)

        self._watchers.append(asyncio.create_task(watch(), name="verifier-staleness"))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in (self._sweeper, *self._watchers):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.subscriber.close()
        await self.jwks.close()
        with contextlib.suppress(Exception):
            await self._nc.close()
        for channel in self._channels:
            await channel.close()


def resolve_channel_options(
    given: Sequence[tuple[str, Any]] | None,
) -> tuple[tuple[str, Any], ...]:
    """start_verifier's ``channel_options``: None means :data:`CHANNEL_OPTIONS`; anything else,
    ``()`` included (gRPC's defaults), is used as given."""
    if given is None:
        return CHANNEL_OPTIONS
    options = tuple(given)
    for option in options:
        if not (isinstance(option, tuple) and len(option) == 2 and isinstance(option[0], str)):
            raise ValueError(f"channel_options: expected (name, value) pairs, got {option!r}")
    return options


def _channel(
    addr: str,
    credentials: grpc.ChannelCredentials | ClientTls | None,
    auth: ControlPlaneAuth | None,
    options: Sequence[tuple[str, Any]],
) -> grpc.aio.Channel:
    interceptors = control_plane_interceptors(auth)
    if isinstance(credentials, ClientTls):  # files: follow their rotation (tokenry.tls_reload)
        return credentials.reloading_channel(addr, options=list(options), interceptors=interceptors)
    if credentials is None:
        return grpc.aio.insecure_channel(addr, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(addr, credentials, options=options, interceptors=interceptors)


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
    channel_credentials: grpc.ChannelCredentials | None = None,
    channel_tls: ClientTls | None = None,
    nats_tls: ssl.SSLContext | None = None,
    client_auth: ControlPlaneAuth | None = None,
    channel_options: Sequence[tuple[str, Any]] | None = None,
) -> VerifierRuntime:
    """Start a verifier for ``audience`` that trusts ``issuer``.

    The verifier bootstraps from the revocation service's snapshot and is current as soon as
    this returns; it repairs any loss of events by a new snapshot, and proves it is current by
    asking the same service for the committed head (docs/spec.md §4.4). It returns once subscribed,
    retrying its dependencies until then.

    Args:
        revocation_addr: the revocation service (host:port), for snapshots and head questions.
            Required: without it this raises ValueError.
        sync: gap/lag/snapshot tuning (see :class:`~tokenry.verifier.FeedSettings`).
        config: overrides ``issuer``/``audience`` and sets limits (leeway, cache size…).
        introspector: enables the introspection fallback while stale (``StalePolicy``).
        jwks_source: where keys come from instead of the key rotator at ``keyrotator_addr``
            (one of the two is required).
        channel_credentials: TLS (and for mTLS the verifier's client certificate) towards the
            key rotator and the revocation service, e.g. ``grpc.ssl_channel_credentials(...)``
            or ``tokenry.tls.ClientTls(...).channel_credentials()``; None: plaintext. These
            keep the certificate they were built with: after a rotation, the next reconnect
            (at the services' maximum connection age) presents the old, maybe expired, one.
        channel_tls: instead of ``channel_credentials``, the CA bundle, certificate and key
            as files (``tokenry.tls.ClientTls``): the channels look at the files at most every
            ``check_interval`` seconds and take up a rotation by cert-manager or SPIRE without
            a restart (:mod:`tokenry.tls_reload`; docs/verifier.md).
        nats_tls: the ``ssl.SSLContext`` for NATS over TLS (``ClientTls(...).ssl_context()``).
        client_auth: the verifier's client (holding ``tokenry:verifier``) for the control plane,
            e.g. ``tokenry.client.ClientSecretBasic(id, secret)``; not needed when the mTLS
            certificate of ``channel_credentials`` names an allowed verifier (issue 13 item 3).
        channel_options: gRPC channel arguments for the channels to the key rotator and the
            revocation service; None: :data:`CHANNEL_OPTIONS` (reconnect backoff 0.1-2 s),
            ``()``: gRPC's defaults (backoff up to 120 s; docs/verifier.md).
    """
    if not revocation_addr:
        # The stream is an accelerator, not the record (docs/spec.md §4.1): a verifier that can only
        # replay it cannot repair a loss, and would accept revoked tokens without knowing it.
        raise ValueError("start_verifier needs revocation_addr (the revocation service, host:port)")
    if channel_credentials is not None and channel_tls is not None:
        raise ValueError("give channel_credentials or channel_tls, not both")
    credentials = channel_tls if channel_tls is not None else channel_credentials
    clock = clock or SystemClock()
    subjects = subjects or Subjects()
    options = resolve_channel_options(channel_options)
    channels: list[grpc.aio.Channel] = []
    if jwks_source is None:
        if keyrotator_addr is None:
            raise ValueError("give keyrotator_addr or jwks_source")
        channels.append(_channel(keyrotator_addr, credentials, client_auth, options))
        jwks_source = GrpcJwksSource(channels[0])
    jwks = JwksCache(jwks_source, clock)
    state = RevocationState(clock, staleness_budget=staleness_budget)
    try:
        channels.append(_channel(revocation_addr, credentials, client_auth, options))
    except BaseException:
        # e.g. a ReloadingChannel refusing a half-written rotation: the first channel is ours
        for channel in channels:
            await channel.close()
        raise
    snapshots = GrpcSnapshotSource(channels[-1])
    subscriber: list[EventSubscriber] = []

    async def reconnected() -> None:
        for sub in subscriber:
            sub.notify_reconnected()

    async def disconnected() -> None:
        for sub in subscriber:
            sub.notify_disconnected()

    try:
        nc = await connect(
            nats_url,
            name=f"tokenry-verifier:{audience}",
            reconnected=reconnected,
            disconnected=disconnected,
            tls=nats_tls,
        )
    except BaseException:
        for channel in channels:
            await channel.close()
        raise
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

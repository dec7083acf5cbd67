"""Composition root of the issuer: token endpoint, front channel and client admin API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import asyncpg
from grpc_health.v1.health import aio as health_aio
from nats.aio.client import Client as NatsClient

from tokenry.bus import codec
from tokenry.bus.nats_conn import connect
from tokenry.core.client_cache import CachedClients
from tokenry.core.clientauth import AssertionContext, ProvenSecrets, assertion_audiences
from tokenry.core.clients import ID_TOKEN_ALGS
from tokenry.core.clock import Clock, SystemClock
from tokenry.core.refresh import derivation_key
from tokenry.flows import IssuerDeps, Minter, TokenEndpoint, Watermarks
from tokenry.flows.subject_tokens import PublishedKeys, SubjectTokenVerifier
from tokenry.flows.token_exchange import ExchangeFlow
from tokenry.servicekit import variables as v
from tokenry.servicekit.clockskew import DATABASE_CLOCK_SQL, ClockSkewGate
from tokenry.servicekit.config import Reader, Settings
from tokenry.servicekit.errors import guard
from tokenry.servicekit.metrics import IssuedTokens, metrics_on
from tokenry.servicekit.server import (
    Closer,
    Ready,
    Service,
    listen,
    new_server,
    set_serving,
)
from tokenry.services.issuer.client_admin import ClientAdmin
from tokenry.services.issuer.listener import IssuerListener
from tokenry.services.issuer.servicer import ClientsServicer, IssuerApi, IssuerServicer
from tokenry.store import opaque_tokens
from tokenry.store.active_key import ActiveKeys
from tokenry.store.assertion_jtis import AssertionJtiStore
from tokenry.store.auth_codes import AuthCodeStore
from tokenry.store.clients import ClientStore
from tokenry.store.db import UNAVAILABLE_ERRORS, create_pool
from tokenry.store.grants import GrantStore
from tokenry.store.idempotency import IdempotencyStore
from tokenry.store.keys import KeyStore
from tokenry.store.postgres import PgRevocationLog, PgStorage
from tokenry.store.revocation_checks import RevocationChecks
from tokenry.store.revocations import RevocationStore
from tokenry.v1 import clients_pb2, clients_pb2_grpc, issuer_pb2, issuer_pb2_grpc

log = logging.getLogger(__name__)
SERVICE_NAMES = (
    issuer_pb2.DESCRIPTOR.services_by_name["Issuer"].full_name,
    clients_pb2.DESCRIPTOR.services_by_name["Clients"].full_name,
)
KEY_CHECK_INTERVAL = 5.0  # backup for the key events (docs/spec.md §5)
SWEEP_INTERVAL = 60.0


def build(
    settings: Settings,
    host: str,
    port: int,
    *,
    clock: Clock | None = None,
    max_clock_skew: int | None = None,
) -> Service:
    """The service; ``max_clock_skew`` defaults to ``TOKENRY_MAX_CLOCK_SKEW``."""
    if settings.kek is None:
        raise ValueError("the issuer needs TOKENRY_KEK to open the active signing key")
    kek = settings.kek
    clock = clock or SystemClock()
    skew = _max_clock_skew() if max_clock_skew is None else max_clock_skew
    ready: Ready[IssuerApi] = Ready()
    unavailable = UNAVAILABLE_ERRORS
    server, health = new_server(SERVICE_NAMES, tls=settings.tls)
    issuer_pb2_grpc.add_IssuerServicer_to_server(
        guard(IssuerServicer(ready, unavailable, _issued_tokens()), unavailable), server
    )
    clients_pb2_grpc.add_ClientsServicer_to_server(
        guard(ClientsServicer(ready), unavailable), server
    )
    bound = listen(server, host, port, settings.tls)
    closers: list[Closer] = []

    async def startup(stop: asyncio.Event) -> None:
        pool = await create_pool(settings.database_url)
        closers.append(pool.close)
        serving = _Serving(health)
        gate = await serving.clock_gate(pool, clock, skew)
        key_store = KeyStore(pool)
        # ID tokens: RS256 by default (OIDC Core §15.1), ES256 when a client asks for it.
        keys = ActiveKeys(
            key_store, kek, settings.access_token_alg, id_token_algs=sorted(ID_TOKEN_ALGS)
        )
        client_store = ClientStore(pool)
        cache = CachedClients(client_store, clock)
        watermarks = Watermarks()
        checks = RevocationChecks(pool)
        grants = GrantStore(pool)
        codes = AuthCodeStore(pool)
        jtis = AssertionJtiStore(pool, clock)
        revocations = RevocationStore(pool)
        writer = opaque_tokens.OpaqueTokenWriter(pool)
        closers.append(writer.close)
        storage = PgStorage(pool)
        pepper = next(iter(settings.peppers.values()))
        issuer = settings.issuer_url
        # The flows' ports (tokenry.store.ports), PostgreSQL side.
        deps = IssuerDeps(
            clients=cache,
            peppers=settings.peppers,
            assertions=AssertionContext(
                audiences=assertion_audiences(issuer),
                clock=clock,
                replay=jtis,
            ),
            minter=Minter(issuer=issuer, keys=keys),
            clock=clock,
            watermarks=watermarks,
            access_tokens=writer,
            requests=codes,
            transactions=storage,
            revocations=PgRevocationLog(
                revocations, partial(codec.revocation_event, settings.subjects)
            ),
            refresh_key=derivation_key(pepper.key),
            refresh_grace=settings.refresh_grace,  # TOKENRY_REFRESH_GRACE (docs/flows.md §3)
            proven=ProvenSecrets(),
            mint_gate=gate.check,
        )
        subject_tokens = SubjectTokenVerifier(
            issuer=issuer,
            keys=PublishedKeys(key_store, clock),
            checks=checks,
            tokens=storage,
            clock=clock,
        )
        admin = ClientAdmin(
            store=client_store,
            cache=cache,
            grants=grants,
            revocations=revocations,
            watermarks=watermarks,
            pepper=pepper,
            subjects=settings.subjects,
            clock=clock,
            idempotency=IdempotencyStore(pool),
        )
        ready.set(IssuerApi(TokenEndpoint(deps, ExchangeFlow(deps, subject_tokens)), admin))

        listener = IssuerListener(
            subjects=settings.subjects,
            clients=cache,
            watermarks=watermarks,
            on_key_event=keys.on_key_event,
        )
        nats_task = asyncio.create_task(_listen(settings, listener, closers))
        gate_task = asyncio.create_task(gate.run(stop), name="issuer-clock-skew")
        maintenance = Maintenance(
            refresh_keys=keys.refresh,
            keys=keys,
            watermarks=watermarks,
            checks=checks,
            sweepers=(
                jtis.sweep,
                codes.sweep,
                lambda now: opaque_tokens.sweep(pool, now),
                grants.sweep,
            ),
            clock=clock,
        )
        try:
            await maintenance.run(stop, serving.keys_loaded)
        finally:
            for task in (nats_task, gate_task):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await listener.close()

    return Service("issuer", server, bound, health, startup, closers)


def _issued_tokens() -> IssuedTokens | None:
    """The tokenry.tokens.issued counter when metrics are on (servicekit.main installs the SDK
    before build), else None: nothing counted, nothing paid per token."""
    return IssuedTokens() if metrics_on() else None


def _max_clock_skew() -> int:
    reader = Reader()
    skew = reader.get(v.MAX_CLOCK_SKEW)
    reader.check()
    return skew


class _Serving:
    """SERVING once the signing keys are loaded and while the clock is within the skew."""

    def __init__(self, health: health_aio.HealthServicer) -> None:
        self._health = health
        self._keys = False
        self._clock = False

    async def keys_loaded(self) -> None:
        self._keys = True
        await self._publish()

    async def clock_changed(self, ok: bool) -> None:
        self._clock = ok
        await self._publish()

    async def clock_gate(self, pool: asyncpg.Pool, clock: Clock, max_skew: int) -> ClockSkewGate:
        """The gate against PostgreSQL's clock, with its first verdict (it starts closed)."""
        gate = ClockSkewGate(
            read_database_clock=partial(pool.fetchval, DATABASE_CLOCK_SQL),
            clock=clock,
            max_skew=max_skew,
            on_change=self.clock_changed,
        )
        with contextlib.suppress(Exception):
            await gate.measure()
        return gate

    async def _publish(self) -> None:
        await set_serving(self._health, SERVICE_NAMES, serving=self._keys and self._clock)


async def _listen(settings: Settings, listener: IssuerListener, closers: list[Closer]) -> None:
    """Connect to NATS in the background: issuance never waits for it (events are hints)."""
    nc: NatsClient = await connect(
        settings.nats_url, name="tokenry-issuer", tls=settings.tls.nats_context()
    )
    closers.append(nc.close)
    await listener.start(nc)


class Maintenance:
    """Periodic backups for the events (key check, watermark reload) and the sweeper."""

    def __init__(
        self,
        *,
        refresh_keys: Callable[[], Awaitable[None]],
        keys: ActiveKeys,
        watermarks: Watermarks,
        checks: RevocationChecks,
        sweepers: Sequence[Callable[[int], Awaitable[int]]],
        clock: Clock,
    ) -> None:
        self._refresh_keys = refresh_keys
        self._keys = keys
        self._watermarks = watermarks
        self._checks = checks
        self._sweepers = sweepers
        self._clock = clock
        self._last_sweep = clock.monotonic()

    async def tick(self) -> None:
        await self._refresh_keys()
        now = self._clock.now()
        marks = await self._checks.future_watermarks(int(now))
        self._watermarks.load(((m.kind, m.value, m.not_before) for m in marks), now)
        if self._clock.monotonic() - self._last_sweep > SWEEP_INTERVAL:
            self._last_sweep = self._clock.monotonic()
            for sweep in self._sweepers:
                await sweep(int(now))

    async def run(self, stop: asyncio.Event, on_serving: Callable[[], Awaitable[None]]) -> None:
        serving = False
        while not stop.is_set():
            try:
                await self.tick()
            except Exception as exc:
                log.warning("issuer maintenance failed: %s", type(exc).__name__)
            if not serving:
                with contextlib.suppress(Exception):
                    self._keys.current()
                    await on_serving()
                    serving = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), KEY_CHECK_INTERVAL if serving else 0.5)

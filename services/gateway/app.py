"""Composition root of the HTTP gateway: Starlette on uvicorn (httptools, uvloop when asked).

The gateway runs the issuer's, the introspector's and the revocation service's use cases
(:mod:`tokenry.flows`) in this process, against PostgreSQL: no extra network hop (issue 14).
It follows the outbox from PostgreSQL for client, revocation and key events (no NATS needed).

It holds the key-encryption key, since it mints tokens: the internet-facing gateway then carries
the KEK, like the issuer (docs/gateway.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import uvicorn
from starlette.applications import Starlette

from tokenry.bus import codec
from tokenry.core.client_cache import CachedClients
from tokenry.core.clientauth import (
    AssertionContext,
    ClientLookup,
    ProvenSecrets,
    assertion_audiences,
)
from tokenry.core.clients import ID_TOKEN_ALGS, Client
from tokenry.core.clock import Clock, SystemClock
from tokenry.core.refresh import derivation_key
from tokenry.flows import IssuerDeps, Minter, TokenEndpoint, Watermarks
from tokenry.flows.introspection import IntrospectionFlow
from tokenry.flows.introspection_cache import PositiveCache
from tokenry.flows.revocation import RevocationFlow
from tokenry.flows.subject_tokens import PublishedKeys, SubjectTokenVerifier
from tokenry.flows.token_exchange import ExchangeFlow
from tokenry.jose import JwksCache
from tokenry.servicekit import variables as v
from tokenry.servicekit.clockskew import (
    DATABASE_CLOCK_SQL,
    ClockSkewGate,
    DatabaseAlignedClock,
)
from tokenry.servicekit.config import Reader, Settings
from tokenry.servicekit.httptelemetry import instrument_asgi
from tokenry.servicekit.metrics import count_issued, metrics_on, observe_cache, observe_pool
from tokenry.servicekit.tls import ServerTls
from tokenry.services.gateway.events import GatewayEvents
from tokenry.services.gateway.logout import LogoutApp
from tokenry.services.gateway.metadata import (
    authorization_server_metadata,
    openid_configuration,
)
from tokenry.services.gateway.pages import LoginApp
from tokenry.services.gateway.routes import ApiHolder, FastPath, GatewayApi, Jwks, Routes
from tokenry.services.gateway.sessions import DEFAULT_SESSION_TTL, LoginSessions
from tokenry.services.gateway.users import Authenticator, UserStore
from tokenry.store import opaque_tokens
from tokenry.store.active_key import ActiveKeys
from tokenry.store.assertion_jtis import AssertionJtiStore
from tokenry.store.auth_codes import AuthCodeStore
from tokenry.store.clients import ClientStore
from tokenry.store.db import UNAVAILABLE_ERRORS, create_pool
from tokenry.store.introspection import StoreOpaqueRecords, StoreRevocationCheck
from tokenry.store.jwks_source import StoreJwksSource
from tokenry.store.keys import KeyStore
from tokenry.store.outbox_feed import AppliedSeq, OutboxFeed
from tokenry.store.postgres import PgRevocationLog, PgStorage
from tokenry.store.presented_tokens import JwtTokens
from tokenry.store.presented_tokens import StoreOpaqueTokens as RevocableOpaqueTokens
from tokenry.store.revocation_checks import RevocationChecks
from tokenry.store.revocation_recorder import PgRevocationRecorder
from tokenry.store.revocations import RevocationStore

log = logging.getLogger(__name__)

__all__ = ["Gateway", "GatewayOptions", "build"]

MAINTENANCE_INTERVAL = 5.0  # key and watermark re-read: the backup for the events (docs/spec.md §5)


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    """Tuning beyond the shared settings."""

    #: ``Cache-Control: max-age`` of /.well-known/jwks.json: below the key publish lead, so a
    #: third-party cache sees a pending key before it signs (docs/spec.md §5)
    jwks_max_age: int = int(min(v.DEFAULT_JWKS_CACHE_TTL, v.DEFAULT_PUBLISH_LEAD / 2))
    max_clock_skew: int = 2
    #: the event loop uvicorn runs ("asyncio" or "uvloop")
    loop: str = "asyncio"
    introspection_cache_max_age: float = 5.0
    #: who may sign in on the built-in login page (default: the dev user store file
    #: TOKENRY_GATEWAY_USERS, or nobody)
    users: Authenticator | None = None
    #: an external login app (TOKENRY_LOGIN_URL when None; "" = the built-in pages)
    login_url: str | None = None
    #: how long a sign-in is remembered (seconds; services/gateway/sessions.py)
    session_ttl: int = DEFAULT_SESSION_TTL
    #: the header a trusted proxy in front puts the client's address in (the failure limiters'
    #: and the login throttle's key); None: TOKENRY_TRUSTED_PROXY_HEADER; "": the TCP peer
    trusted_proxy_header: str | None = None
    #: move every object alive once started into the collector's permanent generation
    #: (``gc.freeze``), so no full collection walks them again: the process entry point sets
    #: it; an embedding process (a test) keeps its collector as it is
    freeze_heap: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Gateway:
    """The ASGI app, its bound socket and the uvicorn server that serves it."""

    def __init__(
        self,
        app: FastPath,
        sock: socket.socket,
        loop: str,
        tls: ServerTls | None = None,
        templates: Sequence[str] = (),
    ) -> None:
        self.app = app
        self._sock = sock
        self.port: int = sock.getsockname()[1]
        self._config = uvicorn.Config(
            # per-route metrics and sampled spans (servicekit.httptelemetry; off: app as is)
            instrument_asgi(app, templates),
            http="httptools",
            loop="none",  # the caller's loop (asyncio or uvloop, chosen by the runner)
            lifespan="on",
            access_log=False,
            # uvicorn's own X-Forwarded-* rewriting is off: the limiters' client address is the
            # TCP peer, or TOKENRY_TRUSTED_PROXY_HEADER when set (routes.peer_of). This also
            # drops a middleware from every request.
            proxy_headers=False,
            log_config=None,
            server_header=False,
            date_header=True,
            timeout_graceful_shutdown=5,
            # HTTPS when a certificate is configured (TOKENRY_TLS_CERT/KEY, servicekit.tls).
            ssl_certfile=str(tls.cert) if tls else None,
            ssl_keyfile=str(tls.key) if tls else None,
        )
        self._loop = loop

    async def serve(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set (or SIGINT/SIGTERM, which uvicorn catches in the main
        thread), then finish in-flight requests (graceful, 5 s)."""
        server = uvicorn.Server(self._config)
        task = asyncio.create_task(server.serve(sockets=[self._sock]))
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            server.should_exit = True
            stopping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._sock.close()
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def build(
    settings: Settings,
    host: str,
    port: int,
    *,
    clock: Clock | None = None,
    options: GatewayOptions | None = None,
    applied: AppliedSeq | None = None,
) -> Gateway:
    """The gateway, bound to ``host:port`` (0: a free port; :attr:`Gateway.port` tells which).
    ``applied`` follows the outbox seq the in-process caches have seen (tests await it)."""
    if settings.kek is None:
        raise ValueError("the gateway needs TOKENRY_KEK to open the active signing key")
    clock = clock or SystemClock()
    options = options or GatewayOptions()
    holder = ApiHolder()
    proxy = (
        options.trusted_proxy_header
        if options.trusted_proxy_header is not None
        else _variable(v.TRUSTED_PROXY_HEADER)
    )
    routes = Routes(holder, urlsplit(settings.issuer_url).path, proxy)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        closers: list[Callable[[], Awaitable[None]]] = []
        try:
            pool = await create_pool(settings.database_url)
            closers.append(pool.close)
            api, background = await _compose(
                settings, pool, clock, options, applied=applied, closers=closers
            )
            holder.api = api
            tasks = [asyncio.ensure_future(job(stop)) for job in background]
            if options.freeze_heap:
                _freeze_heap()
            yield
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            for close in reversed(closers):
                with contextlib.suppress(Exception):
                    await close()

    users = options.users or UserStore(_users_file())
    login_url = options.login_url if options.login_url is not None else _login_url()
    # The cookie is Secure on HTTPS requests, and on every request when TLS terminates in front.
    secure = settings.tls.terminated_in_front
    login = LoginApp(holder, users, secure_cookies=secure, login_url=login_url, proxy_header=proxy)
    logout = LogoutApp(holder, login, secure_cookies=secure)
    app = Starlette(routes=[*routes.routes(), *login.routes(), *logout.routes()], lifespan=lifespan)
    # The token, introspection and revocation POSTs skip Starlette's routing and middleware.
    fast = FastPath(app, routes)
    templates = [getattr(r, "path", "") for r in app.routes]  # metrics' route labels
    return Gateway(fast, bind(host, port), options.loop, settings.tls.server, templates)


Job = Callable[[asyncio.Event], Awaitable[None]]


def _freeze_heap() -> None:
    """Keep the ~55,000 start-up objects out of every later full collection (their walk was
    ~45 ms of a pause that stalled every request in flight, docs/benchmarks/gateway.md).
    Frozen objects are still freed by reference counting; one that later turns into cyclic
    garbage leaks once (bounded: start-up only). Garbage is collected first, never frozen."""
    gc.collect()
    gc.freeze()


async def _compose(  # noqa: PLR0915 - the composition root wires every port once
    settings: Settings,
    pool: asyncpg.Pool,
    clock: Clock,
    options: GatewayOptions,
    *,
    applied: AppliedSeq | None,
    closers: list[Callable[[], Awaitable[None]]],
) -> tuple[GatewayApi, list[Job]]:
    assert settings.kek is not None
    issuer = settings.issuer_url
    gate = ClockSkewGate(
        read_database_clock=partial(pool.fetchval, DATABASE_CLOCK_SQL),
        clock=clock,
        max_skew=options.max_clock_skew,
        on_change=_ignore_change,
    )
    with contextlib.suppress(Exception):
        await gate.measure()
    key_store = KeyStore(pool)
    keys = ActiveKeys(
        key_store, settings.kek, settings.access_token_alg, id_token_algs=sorted(ID_TOKEN_ALGS)
    )
    await keys.refresh()
    client_store = _PrintableIds(ClientStore(pool))
    clients = CachedClients(client_store, clock)
    watermarks = Watermarks()
    checks = RevocationChecks(pool)
    jtis = AssertionJtiStore(pool, clock)
    revocations = RevocationStore(pool)
    writer = opaque_tokens.OpaqueTokenWriter(pool)
    closers.append(writer.close)
    storage = PgStorage(pool)
    pepper = next(iter(settings.peppers.values()))
    encode = partial(codec.revocation_event, settings.subjects)
    assertions = AssertionContext(audiences=assertion_audiences(issuer), clock=clock, replay=jtis)
    deps = IssuerDeps(
        clients=clients,
        peppers=settings.peppers,
        assertions=assertions,
        minter=Minter(issuer=issuer, keys=keys),
        clock=clock,
        watermarks=watermarks,
        access_tokens=writer,
        requests=AuthCodeStore(pool),
        transactions=storage,
        revocations=PgRevocationLog(revocations, encode),
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
    token = TokenEndpoint(deps, ExchangeFlow(deps, subject_tokens))

    verification_keys = JwksCache(StoreJwksSource(key_store), clock)
    await verification_keys.refresh(force=True)
    cache = PositiveCache(clock, max_age=options.introspection_cache_max_age)
    reader = opaque_tokens.IntrospectionReader(pool)
    closers.append(reader.close)
    introspection = IntrospectionFlow(
        clients=clients,
        peppers=settings.peppers,
        opaque=StoreOpaqueRecords(reader, issuer),
        revocations=StoreRevocationCheck(checks),
        keys=verification_keys,
        issuer_url=issuer,
        clock=clock,
        cache=cache,
        assertions=assertions,
        proven=ProvenSecrets(),
    )
    if metrics_on():  # the gRPC services' instruments, same names (docs/observability.md)
        observe_pool(pool)
        observe_cache(cache, "tokenry.introspector.cache")
        count_issued(token)
    revocation = RevocationFlow(
        clients=client_store,
        cached_clients=clients,
        peppers=settings.peppers,
        # Watermarks on PostgreSQL's clock (servicekit.clockskew.DatabaseAlignedClock).
        recorder=PgRevocationRecorder(revocations, encode, DatabaseAlignedClock(clock, gate)),
        clock=DatabaseAlignedClock(clock, gate),
        jwts=JwtTokens(key_store, clock),
        opaque=RevocableOpaqueTokens(pool),
        max_clock_skew=options.max_clock_skew,
        assertions=assertions,
    )
    sessions = LoginSessions(pool, clock, options.session_ttl)
    jwks = Jwks(max_age=options.jwks_max_age)
    published, _ = await key_store.published()
    jwks.update(published)
    api = GatewayApi(
        token=token,
        introspection=introspection,
        revocation=revocation,
        jwks=jwks,
        oauth_metadata=_doc(authorization_server_metadata(issuer, settings.access_token_alg)),
        oidc_metadata=_doc(openid_configuration(issuer, settings.access_token_alg)),
        unavailable=UNAVAILABLE_ERRORS,
        clients=clients,
        registered_origin=ClientStore(pool).has_web_origin,
        sessions=sessions,
        keys=verification_keys,
        issuer=issuer,
    )

    async def keys_changed() -> None:
        await keys.refresh()
        await verification_keys.refresh(force=True)
        published, _ = await key_store.published()
        jwks.update(published)

    events = GatewayEvents(
        clients=clients,
        watermarks=watermarks,
        cache=cache,
        jwks=verification_keys,
        on_key_event=keys_changed,
    )
    feed = OutboxFeed(
        functools.partial(asyncpg.connect, settings.database_url),
        events,
        applied=applied or AppliedSeq(),
    )

    async def maintenance(stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), MAINTENANCE_INTERVAL)
            try:
                await keys_changed()
                now = clock.now()
                marks = await checks.future_watermarks(int(now))
                watermarks.load(((w.kind, w.value, w.not_before) for w in marks), now)
                await sessions.sweep()
            except Exception as exc:
                log.warning("gateway maintenance failed: %s", type(exc).__name__)

    return api, [feed.run, gate.run, maintenance]


class _PrintableIds:
    """A client id with a NUL or another control character names no client: PostgreSQL refuses
    NUL in text, so such an id (from a decoded Basic header) must not reach it as a query
    (found by tests/integration/test_gateway_fuzz.py)."""

    def __init__(self, lookup: ClientLookup) -> None:
        self._lookup = lookup

    async def get_client(self, client_id: str) -> Client | None:
        if not client_id.isprintable():
            return None
        return await self._lookup.get_client(client_id)


def _login_url() -> str:
    reader = Reader()
    url = reader.get(v.LOGIN_URL)
    reader.check()
    return url or ""


def _variable(var: v.Var[str]) -> str:
    reader = Reader()
    value = reader.get(var)
    reader.check()
    return value or ""


def _users_file() -> Path | None:
    reader = Reader()
    path = reader.get(v.GATEWAY_USERS)
    reader.check()
    return Path(path) if path else None


async def _ignore_change(ok: bool) -> None:
    if not ok:
        log.warning("gateway: clock off PostgreSQL's by more than the max skew; not minting")


def _doc(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()

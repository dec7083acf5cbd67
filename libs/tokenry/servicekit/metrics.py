"""The services' own metrics (issue 15), through the OpenTelemetry API.

Hot paths count in plain integers, exported through observable instruments read at collection
time (the pattern of the verifier's metrics); values that need a query (the outbox backlog,
key ages) are sampled by a background task every few seconds, and only when metrics are on
(:func:`metrics_on`), so a service without telemetry pays nothing.

Labels stay bounded: no token, jti or subject is ever a label. A ``client`` label holds only a
registered, authenticated client id, and at most :data:`MAX_CLIENT_LABELS` distinct ones per
process; later ones are counted under ``other``.

=======================================  ========  ==============================================
``tokenry.tokens.issued``                counter   ``grant``, ``format`` (jwt, opaque),
                                                   ``client``
``tokenry.outbox.backlog``               gauge     events committed and not yet published
``tokenry.outbox.oldest_unpublished``    gauge s   age of the oldest of them (0 when none)
``tokenry.relay.leader``                 gauge     1 while this process holds the publisher lease
``tokenry.relay.lease_changes``          counter   leaderships taken by this process
``tokenry.relay.published``              counter   events published (acknowledged by JetStream)
``tokenry.relay.failures``               counter   publishing rounds that failed
``tokenry.introspector.cache.lookups``   counter   ``result`` (hit, miss): the positive cache
``tokenry.introspector.cache.hit_ratio`` gauge     hits / lookups since start
``tokenry.nats.connected``               gauge     1 while the connection is up (``connection``)
``tokenry.nats.reconnects``              counter   reconnections (``connection``)
``tokenry.db.pool.connections``          gauge     ``state`` (open, idle, max): a pool with no
                                                   idle connection makes callers wait
``tokenry.keys.age``                     gauge s   per key (``kid``, ``alg``, ``use``, ``state``)
``tokenry.keys.next_transition``         gauge s   until the schedule moves the key next;
                                                   negative = overdue
=======================================  ========  ==============================================
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, Protocol

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, Observation

from tokenry.core.clientauth import BasicHeader, Presented

if TYPE_CHECKING:
    import asyncpg

__all__ = [
    "MAX_CLIENT_LABELS",
    "IssuedTokens",
    "count_issued",
    "KeyGauges",
    "OutboxGauges",
    "metrics_on",
    "observe_cache",
    "observe_nats",
    "observe_pool",
    "observe_relay",
]

log = logging.getLogger(__name__)

MAX_CLIENT_LABELS: Final = 200
METER: Final = "tokenry.service"


def metrics_on() -> bool:
    """True when an SDK meter provider is installed (servicekit.telemetry)."""
    from opentelemetry.sdk.metrics import MeterProvider

    return isinstance(metrics.get_meter_provider(), MeterProvider)


def _meter(meter: Meter | None) -> Meter:
    return meter if meter is not None else metrics.get_meter(METER)


class IssuedTokens:
    """Tokens issued, by grant, format and client: one dict increment per token.

    Args:
        meter: defaults to the global provider's ``tokenry.service`` meter.
        max_clients: distinct client labels kept; later clients count as ``other``.
    """

    __slots__ = ("_basic", "_clients", "_counts", "_max")

    def __init__(self, meter: Meter | None = None, max_clients: int = MAX_CLIENT_LABELS) -> None:
        self._counts: dict[tuple[str, str, str], int] = {}
        self._basic: dict[int, str] = {}
        self._clients: set[str] = set()
        self._max = max_clients
        _meter(meter).create_observable_counter(
            "tokenry.tokens.issued",
            callbacks=[self._observe],
            unit="{token}",
            description="Access tokens issued, by grant, format and (authenticated) client",
        )

    def add(self, grant: str, fmt: str, client_id: str) -> None:
        """Count one token issued to the *authenticated* ``client_id``."""
        client = client_id
        if client not in self._clients:
            if len(self._clients) >= self._max:
                client = "other"
            else:
                self._clients.add(client)
        key = (grant, fmt, client)
        self._counts[key] = self._counts.get(key, 0) + 1

    def add_presented(self, grant: str, fmt: str, credentials: Presented) -> None:
        """Count one token issued to the client that authenticated with ``credentials``.

        A ``client_secret_basic`` header is parsed once per distinct header (remembered by
        its hash, never the header itself): the hot path avoids base64 on every call.
        """
        if isinstance(credentials, BasicHeader):
            key = hash(credentials.authorization)
            client = self._basic.get(key)
            if client is None:
                try:
                    client = credentials.parse().client_id
                except Exception:
                    client = "unknown"
                if len(self._basic) < 4 * self._max:
                    self._basic[key] = client
        else:
            client = credentials.client_id
        self.add(grant, fmt, client)

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(n, {"grant": g, "format": f, "client": c})
            for (g, f, c), n in list(self._counts.items())
        ]


class _Issuing(Protocol):
    """flows.TokenEndpoint's shape (the gateway's in-process token endpoint)."""

    async def token(self, req: Any) -> Any: ...


def count_issued(endpoint: _Issuing, issued: IssuedTokens | None = None) -> IssuedTokens:
    """Count every token ``endpoint.token`` issues in :class:`IssuedTokens`, as the gRPC
    issuer's servicer does (same labels): for a process that runs the flows in process (the
    gateway). The method is wrapped on this instance only, when the caller decided metrics are
    on; a refused request raises before the count."""
    from tokenry.core.opaque import ACCESS as OPAQUE_PREFIX

    counts = issued if issued is not None else IssuedTokens()
    inner = endpoint.token

    async def token(req: Any) -> Any:
        result = await inner(req)
        fmt = "opaque" if result.access_token.startswith(OPAQUE_PREFIX) else "jwt"
        counts.add_presented(req.grant_type, fmt, req.credentials)
        return result

    endpoint.token = token  # type: ignore[method-assign]
    return counts


class _Relay(Protocol):
    @property
    def is_leader(self) -> bool: ...

    @property
    def stats(self) -> Any: ...


def observe_relay(relay: _Relay, meter: Meter | None = None) -> None:
    """Export an outbox relay's leadership and counts (read at collection time)."""
    m = _meter(meter)
    m.create_observable_gauge(
        "tokenry.relay.leader",
        callbacks=[lambda _o: [Observation(1 if relay.is_leader else 0)]],
        unit="",
        description="1 while this process holds the event publisher's lease",
    )
    for name, attr, text in (
        ("tokenry.relay.lease_changes", "lease_changes", "Publisher leaderships taken"),
        ("tokenry.relay.published", "published", "Events published and acknowledged"),
        ("tokenry.relay.failures", "failures", "Publishing rounds that failed"),
    ):
        m.create_observable_counter(
            name,
            callbacks=[_stat(relay, attr)],
            unit="{event}" if attr == "published" else "{change}",
            description=text,
        )


def _stat(relay: _Relay, attr: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def read(_options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(getattr(relay.stats, attr))]

    return read


def observe_nats(nc: Any, connection: str, meter: Meter | None = None) -> None:
    """A NATS connection's state and reconnections (nats-py keeps the count)."""
    labels = {"connection": connection}
    m = _meter(meter)
    m.create_observable_gauge(
        "tokenry.nats.connected",
        callbacks=[lambda _o: [Observation(1 if nc.is_connected else 0, labels)]],
        unit="",
        description="1 while the NATS connection is up",
    )
    m.create_observable_counter(
        "tokenry.nats.reconnects",
        callbacks=[lambda _o: [Observation(int(nc.stats.get("reconnects", 0)), labels)]],
        unit="{reconnect}",
        description="NATS reconnections",
    )


def observe_pool(pool: asyncpg.Pool, meter: Meter | None = None) -> None:
    """The PostgreSQL pool's open, idle and maximum connections (asyncpg counts them)."""
    _meter(meter).create_observable_gauge(
        "tokenry.db.pool.connections",
        callbacks=[
            lambda _o: [
                Observation(pool.get_size(), {"state": "open"}),
                Observation(pool.get_idle_size(), {"state": "idle"}),
                Observation(pool.get_max_size(), {"state": "max"}),
            ]
        ],
        unit="{connection}",
        description="PostgreSQL pool connections; none idle means callers wait",
    )


class _Lookups(Protocol):
    def get(self, key: Any) -> Any: ...


def observe_cache(cache: _Lookups, name: str, meter: Meter | None = None) -> None:
    """Count ``cache.get`` hits (not None) and misses, exported as ``<name>.lookups`` and
    ``<name>.hit_ratio``: the lookup is wrapped on this instance only (two integer bumps),
    and only when the caller decided metrics are on."""
    counts = [0, 0]  # misses, hits
    lookup = cache.get

    def get(key: Any) -> Any:
        found = lookup(key)
        counts[found is not None] += 1
        return found

    cache.get = get  # type: ignore[method-assign]
    m = _meter(meter)
    m.create_observable_counter(
        f"{name}.lookups",
        callbacks=[
            lambda _o: [
                Observation(counts[1], {"result": "hit"}),
                Observation(counts[0], {"result": "miss"}),
            ]
        ],
        unit="{lookup}",
        description="Cache lookups by result",
    )
    m.create_observable_gauge(
        f"{name}.hit_ratio",
        callbacks=[lambda _o: [Observation(counts[1] / max(1, counts[0] + counts[1]))]],
        unit="",
        description="Cache hits / lookups since start",
    )


async def _every(
    interval: float, stop: asyncio.Event, sample: Callable[[], Awaitable[None]], what: str
) -> None:
    while not stop.is_set():
        try:
            await sample()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failed sample keeps the last value; never fatal
            log.debug("%s sample failed: %s", what, type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


_BACKLOG_SQL: Final = (
    "SELECT count(*) AS n, extract(epoch FROM clock_timestamp() - min(created_at)) AS age"
    " FROM outbox WHERE published_at IS NULL"
)


class OutboxGauges:
    """The outbox backlog and the age of its oldest unpublished event, sampled from
    PostgreSQL (the source of truth, whichever process publishes) every ``interval``.

    The age is PostgreSQL's (no clock of ours is compared with the database's), advanced by
    our monotonic clock between samples while the backlog is not empty.
    """

    def __init__(self, pool: asyncpg.Pool, meter: Meter | None = None, interval: float = 2.0):
        self._pool = pool
        self._interval = interval
        self.backlog = 0
        self._age = 0.0
        self._sampled_at = time.monotonic()
        m = _meter(meter)
        m.create_observable_gauge(
            "tokenry.outbox.backlog",
            callbacks=[lambda _o: [Observation(self.backlog)]],
            unit="{event}",
            description="Events committed to the outbox and not yet published",
        )
        m.create_observable_gauge(
            "tokenry.outbox.oldest_unpublished",
            callbacks=[lambda _o: [Observation(self.oldest_age())]],
            unit="s",
            description="Age of the oldest unpublished outbox event (0 when none)",
        )

    def oldest_age(self) -> float:
        if not self.backlog:
            return 0.0
        return self._age + (time.monotonic() - self._sampled_at)

    async def sample(self) -> None:
        row = await self._pool.fetchrow(_BACKLOG_SQL)
        assert row is not None
        self.backlog = int(row["n"])
        self._age = float(row["age"] or 0.0)
        self._sampled_at = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        await _every(self._interval, stop, self.sample, "outbox")


class _KeyRow(Protocol):
    kid: str
    alg: str
    use: str
    created_at: float
    activated_at: float | None

    @property
    def state(self) -> Any: ...


class _Keys(Protocol):
    async def list_keys(self, *, include_ended: bool = False) -> tuple[list[Any], int]: ...

    def next_transition_at(self, row: Any) -> float | None: ...


class KeyGauges:
    """Each live signing key's age and the time until the schedule moves it next (negative
    when overdue: the rotation alert), sampled every ``interval`` from the key rotator."""

    def __init__(
        self,
        keys: _Keys,
        now: Callable[[], float],
        meter: Meter | None = None,
        interval: float = 15.0,
    ) -> None:
        self._keys = keys
        self._now = now
        self._interval = interval
        self._rows: list[tuple[dict[str, str], float, float | None]] = []
        m = _meter(meter)
        m.create_observable_gauge(
            "tokenry.keys.age",
            callbacks=[self._ages],
            unit="s",
            description="Age of each published signing key (since created)",
        )
        m.create_observable_gauge(
            "tokenry.keys.next_transition",
            callbacks=[self._next],
            unit="s",
            description="Seconds until the schedule moves the key next; negative = overdue",
        )

    def _ages(self, _options: CallbackOptions) -> Iterable[Observation]:
        now = self._now()
        return [Observation(now - created, labels) for labels, created, _ in self._rows]

    def _next(self, _options: CallbackOptions) -> Iterable[Observation]:
        now = self._now()
        return [Observation(due - now, labels) for labels, _, due in self._rows if due]

    async def sample(self) -> None:
        rows, _seq = await self._keys.list_keys()
        self._rows = [
            (
                {
                    "kid": r.kid,
                    "alg": r.alg,
                    "use": r.use,
                    "state": str(getattr(r.state, "value", r.state)),
                },
                r.created_at,
                self._keys.next_transition_at(r),
            )
            for r in rows
        ]

    async def run(self, stop: asyncio.Event) -> None:
        await _every(self._interval, stop, self.sample, "keys")

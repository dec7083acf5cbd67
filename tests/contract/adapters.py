"""The adapters under contract: every storage port of ``tokenry.store.ports``, in memory and in
PostgreSQL, as one composition root would wire them."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import asyncpg
from flows_support import Ports, clock

from tokenry.bus import codec
from tokenry.bus.codec import Subjects
from tokenry.core.clients import Client
from tokenry.core.clock import FakeClock
from tokenry.store.assertion_jtis import AssertionJtiStore
from tokenry.store.auth_codes import AuthCodeStore
from tokenry.store.clients import ClientStore
from tokenry.store.memory import MemoryStore
from tokenry.store.opaque_tokens import OpaqueTokenWriter
from tokenry.store.ports import RevocationLookup, TokenReader, WatermarkSource
from tokenry.store.postgres import PgRevocationLog, PgStorage
from tokenry.store.revocation_checks import RevocationChecks
from tokenry.store.revocations import RevocationStore


class Checks(RevocationLookup, WatermarkSource, Protocol):
    pass


@dataclass(frozen=True)
class Adapter:
    name: str
    ports: Ports
    reader: TokenReader
    checks: Checks
    register: Callable[[Client], Awaitable[None]]
    clock: FakeClock


def memory_adapter() -> Adapter:
    now = clock()
    store = MemoryStore(now)
    return Adapter(
        name="memory",
        ports=Ports(
            clients=store,
            assertions=store,
            requests=store,
            access_tokens=store,
            transactions=store,
            revocations=store,
        ),
        reader=store,
        checks=store,
        register=store.upsert_client,
        clock=now,
    )


def postgres_adapter(pool: asyncpg.Pool, writer: OpaqueTokenWriter) -> Adapter:
    now = clock()
    clients = ClientStore(pool)
    storage = PgStorage(pool)
    encode = functools.partial(codec.revocation_event, Subjects("contract"))
    return Adapter(
        name="postgres",
        ports=Ports(
            clients=clients,
            assertions=AssertionJtiStore(pool, now),
            requests=AuthCodeStore(pool),
            access_tokens=writer,
            transactions=storage,
            revocations=PgRevocationLog(RevocationStore(pool), encode),
        ),
        reader=storage,
        checks=RevocationChecks(pool),
        register=clients.upsert,
        clock=now,
    )

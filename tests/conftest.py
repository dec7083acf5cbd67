"""Real servers for the whole test session (docs/design.md §1: nothing mocks them).

PostgreSQL (pgserver binaries, Unix socket in its own temp dir) and NATS with JetStream (free
port) start once per session. Each test gets its own database, cloned from a migrated template,
and its own NATS subject prefix and stream, so tests never see each other's rows or events. A
test that kills or restarts a server starts its own instance instead.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import asyncpg
import pytest
from databases import TEMPLATE_DB, create_template, new_database

from tokenry.bus.codec import Subjects
from tokenry.bus.nats_conn import StreamSettings
from tokenry.core.client_secrets import Pepper, pepper_id
from tokenry.core.keywrap import Kek
from tokenry.devstack import EmbeddedNats, EmbeddedPostgres
from tokenry.servicekit.config import Settings


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", fsync=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path_factory.mktemp("nats") / "store")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def template_db(pg_server: EmbeddedPostgres) -> str:
    await create_template(pg_server.dsn())
    return TEMPLATE_DB


@pytest.fixture
async def database_url(pg_server: EmbeddedPostgres, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test."""
    dsn = await new_database(pg_server, template_db)
    yield dsn
    name = dsn.split("/")[-1].split("?")[0]
    conn = await asyncpg.connect(pg_server.dsn())
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=10)
    try:
        yield pool
    finally:
        await pool.close()


@dataclass(frozen=True)
class BusNames:
    subjects: Subjects
    stream: StreamSettings


@pytest.fixture
def bus_names() -> BusNames:
    """A subject prefix and stream of this test's own on the shared NATS server."""
    tag = uuid.uuid4().hex[:10]
    return BusNames(Subjects(f"t{tag}"), StreamSettings(name=f"T{tag}", max_age=600))


@pytest.fixture
def settings(database_url: str, nats_server: EmbeddedNats, bus_names: BusNames) -> Settings:
    pepper_key = secrets.token_urlsafe(32).encode()
    return Settings(
        dev=True,
        database_url=database_url,
        nats_url=nats_server.url,
        issuer_url="https://issuer.test",
        subjects=bus_names.subjects,
        stream=bus_names.stream,
        log_level="INFO",
        access_token_alg="ES256",
        kek=Kek.generate(),
        peppers={pepper_id(pepper_key): Pepper(pepper_id(pepper_key), pepper_key)},
    )


def pytest_configure(config: pytest.Config) -> None:
    # Services log JSON to stderr; keep the test output readable.
    os.environ.setdefault("TOKENRY_LOG_LEVEL", "WARNING")
    # Tests fork helpers (pg_ctl, servers) from a process that runs gRPC: gRPC's fork handlers
    # then sometimes crash the child (SIGSEGV). The tests never use gRPC in a forked child.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

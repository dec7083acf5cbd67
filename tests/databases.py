"""Test databases: a migrated template, cloned per test (imported by conftest.py and by the
tests that start a server of their own; never import conftest itself — tests/faults has a
conftest of its own, and `from conftest import` would find whichever came first)."""

from __future__ import annotations

import uuid

import asyncpg

from tokenry.devstack import EmbeddedPostgres
from tokenry.store.migrate import migrate

TEMPLATE_DB = "tokenry_template"


async def create_template(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}")
        await conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    finally:
        await conn.close()
    conn = await asyncpg.connect(dsn.replace("/postgres?", f"/{TEMPLATE_DB}?"))
    try:
        await migrate(conn)
    finally:
        await conn.close()


async def new_database(server: EmbeddedPostgres, template: str | None = TEMPLATE_DB) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(server.dsn())
    try:
        clause = f" TEMPLATE {template}" if template else ""
        await conn.execute(f"CREATE DATABASE {name}{clause}")
    finally:
        await conn.close()
    return server.dsn(name)

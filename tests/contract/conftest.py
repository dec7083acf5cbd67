"""The contract suite's fixture: every case runs against each adapter (SPIRE's
``keymanagertest.Test`` run by every implementation).

Each test gets a fresh adapter: a new ``MemoryStore``, or a fresh migrated database from the
session's PostgreSQL (``tests/conftest.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from contract.adapters import Adapter, memory_adapter, postgres_adapter
from tokenry.store.opaque_tokens import OpaqueTokenWriter


@pytest.fixture
async def pg_adapter(pool: asyncpg.Pool) -> AsyncIterator[Adapter]:
    writer = OpaqueTokenWriter(pool)
    try:
        yield postgres_adapter(pool, writer)
    finally:
        await writer.close()


@pytest.fixture(params=["memory", "postgres"])
def adapter(request: pytest.FixtureRequest) -> Adapter:
    if request.param == "memory":
        return memory_adapter()
    adapter: Adapter = request.getfixturevalue("pg_adapter")
    return adapter

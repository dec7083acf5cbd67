"""Shared helpers for the key rotator's integration tests (no tests here)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Self

import asyncpg

from tokenry.core.keylifecycle import KeySet, Policy
from tokenry.core.keywrap import KekRing
from tokenry.servicekit.config import Settings
from tokenry.services.keyrotator import app as keyrotator_app
from tokenry.services.keyrotator.config import RotatorConfig
from tokenry.v1 import keyrotator_pb2_grpc

from suite import basic, served

ACCESS = KeySet("access", "ES256")


def rotator_config(
    settings: Settings,
    *,
    interval: float = 3600.0,
    lead: float = 60.0,
    retention: float = 3900.0,
    keysets: tuple[KeySet, ...] = (ACCESS,),
    lease_ttl: float = 2.0,
    ring: KekRing | None = None,
) -> RotatorConfig:
    assert settings.kek is not None
    return RotatorConfig(
        policy=Policy(rotation_interval=interval, publish_lead=lead, retention=retention),
        keysets=keysets,
        ring=ring or KekRing(settings.kek),
        lease_ttl=lease_ttl,
    )


@contextlib.asynccontextmanager
async def running_rotator(settings: Settings, config: RotatorConfig) -> AsyncIterator[str]:
    """A key rotator in-process on port 0; yields its address."""
    service = keyrotator_app.build(settings, "127.0.0.1", 0, config=config)
    async with served(service, keyrotator_app.SERVICE_NAMES) as addr:
        yield addr


def stub(channel: object) -> keyrotator_pb2_grpc.KeyRotatorStub:
    return keyrotator_pb2_grpc.KeyRotatorStub(channel)  # type: ignore[arg-type]


def admin(secrets: dict[str, str], client_id: str = "admin") -> list[tuple[str, str]]:
    return [("authorization", basic(client_id, secrets[client_id]))]


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, timeout: float, what: str, every: float = 0.02
) -> float:
    """Wait for a condition (polled); returns the seconds it took. Fails after ``timeout``."""
    started = time.perf_counter()
    while not await check():
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"{what}: not true after {timeout}s")
        await asyncio.sleep(every)
    return time.perf_counter() - started


class Busy:
    """Runs :meth:`step` back to back from ``async with`` until the block ends: a busy client
    (an issuer asking for its key, a caller asking for tokens) during a rotation."""

    def __init__(self) -> None:
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    async def _run(self) -> None:
        while not self._stop.is_set():
            await self.step()

    async def step(self) -> None:
        raise NotImplementedError


async def key_states(pool: asyncpg.Pool) -> dict[str, str]:
    rows = await pool.fetch("SELECT kid, state FROM signing_keys ORDER BY created_at, kid")
    return {r["kid"]: r["state"] for r in rows}


async def active_kid(pool: asyncpg.Pool, use: str = "access", alg: str = "ES256") -> str | None:
    kid: str | None = await pool.fetchval(
        "SELECT kid FROM signing_keys WHERE state = 'active' AND use = $1 AND alg = $2", use, alg
    )
    return kid


async def pending_kid(pool: asyncpg.Pool, use: str = "access", alg: str = "ES256") -> str | None:
    kid: str | None = await pool.fetchval(
        "SELECT kid FROM signing_keys WHERE state = 'pending' AND use = $1 AND alg = $2", use, alg
    )
    return kid

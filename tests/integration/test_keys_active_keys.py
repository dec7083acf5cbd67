"""The issuer side of docs/spec.md §5 (store/active_key.py), on real PostgreSQL and NATS: switch to
the new active key on its event with no gap in signing, the periodic check as backup, and never a
key that stopped being active — not even when a slower database read still names it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import asyncpg
import grpc
import nats
import pytest
from nats.js.api import DeliverPolicy

from tokenry.bus import codec
from tokenry.core.errors import TemporarilyUnavailable
from tokenry.core.keylifecycle import KeySet
from tokenry.servicekit.config import Settings
from tokenry.store.active_key import ActiveKeys
from tokenry.store.keys import KeyRecord, KeyStore
from tokenry.v1 import keyrotator_pb2

from keys_support import (
    Busy,
    active_kid,
    admin,
    rotator_config,
    running_rotator,
    stub,
    wait_until,
)
from suite import run_suite

pytestmark = pytest.mark.integration


class Signer(Busy):
    """Asks ActiveKeys for the current key as fast as the loop allows, like a busy issuer."""

    def __init__(self, keys: ActiveKeys) -> None:
        super().__init__()
        self.keys = keys
        self.samples: list[str] = []
        self.failures = 0

    async def step(self) -> None:
        try:
            self.samples.append(self.keys.current().kid)
        except TemporarilyUnavailable:
            self.failures += 1
        await asyncio.sleep(0)


class KeyEvents:
    """Feeds ActiveKeys from the event stream: the one-line wiring the issuer needs."""

    def __init__(self, keys: ActiveKeys) -> None:
        self.keys = keys
        self.applied: list[tuple[str, str]] = []
        self.changed = asyncio.Event()

    async def on_msg(self, msg: nats.aio.msg.Msg) -> None:
        event = codec.decode(msg.data)
        if event.key is not None:
            await self.keys.on_key_event(event.key.kid, event.key.state)
            self.applied.append((event.key.kid, event.key.state))
            self.changed.set()

    async def wait_for(self, kid: str, state: str, timeout: float = 10.0) -> None:
        async def until() -> None:
            while (kid, state) not in self.applied:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), timeout)


@contextlib.asynccontextmanager
async def subscribed(settings: Settings, events: KeyEvents) -> AsyncIterator[None]:
    """Key events from now on, into ``events`` (the stream is created by the rotator's relay)."""
    nc = await nats.connect(settings.nats_url)
    try:
        js = nc.jetstream()

        async def stream_exists() -> bool:
            try:
                await js.stream_info(settings.stream.name)
            except nats.js.errors.NotFoundError:
                return False
            return True

        await wait_until(stream_exists, timeout=20, what="event stream")
        sub = await js.subscribe(
            settings.subjects.events,
            stream=settings.stream.name,
            cb=events.on_msg,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
            idle_heartbeat=0.5,
        )
        try:
            yield
        finally:
            await sub.unsubscribe()
    finally:
        await nc.close()


async def test_issuer_keys_follow_rotation_and_revocation_events_without_gap(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    config = rotator_config(settings)
    async with (
        running_rotator(settings, config) as addr,
        run_suite(settings, pool, services=()) as suite,
        grpc.aio.insecure_channel(addr) as ch,
    ):
        keys = ActiveKeys(KeyStore(pool), settings.kek, "ES256")  # type: ignore[arg-type]
        await keys.refresh()
        first = keys.current().kid
        assert first == await active_kid(pool)
        events = KeyEvents(keys)
        async with subscribed(settings, events), Signer(keys) as signer:
            started = time.perf_counter()
            rotated = await stub(ch).Rotate(
                keyrotator_pb2.RotateRequest(force=True),
                metadata=admin(suite.secrets),
                timeout=10,
            )
            await events.wait_for(rotated.active_kid, "active")
            took = time.perf_counter() - started
            assert keys.current().kid == rotated.active_kid
            mark = len(signer.samples)
            print(f"\nrotate ack → issuer signs with the new key: {took * 1000:.1f} ms")

            started = time.perf_counter()
            revoked = await stub(ch).RevokeKey(
                keyrotator_pb2.RevokeKeyRequest(kid=rotated.active_kid, reason="test"),
                metadata=admin(suite.secrets),
                timeout=10,
            )
            await events.wait_for(rotated.active_kid, "revoked")
            took = time.perf_counter() - started
            assert keys.current().kid == revoked.active_kid == rotated.pending_kid
            mark2 = len(signer.samples)
            print(f"revoke ack → issuer signs with the promoted successor: {took * 1000:.1f} ms")
            await asyncio.sleep(0.05)  # a few more samples after the switch
        # No gap: the signer always had a key, through both switches.
        assert signer.failures == 0
        assert len(signer.samples) > mark2
        # Once the event was applied, an old key never came back.
        assert first not in signer.samples[mark:]
        assert rotated.active_kid not in signer.samples[mark2:]
        print(f"{len(signer.samples)} key lookups, none without a key")


async def test_the_periodic_check_catches_up_without_events(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with (
        running_rotator(settings, rotator_config(settings)) as addr,
        run_suite(settings, pool, services=()) as suite,
        grpc.aio.insecure_channel(addr) as ch,
    ):
        keys = ActiveKeys(KeyStore(pool), settings.kek, "ES256")  # type: ignore[arg-type]
        await keys.refresh()
        rotated = await stub(ch).Rotate(
            keyrotator_pb2.RotateRequest(force=True), metadata=admin(suite.secrets), timeout=10
        )
        assert keys.current().kid == rotated.retiring_kid  # no event wired: not yet
        await keys.refresh()
        assert keys.current().kid == rotated.active_kid


class GatedKeyStore(KeyStore):
    """A real KeyStore whose candidate read can be held after it has read (a slow query)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.hold = False
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def signing_candidates(self, keysets: object) -> list[KeyRecord]:
        rows = await super().signing_candidates(keysets)  # type: ignore[arg-type]
        if self.hold:
            self.hold = False
            self.holding.set()
            await self.release.wait()
        return rows


async def test_a_stale_read_never_brings_back_a_key_that_stopped_signing(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with (
        running_rotator(settings, rotator_config(settings)) as addr,
        run_suite(settings, pool, services=()) as suite,
        grpc.aio.insecure_channel(addr) as ch,
    ):
        store = GatedKeyStore(pool)
        keys = ActiveKeys(store, settings.kek, "ES256")  # type: ignore[arg-type]
        await keys.refresh()
        old = keys.current().kid
        store.hold = True
        slow = asyncio.create_task(keys.refresh())  # reads "old is active", then stalls
        await asyncio.wait_for(store.holding.wait(), 10)
        rotated = await stub(ch).Rotate(
            keyrotator_pb2.RotateRequest(force=True), metadata=admin(suite.secrets), timeout=10
        )
        on_event = asyncio.create_task(keys.on_key_event(rotated.active_kid, "active"))
        await asyncio.sleep(0)
        assert keys.current().kid == rotated.active_kid  # switched on the event at once
        store.release.set()
        await asyncio.wait_for(asyncio.gather(slow, on_event), 10)
        assert keys.current().kid == rotated.active_kid != old


async def test_id_token_keys_are_held_per_algorithm(settings: Settings, pool: asyncpg.Pool) -> None:
    config = rotator_config(
        settings,
        keysets=(KeySet("access", "ES256"), KeySet("id", "RS256"), KeySet("id", "ES256")),
    )
    async with running_rotator(settings, config):
        keys = ActiveKeys(
            KeyStore(pool),
            settings.kek,  # type: ignore[arg-type]
            "ES256",
            id_token_algs=("RS256", "ES256"),
        )
        await keys.refresh()
        assert keys.current().alg == "ES256"
        assert keys.current("id").alg == "RS256"  # OIDC Core §15.1 default
        assert keys.current("id", "ES256").alg == "ES256"
        kids = {keys.current().kid, keys.current("id").kid, keys.current("id", "ES256").kid}
        assert len(kids) == 3
        assert keys.current("id").kid == await active_kid(pool, "id", "RS256")
        with pytest.raises(TemporarilyUnavailable):
            keys.current("id", "PS256")

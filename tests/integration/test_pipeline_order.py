"""Order and duplicates on real JetStream: a republish with the same Nats-Msg-Id is dropped by
the stream; copies that do get in (a republish after the duplicate window) and redeliveries are
applied once; an event that arrives before a lower one is applied at once (never held back),
and the contiguous seq moves only when the hole is filled."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import nats
import pytest

from tokenry.bus import codec
from tokenry.core.revocations import Revocation, RevocationKind
from tokenry.servicekit.config import Settings
from tokenry.verifier.errors import RevokedError

from pipeline_support import mint, stack, stream_outbox_seqs, wait_until

pytestmark = pytest.mark.integration


async def test_duplicates_and_redeliveries_are_applied_once_in_order(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with stack(settings, pool) as svc:
        runtime = await svc.verifier()
        advanced: list[int] = []
        runtime.state.on_advance = advanced.append
        seqs = [(await svc.revoke(jti=f"j{i}")).seq for i in range(20)]
        await asyncio.wait_for(runtime.state.wait_for_seq(seqs[-1]), timeout=10)
        rows = await pool.fetch(
            "SELECT seq, event_id, subject, payload FROM outbox WHERE seq = ANY($1) ORDER BY seq",
            seqs,
        )
        nc = await nats.connect(settings.nats_url)
        try:
            js = nc.jetstream()
            for row in rows:
                data = codec.stamp_seq(row["payload"], row["seq"])
                # The relay's own republish after a crash: dropped by the stream.
                ack = await js.publish(
                    row["subject"], data, headers={"Nats-Msg-Id": str(row["event_id"])}
                )
                assert ack.duplicate
                # A republish after the duplicate window: stored again, later in the stream.
                await js.publish(row["subject"], data, headers={"Nats-Msg-Id": str(uuid.uuid4())})
        finally:
            await nc.close()
        # The live verifier got each copy too (it was subscribed): each counts once. A verifier
        # started now bootstraps from the snapshot and must end in the same state.
        replay = await svc.verifier()
        last = await svc.revoke(jti="last")
        for rt in (runtime, replay):
            await asyncio.wait_for(rt.state.wait_for_seq(last.seq), timeout=10)
            assert rt.state.revocations.values(RevocationKind.JTI) == {
                *(f"j{i}" for i in range(20)),
                "last",
            }
            assert not rt.state.has_gap
        # In order: the contiguous seq only ever moved forward, one event at a time here.
        assert advanced == sorted(set(advanced)) and advanced[-1] == last.seq
        stream = await stream_outbox_seqs(settings.nats_url, settings)
        assert stream.count(seqs[0]) == 2  # the copy really is in the stream


async def test_an_event_ahead_of_a_hole_is_applied_at_once(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """A hole never holds later revocations back (docs/design.md §4)."""
    async with stack(settings, pool) as svc:
        runtime = await svc.verifier()
        token, claims = await mint(pool, settings)
        base = runtime.state.applied_seq
        now = int(time.time())
        rev = Revocation(RevocationKind.JTI, claims["jti"], 0, now + 900)
        late = codec.revocation_event(settings.subjects, rev, now)
        # Publish seq base+2 directly, as if base+1 were lost on the way.
        nc = await nats.connect(settings.nats_url)
        try:
            await nc.jetstream().publish(late.subject, codec.stamp_seq(late.payload, base + 2))
            await wait_until(
                lambda: runtime.state.first_ahead() == base + 2, 10, "the event is applied"
            )
        finally:
            await nc.close()
        with pytest.raises(RevokedError):
            await runtime.verifier.verify(token)  # applied although seq base+1 is missing
        assert runtime.state.applied_seq == base and runtime.state.has_gap

"""Duplicated and reordered delivery: copies of real events (with fresh Nats-Msg-Ids, so the
stream keeps them) and events moved behind later ones. A verifier's revocation state must
equal a replay of the whole outbox from zero (the oracle), and the History rules must hold.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import nats
import pytest
from harness import QUICK_BUDGET, InProcess, Prober, Revoker, Tokens, now, settled, wait_for
from history import History, assert_holds, measure, state_digest
from proxy import FaultProxy
from verifier_child import feed_counts

from tokenry.bus import codec
from tokenry.core.revocations import RevocationSet
from tokenry.servicekit.config import Settings

from pipeline_support import mint, stack

pytestmark = pytest.mark.integration


async def oracle(pool: asyncpg.Pool) -> RevocationSet:
    """Every event of the outbox applied in seq order to an empty state: replay from zero."""
    revs = RevocationSet()
    for row in await pool.fetch("SELECT seq, payload FROM outbox ORDER BY seq"):
        event = codec.decode(codec.stamp_seq(row["payload"], row["seq"]))
        if event.revocation is not None:
            revs.apply(event.revocation)
    return revs


async def test_duplicated_and_reordered_events_change_nothing(
    tmp_path: Path, settings: Settings, pool: asyncpg.Pool
) -> None:
    nats_port = int(settings.nats_url.rsplit(":", 1)[1])
    async with (
        stack(settings, pool, keyrotator=False) as svc,
        FaultProxy(("127.0.0.1", nats_port)) as proxy,
    ):
        history = History()
        tokens = Tokens()
        jtis = []
        for _ in range(11):
            token, claims = await mint(pool, settings)
            tokens.add(token, claims["jti"])
            jtis.append(claims["jti"])
        before, during, controls = jtis[:2], jtis[2:8], jtis[8:]
        history.controls.update(controls)
        # Two verifiers behind the proxy (they get the reordered stream in one go after the
        # heal) and one on NATS directly (it sees the copies arrive one by one).
        behind = [
            await svc.verifier(nats_url=proxy.nats_url, staleness_budget=QUICK_BUDGET)
            for _ in range(2)
        ]
        direct = await svc.verifier(staleness_budget=QUICK_BUDGET)
        runtimes = [*behind, direct]
        target = InProcess("in", runtimes)
        revoker = Revoker(history, svc.secrets, svc.revocation.addr)
        prober = Prober(history, tokens, [target], interval=0.01).start()
        nc = await nats.connect(settings.nats_url)
        try:
            for jti in before:
                await revoker.revoke(jti)
            since = now()
            await wait_for(
                lambda: settled(history, tokens, history.verifiers(), since), 20, "steady state"
            )
            index = history.fault_started("reordered behind a partition", now(), {"in.0", "in.1"})
            proxy.blackhole()
            for jti in during:
                await revoker.revoke(jti)
            top = revoker.top
            await wait_for(
                lambda: direct.state.applied_seq >= top, 20, "the relay published everything"
            )
            js = nc.jetstream()
            stream = settings.stream.name
            info = await js.stream_info(stream)
            at: dict[int, tuple[int, bytes, str]] = {}  # outbox seq -> stream seq, data, subject
            for stream_seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await js.get_msg(stream, stream_seq)
                assert msg.data is not None and msg.subject is not None
                at[codec.decode(msg.data).seq] = (stream_seq, msg.data, msg.subject)
            seqs = sorted(s for s in at if s > top - len(during))
            moved, copied = seqs[1:4], [*seqs[4:], *sorted(at)[:3]]
            # Reorder: three events leave their place and come back after later ones,
            # last first.
            for seq in moved:
                await js.delete_msg(stream, at[seq][0])
            for seq in reversed(moved):
                _, data, subject = at[seq]
                await js.publish(subject, data, headers={"Nats-Msg-Id": str(uuid.uuid4())})
            # Duplicate: copies of events already delivered, old and new, after the duplicate
            # window as far as the stream can tell (fresh ids).
            for seq in copied:
                _, data, subject = at[seq]
                await js.publish(subject, data, headers={"Nats-Msg-Id": str(uuid.uuid4())})
            proxy.heal()
            healed = now()
            history.fault_healed(index, healed)
            took = await wait_for(
                lambda: all(
                    rt.state.applied_seq >= top and not rt.state.has_gap for rt in runtimes
                ),
                QUICK_BUDGET + 20,
                "every verifier contiguous to the top",
            )
            print(f"\ncontiguous {took:.2f}s after the heal")
            await wait_for(
                lambda: settled(history, tokens, history.verifiers(), healed),
                QUICK_BUDGET + 20,
                "settled after the heal",
            )
            await prober.stop()
            await prober.final_round()
        finally:
            await prober.stop()
            await revoker.close()
            await nc.close()
        expected = await oracle(pool)
        for k, rt in enumerate(runtimes):
            print(f"in.{k}: {len(rt.state.revocations)} revocations, {feed_counts(rt)}")
            assert state_digest(rt.state.revocations.entries()) == state_digest(
                expected.entries()
            ), f"in.{k} differs from the replay from zero"
        print(measure(history).describe())
        assert_holds(history, budget=QUICK_BUDGET)

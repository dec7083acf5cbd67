"""Faults that hit PostgreSQL, the record: a crash (kill -9, then restart) before and after a
revocation commits, with the client retrying under one ``request_id``; PostgreSQL paused
(SIGSTOP of the postmaster and its backends) while revoking.

Each run ends with ``assert_holds`` over every verifier's probes; the restart run also counts
the events of each retried revocation in the outbox and in the stream (one each).
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path

import asyncpg
import grpc
import pytest
from harness import (
    QUICK_BUDGET,
    Prober,
    Revoker,
    VerifierProcess,
    assert_exact,
    finish,
    mint_tokens,
    now,
    pause_tree,
    resume_tree,
    settle,
    stream_revocations,
)
from history import History, assert_holds
from proxy import FaultProxy

from tokenry.bus import codec
from tokenry.devstack import EmbeddedNats, EmbeddedPostgres
from tokenry.servicekit.config import Settings

from pipeline_support import (
    FAST_REVOCATION,
    make_keys,
    make_settings,
    own_postgres,
    stack,
    start_service,
)
from suite import register_clients

pytestmark = pytest.mark.integration


async def outbox_values(dsn: str) -> list[str]:
    """The revoked value of every revocation event in the outbox, in seq order."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT seq, payload FROM outbox ORDER BY seq")
    finally:
        await conn.close()
    out = []
    for row in rows:
        event = codec.decode(codec.stamp_seq(row["payload"], row["seq"]))
        if event.revocation is not None:
            out.append(event.revocation.value)
    return out


async def committed_seq(dsn: str, jti: str) -> int | None:
    conn = await asyncpg.connect(dsn)
    try:
        seq: int | None = await conn.fetchval(
            "SELECT seq FROM revocations WHERE kind = 'jti' AND value = $1", jti
        )
        return seq
    finally:
        await conn.close()


async def crash(pg: EmbeddedPostgres) -> None:
    """kill -9 the postmaster and its backends at once, then start it (crash recovery)."""
    await asyncio.to_thread(pg.kill)
    await asyncio.sleep(0.5)
    await asyncio.to_thread(pg.start)


async def test_postgres_restart_before_and_after_commit_one_answer_one_event(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    """After commit: the revocation commits, PostgreSQL's answer to the COMMIT is dropped and
    PostgreSQL is killed and restarted; before commit: PostgreSQL is stopped with the request
    in its backend's socket, killed and restarted. In both the client retries with the same
    request_id: one answer (the same bytes on every retry), one outbox row, one stream event;
    the verifiers fail closed meanwhile and end exact."""
    pg = await own_postgres(tmp_path)
    socket_path = str(pg.socket_dir / ".s.PGSQL.5432")
    async with FaultProxy(socket_path) as proxy:
        settings = make_settings(proxy.pg_dsn("postgres"), nats_server.url)
        direct = pg.dsn()
        pool = await asyncpg.create_pool(direct, min_size=1, max_size=2)
        try:
            secrets = await register_clients(pool, settings)
            await make_keys(settings, pool)
            tokens, jtis = await mint_tokens(pool, settings, 6)
        finally:
            await pool.close()
        before, after_commit, before_commit, controls = jtis[0], jtis[1], jtis[2], jtis[3:]
        revocation = await start_service("revocation", settings, options=FAST_REVOCATION)
        history = History()
        history.controls.update(controls)
        # The verifiers read the JWKS straight from PostgreSQL (not through the proxy).
        proc = await VerifierProcess.spawn(
            "v",
            dataclasses.replace(settings, database_url=direct),
            revocation_addr=revocation.addr,
            log_dir=tmp_path,
        )
        revoker = Revoker(history, secrets, revocation.addr)
        prober = Prober(history, tokens, [proc], interval=0.01)
        try:
            await proc.wait_ready()
            prober.start()
            await revoker.revoke(before)
            await settle(history, tokens, now(), 20, "\nsteady state")

            # --- after commit ---
            index = history.fault_started("PostgreSQL restart after commit", now())
            rid = str(uuid.uuid4())
            # The marker: the SQL that fills the idempotency record, sent only by an
            # idempotent revocation's transaction, right before its COMMIT.
            proxy.cut_after_commit(b"idempotency_records")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await revoker.answer(after_commit, request_id=rid)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
            assert proxy.commit_cut.is_set()
            seq = await committed_seq(direct, after_commit)
            assert seq is not None, "the revocation did not commit"
            await crash(pg)
            first = await revoker.until_acked(after_commit, request_id=rid)
            again = await revoker.answer(after_commit, request_id=rid)
            assert first.seq == seq
            assert again.SerializeToString() == first.SerializeToString()
            history.fault_healed(index, now())
            await settle(history, tokens, now(), QUICK_BUDGET + 30, "settled after the restart")

            # --- before commit ---
            index = history.fault_started("PostgreSQL restart before commit", now())
            rid = str(uuid.uuid4())
            pause_tree(pg.pid or 0)
            lost = asyncio.create_task(revoker.answer(before_commit, request_id=rid, timeout=30))
            await asyncio.sleep(0.5)  # the request is in a stopped backend's socket
            assert not lost.done()
            await crash(pg)  # SIGKILL ends stopped processes too
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await lost
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value
            assert await committed_seq(direct, before_commit) is None, "committed after all"
            first = await revoker.until_acked(before_commit, request_id=rid)
            again = await revoker.answer(before_commit, request_id=rid)
            assert again.SerializeToString() == first.SerializeToString()
            history.fault_healed(index, now())
            await settle(history, tokens, now(), QUICK_BUDGET + 30, "settled after the restart")
            exact = await asyncpg.create_pool(direct, min_size=1, max_size=1)
            try:
                await assert_exact([proc], exact)
            finally:
                await exact.close()
            await finish(prober, history)
            in_outbox = await outbox_values(direct)
        finally:
            await prober.stop()
            await revoker.close()
            await proc.close()
            await revocation.stop()
            await asyncio.to_thread(pg.stop)
    in_stream = [
        value for _, value in await stream_revocations(nats_server.url, settings.stream.name)
    ]
    for jti in (before, after_commit, before_commit):
        assert in_outbox.count(jti) == 1, f"{in_outbox.count(jti)} outbox events for one revocation"
        assert in_stream.count(jti) == 1, f"{in_stream.count(jti)} stream events for one revocation"
    assert_holds(history, budget=QUICK_BUDGET)


async def test_postgres_paused_while_revoking(
    tmp_path: Path, settings: Settings, pool: asyncpg.Pool, pg_server: EmbeddedPostgres
) -> None:
    """SIGSTOP of PostgreSQL and every backend for budget + 2 s while revocations keep being
    sent (and retried): nothing is acknowledged meanwhile, the verifiers fail closed (no head
    answer can prove them current), and after SIGCONT every acknowledged revocation is refused
    everywhere and the controls are accepted again."""
    async with stack(settings, pool, keyrotator=False) as svc:
        history = History()
        tokens, jtis = await mint_tokens(pool, settings, 9)
        before, during, controls = jtis[:2], jtis[2:6], jtis[6:]
        history.controls.update(controls)
        procs = [
            await VerifierProcess.spawn(
                name, settings, revocation_addr=svc.revocation.addr, log_dir=tmp_path
            )
            for name in ("a", "b")
        ]
        revoker = Revoker(history, svc.secrets, svc.revocation.addr)
        prober = Prober(history, tokens, procs, interval=0.01)
        paused = False
        try:
            for proc in procs:
                await proc.wait_ready()
            prober.start()
            for jti in before:
                await revoker.revoke(jti)
            await settle(history, tokens, now(), 20, "\nsteady state")
            index = history.fault_started("PostgreSQL paused", now())
            pid = pg_server.pid
            assert pid is not None
            pause_tree(pid)
            paused = True
            sent = [
                asyncio.create_task(revoker.until_acked(jti, request_id=str(uuid.uuid4())))
                for jti in during
            ]
            await asyncio.sleep(QUICK_BUDGET + 2.0)
            assert not any(t.done() for t in sent), "acknowledged while PostgreSQL was stopped"
            resume_tree(pid)
            paused = False
            healed = now()
            history.fault_healed(index, healed)
            await asyncio.gather(*sent)
            print(f"\nthe {len(sent)} revocations acknowledged {now() - healed:.2f}s after SIGCONT")
            await settle(history, tokens, healed, QUICK_BUDGET + 30, "settled after SIGCONT")
            await assert_exact(procs, pool)
            await finish(prober, history)
        finally:
            if paused:
                resume_tree(pg_server.pid or 0)
            await prober.stop()
            await revoker.close()
            for proc in procs:
                await proc.close()
    assert_holds(history, budget=QUICK_BUDGET)

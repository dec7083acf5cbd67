"""Faults that hit the servers and the publisher: NATS killed while revoking, the relay leader
killed, JetStream's store lost, the revocation service partitioned from PostgreSQL.

Verifiers run as processes (``verifier_child.py``); each run ends with ``assert_holds``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from harness import (
    QUICK_BUDGET,
    Prober,
    Revoker,
    Tokens,
    VerifierProcess,
    assert_exact,
    assert_replays,
    kill9,
    latest,
    now,
    restart,
    settled,
    stream_seqs,
    wait_for,
    wipe_jetstream,
)
from history import History, assert_holds, measure
from proxy import FaultProxy

from tokenry.devstack import EmbeddedPostgres
from tokenry.servicekit.config import Settings
from tokenry.services.revocation.settings import RevocationSettings

from pipeline_support import (
    kill,
    make_keys,
    make_settings,
    mint,
    own_nats,
    spawn_revocation,
    stack,
)
from suite import register_clients, wait_serving

pytestmark = pytest.mark.integration


async def mint_tokens(pool: asyncpg.Pool, settings: Settings, n: int) -> tuple[Tokens, list[str]]:
    tokens = Tokens()
    jtis = []
    for _ in range(n):
        token, claims = await mint(pool, settings)
        tokens.add(token, claims["jti"])
        jtis.append(claims["jti"])
    return tokens, jtis


async def settle(history: History, tokens: Tokens, since: float, timeout: float, what: str) -> None:
    try:
        took = await wait_for(
            lambda: settled(history, tokens, history.verifiers(), since), timeout, what
        )
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; latest answers: {latest(history)}") from None
    print(f"{what}: {took:.2f}s")


async def finish(prober: Prober, history: History, budget: float) -> None:
    await prober.stop()
    await prober.final_round()
    print(measure(history).describe())


# --- NATS down while revoking ---------------------------------------------------------------


async def nats_down_run(
    tmp_path: Path, database_url: str, pool: asyncpg.Pool, *, budget: float, during: int
) -> None:
    server = await own_nats(tmp_path)
    try:
        settings = make_settings(database_url, server.url)
        async with stack(settings, pool, keyrotator=False) as svc:
            history = History()
            tokens, jtis = await mint_tokens(pool, settings, during + 5)
            before, revoked, controls = jtis[:2], jtis[2 : 2 + during], jtis[2 + during :]
            history.controls.update(controls)
            proc = await VerifierProcess.spawn(
                "v", settings, revocation_addr=svc.revocation.addr, budget=budget, log_dir=tmp_path
            )
            proc.watch = True
            revoker = Revoker(history, svc.secrets, svc.revocation.addr)
            prober = Prober(history, tokens, [proc], interval=0.01)
            try:
                await proc.wait_ready()
                prober.start()
                for jti in before:
                    await revoker.revoke(jti)
                await settle(history, tokens, now(), 20, "\nsteady state")
                index = history.fault_started("nats-server killed", now())
                await kill9(server)
                # The relay keeps heartbeating into its reconnect buffer (the old head)...
                await asyncio.sleep(0.5)
                # ...and NATS is not on the revocation path: every Revoke is acknowledged. A
                # backlog of this size takes the relay a while to publish after the restart:
                # the last ones revoked are the last published, and all of them are probed.
                for jti in revoked:
                    await revoker.revoke(jti)
                await asyncio.sleep(budget + 2.0)
                await restart(server)
                healed = now()
                history.fault_healed(index, healed)
                await settle(history, tokens, healed, budget + 30, "settled after the restart")
                await assert_exact([proc], pool)
                await finish(prober, history, budget)
            finally:
                await prober.stop()
                await revoker.close()
                await proc.close()
            assert_holds(history, budget=budget)
    finally:
        await asyncio.to_thread(server.stop)


async def test_nats_killed_while_revoking(
    tmp_path: Path, database_url: str, pool: asyncpg.Pool
) -> None:
    await nats_down_run(tmp_path, database_url, pool, budget=QUICK_BUDGET, during=150)


@pytest.mark.chaos
@pytest.mark.timeout(600)
@pytest.mark.parametrize("run", range(3))
async def test_chaos_nats_killed_while_revoking(
    tmp_path: Path, database_url: str, pool: asyncpg.Pool, run: int
) -> None:
    await nats_down_run(tmp_path, database_url, pool, budget=30.0, during=1000)


# --- the relay leader killed ---------------------------------------------------------------

RELAY_OPTIONS = RevocationSettings(heartbeat_interval=0.25, lease_ttl=1.0, sweep_interval=3600)


async def leader_pid(pool: asyncpg.Pool) -> int | None:
    holder = await pool.fetchval(
        "SELECT holder FROM leases WHERE name = 'event-publisher' AND expires_at > now()"
    )
    return int(holder.split(":")[2]) if holder else None


async def test_relay_leader_killed(tmp_path: Path, settings: Settings, pool: asyncpg.Pool) -> None:
    """Two revocation services, each with a relay; kill -9 the one holding the publisher
    lease while revoking through the other."""
    await leader_run(tmp_path, settings, pool, budget=QUICK_BUDGET)


@pytest.mark.chaos
@pytest.mark.timeout(600)
@pytest.mark.parametrize("run", range(3))
async def test_chaos_relay_leader_killed(
    tmp_path: Path, settings: Settings, pool: asyncpg.Pool, run: int
) -> None:
    await leader_run(tmp_path, settings, pool, budget=30.0)


async def leader_run(
    tmp_path: Path, settings: Settings, pool: asyncpg.Pool, *, budget: float
) -> None:
    secrets = await register_clients(pool, settings)
    await make_keys(settings, pool)  # and no key rotator: it would run a relay too
    procs = [spawn_revocation(settings, RELAY_OPTIONS, tmp_path / f"relay{i}.log") for i in (0, 1)]
    history = History()
    verifier: VerifierProcess | None = None
    revoker: Revoker | None = None
    prober: Prober | None = None
    try:
        for _, addr in procs:
            await wait_serving(addr, timeout=60)
        await wait_for(lambda: leader_pid(pool), 60, "a publisher leader")
        leader_id = await leader_pid(pool)
        leader = next(p for p, _ in procs if p.pid == leader_id)
        follower_addr = next(a for p, a in procs if p.pid != leader_id)
        tokens, jtis = await mint_tokens(pool, settings, 10)
        before, during, after, controls = jtis[:2], jtis[2:6], jtis[6:8], jtis[8:]
        history.controls.update(controls)
        verifier = await VerifierProcess.spawn(
            "v", settings, revocation_addr=follower_addr, budget=budget, log_dir=tmp_path
        )
        revoker = Revoker(history, secrets, follower_addr)
        prober = Prober(history, tokens, [verifier], interval=0.01)
        await verifier.wait_ready()
        prober.start()
        for jti in before:
            await revoker.revoke(jti)
        await settle(history, tokens, now(), 20, "\nsteady state")
        index = history.fault_started("relay leader killed", now())
        kill(leader)
        for jti in during:
            await revoker.revoke(jti)

        async def new_leader() -> bool:
            return (await leader_pid(pool)) not in (None, leader_id)

        took = await wait_for(new_leader, 30, "a new publisher leader")
        print(f"new leader {took:.2f}s after the kill")
        await settle(history, tokens, now(), budget + 20, "revocations made in failover")
        history.fault_healed(index, now())
        for jti in after:  # steady state again: liveness holds
            await revoker.revoke(jti)
        await settle(history, tokens, now(), 20, "settled after the failover")
        await assert_exact([verifier], pool)
        await finish(prober, history, budget)
    finally:
        if prober is not None:
            await prober.stop()
        if revoker is not None:
            await revoker.close()
        if verifier is not None:
            await verifier.close()
        for proc, _ in procs:
            if proc.poll() is None:
                kill(proc)
    assert_holds(history, budget=budget)


# --- JetStream store loss ------------------------------------------------------------------


async def test_jetstream_store_lost(tmp_path: Path, database_url: str, pool: asyncpg.Pool) -> None:
    """kill -9 nats-server, delete its store, start it empty: the stream (the accelerator) is
    gone, PostgreSQL (the record) is not. A verifier that was running and one started after
    the loss both refuse every acknowledged revocation."""
    await store_lost_run(tmp_path, database_url, pool, budget=QUICK_BUDGET)


@pytest.mark.chaos
@pytest.mark.timeout(600)
@pytest.mark.parametrize("run", range(3))
async def test_chaos_jetstream_store_lost(
    tmp_path: Path, database_url: str, pool: asyncpg.Pool, run: int
) -> None:
    await store_lost_run(tmp_path, database_url, pool, budget=30.0)


async def store_lost_run(
    tmp_path: Path, database_url: str, pool: asyncpg.Pool, *, budget: float
) -> None:
    server = await own_nats(tmp_path)
    try:
        settings = make_settings(database_url, server.url)
        async with stack(settings, pool, keyrotator=False) as svc:
            history = History()
            tokens, jtis = await mint_tokens(pool, settings, 9)
            before, during, controls = jtis[:3], jtis[3:6], jtis[6:]
            history.controls.update(controls)
            old = await VerifierProcess.spawn(
                "old",
                settings,
                revocation_addr=svc.revocation.addr,
                budget=budget,
                log_dir=tmp_path,
            )
            revoker = Revoker(history, svc.secrets, svc.revocation.addr)
            prober = Prober(history, tokens, [old], interval=0.01)
            new: VerifierProcess | None = None
            try:
                await old.wait_ready()
                prober.start()
                for jti in before:
                    await revoker.revoke(jti)
                await settle(history, tokens, now(), 20, "\nsteady state")
                index = history.fault_started("JetStream store lost", now())
                await wipe_jetstream(server)
                for jti in during:
                    await revoker.revoke(jti)
                healed = now()
                history.fault_healed(index, healed)
                new = await VerifierProcess.spawn(
                    "new",
                    settings,
                    revocation_addr=svc.revocation.addr,
                    budget=budget,
                    log_dir=tmp_path,
                )
                cold = history.fault_started("cold start", now(), {"new.0", "new.1"})
                prober.add(new)
                print(f"new verifiers ready in {await new.wait_ready():.2f}s")
                history.fault_healed(cold, now())
                await settle(history, tokens, now(), budget + 30, "settled after the loss")
                await assert_exact([old, new], pool)
                print(f"old: {await old.status()}")
                await finish(prober, history, budget)
            finally:
                await prober.stop()
                await revoker.close()
                for proc in (old, new):
                    if proc is not None:
                        await proc.close()
            assert_holds(history, budget=budget)
    finally:
        await asyncio.to_thread(server.stop)


# --- the revocation service partitioned from PostgreSQL ----------------------------------------


async def test_revocation_service_partitioned_from_postgres(
    tmp_path: Path, settings: Settings, pool: asyncpg.Pool, pg_server: EmbeddedPostgres
) -> None:
    """A blackhole between the revocation service (its API and its relay) and PostgreSQL: no
    heartbeats, no head answers, so verifiers fail closed within budget + 1 s; a Revoke sent
    during the partition is acknowledged only after the heal, and then refused everywhere."""
    socket_path = os.path.join(pg_server.socket_dir, ".s.PGSQL.5432")
    async with FaultProxy(socket_path) as proxy:
        dbname = urlsplit(settings.database_url).path.lstrip("/")
        via_proxy = dataclasses.replace(settings, database_url=proxy.pg_dsn(dbname))
        async with stack(via_proxy, pool, keyrotator=False) as svc:
            history = History()
            tokens, jtis = await mint_tokens(pool, settings, 6)
            before, during, controls = jtis[:2], jtis[2], jtis[3:]
            history.controls.update(controls)
            # The verifiers read the JWKS straight from PostgreSQL (settings, not via_proxy).
            proc = await VerifierProcess.spawn(
                "v", settings, revocation_addr=svc.revocation.addr, log_dir=tmp_path
            )
            revoker = Revoker(history, svc.secrets, svc.revocation.addr)
            prober = Prober(history, tokens, [proc], interval=0.01)
            try:
                await proc.wait_ready()
                prober.start()
                for jti in before:
                    await revoker.revoke(jti)
                await settle(history, tokens, now(), 20, "\nsteady state")
                index = history.fault_started("revocation service cut from PostgreSQL", now())
                proxy.blackhole()
                late = asyncio.create_task(_revoke_eventually(revoker, during))
                await asyncio.sleep(QUICK_BUDGET + 2.0)
                assert not late.done()  # nothing can be acknowledged without PostgreSQL
                proxy.heal()
                healed = now()
                history.fault_healed(index, healed)
                await late
                await settle(history, tokens, healed, QUICK_BUDGET + 30, "settled after the heal")
                await assert_exact([proc], pool)
                await finish(prober, history, QUICK_BUDGET)
            finally:
                await prober.stop()
                await revoker.close()
                await proc.close()
            print(f"proxy accepted {proxy.accepted} connections")
            assert_holds(history, budget=QUICK_BUDGET)


async def _revoke_eventually(revoker: Revoker, jti: str) -> None:
    """Retry until acknowledged (UNAVAILABLE while PostgreSQL is unreachable)."""
    while True:
        try:
            await revoker.revoke(jti, timeout=30)
            return
        except Exception:
            await asyncio.sleep(0.2)


# --- the relay leader killed mid-backlog ------------------------------------------------------


async def applied(proc: VerifierProcess | None, seq: int) -> bool:
    assert proc is not None
    return all(v["applied_seq"] >= seq for v in (await proc.status()).values())


async def stream_last(nats_url: str, stream: str) -> int:
    import nats

    nc = await nats.connect(nats_url)
    try:
        return int((await nc.jetstream().stream_info(stream)).state.messages)
    finally:
        await nc.close()


@pytest.mark.parametrize("when", ["held", "draining"])
async def test_relay_leader_killed_mid_backlog(
    tmp_path: Path, settings: Settings, pool: asyncpg.Pool, when: str
) -> None:
    """Two revocation services whose relays reach NATS through the proxy. A backlog of 300
    acknowledged revocations builds while the link is blackholed; the lease holder is killed
    (``held``: while its in-flight publishes sit in the proxy, delivered after the heal as a
    dead process's packets would be; ``draining``: after the heal, once the stream has taken
    part of the backlog). The other relay takes over: the stream ends with every outbox seq
    once, in order, and every verifier refuses every acknowledged revocation."""
    secrets = await register_clients(pool, settings)
    await make_keys(settings, pool)
    nats_port = int(settings.nats_url.rsplit(":", 1)[1])
    async with FaultProxy(("127.0.0.1", nats_port)) as proxy:
        relayed = dataclasses.replace(settings, nats_url=proxy.nats_url)
        procs = [
            spawn_revocation(relayed, RELAY_OPTIONS, tmp_path / f"relay{i}.log") for i in (0, 1)
        ]
        history = History()
        verifier: VerifierProcess | None = None
        revoker: Revoker | None = None
        prober: Prober | None = None
        try:
            for _, addr in procs:
                await wait_serving(addr, timeout=60)
            await wait_for(lambda: leader_pid(pool), 60, "a publisher leader")
            leader_id = await leader_pid(pool)
            leader = next(p for p, _ in procs if p.pid == leader_id)
            follower_addr = next(a for p, a in procs if p.pid != leader_id)
            tokens, jtis = await mint_tokens(pool, settings, 8)
            before, probed, controls = jtis[:2], jtis[2:5], jtis[5:]
            history.controls.update(controls)
            verifier = await VerifierProcess.spawn(
                "v", settings, revocation_addr=follower_addr, log_dir=tmp_path
            )
            revoker = Revoker(history, secrets, follower_addr)
            prober = Prober(history, tokens, [verifier], interval=0.01)
            await verifier.wait_ready()
            prober.start()
            for jti in before:
                await revoker.revoke(jti)
            await settle(history, tokens, now(), 20, "\nsteady state")
            published = await stream_last(settings.nats_url, settings.stream.name)
            index = history.fault_started("relay leader killed mid-backlog", now())
            proxy.blackhole()
            # The backlog: jtis of tokens nobody holds (checked by the state hash at the end),
            # with the probed tokens' revocations in the middle of it.
            backlog = [str(uuid.uuid4()) for _ in range(300)]
            bulk = Revoker(History(), secrets, follower_addr)
            sem = asyncio.Semaphore(16)

            async def revoke(jti: str) -> None:
                async with sem:
                    await (revoker if jti in probed else bulk).revoke(jti)

            await asyncio.gather(*(revoke(j) for j in [*backlog[:150], *probed, *backlog[150:]]))
            await bulk.close()
            if when == "held":
                await asyncio.sleep(0.5)  # its window of publishes is in the proxy
                kill(leader)
                killed = now()
                proxy.heal()
            else:
                proxy.heal()
                proxy.latency(0.02)  # a slower drain, to kill it half-way

                async def drained_some() -> bool:
                    return await stream_last(settings.nats_url, settings.stream.name) > published

                await wait_for(drained_some, 20, "part of the backlog published")
                kill(leader)
                killed = now()
                taken = await stream_last(settings.nats_url, settings.stream.name) - published
                print(f"\nkilled with {taken} of {len(backlog) + len(probed)} in the stream")
                proxy.heal()

            async def new_leader() -> bool:
                return (await leader_pid(pool)) not in (None, leader_id)

            took = await wait_for(new_leader, 30, "a new publisher leader")
            print(f"new leader {took:.2f}s after the kill")
            history.fault_healed(index, now())
            await settle(history, tokens, killed, QUICK_BUDGET + 30, "settled after the failover")
            top = await pool.fetchval("SELECT max(seq) FROM outbox")
            await wait_for(lambda: applied(verifier, top), 20, "every verifier at the top")
            await assert_replays([verifier], pool)
            await finish(prober, history, QUICK_BUDGET)
        finally:
            if prober is not None:
                await prober.stop()
            if revoker is not None:
                await revoker.close()
            if verifier is not None:
                await verifier.close()
            for proc, _ in procs:
                if proc.poll() is None:
                    kill(proc)
    seqs = await stream_seqs(settings.nats_url, settings.stream.name)
    out_of_order = [(a, b) for a, b in itertools.pairwise(seqs) if b <= a]
    assert not out_of_order, f"stream order broken at {out_of_order[:5]}"
    assert seqs == list(range(1, top + 1)), f"stream holds {len(seqs)} events for {top} seqs"
    assert_holds(history, budget=QUICK_BUDGET)


# --- a 100k revocation flood (chaos tier) ------------------------------------------------------

FLOOD = int(os.environ.get("TOKENRY_FLOOD", "100000"))


@pytest.mark.chaos
@pytest.mark.timeout(1800)
async def test_chaos_revocation_flood(
    tmp_path: Path, settings: Settings, pool: asyncpg.Pool
) -> None:
    """100,000 acknowledged revocations, 64 in flight, with the default budget; probed tokens
    are revoked at intervals inside the flood. No fault is declared: the flood is load, so
    the steady-state bound (ack + 1 s) applies to them. Every verifier ends exact: its state
    hashes equal to the replay of the 100k-event outbox from zero. ``TOKENRY_FLOOD`` sets the
    count (default 100,000)."""
    budget = 30.0
    async with stack(settings, pool, keyrotator=False) as svc:
        history = History()
        tokens, jtis = await mint_tokens(pool, settings, 20)
        probed, controls = jtis[:10], jtis[10:]
        history.controls.update(controls)
        procs = [
            await VerifierProcess.spawn(
                name, settings, revocation_addr=svc.revocation.addr, budget=budget, log_dir=tmp_path
            )
            for name in ("a", "b")
        ]
        revoker = Revoker(history, svc.secrets, svc.revocation.addr)
        bulk = Revoker(History(), svc.secrets, svc.revocation.addr)
        prober = Prober(history, tokens, procs, interval=0.05)
        try:
            for proc in procs:
                await proc.wait_ready()
            prober.start()
            await settle(history, tokens, now(), 20, "\nsteady state")
            every = max(1, FLOOD // len(probed))
            queue = [str(uuid.uuid4()) for _ in range(FLOOD)]
            for k, jti in enumerate(probed):
                queue.insert(k * every + every // 2 + k, jti)
            sem = asyncio.Semaphore(64)
            started = now()

            async def revoke(jti: str) -> None:
                async with sem:
                    await (revoker if jti in probed else bulk).until_acked(jti)

            await asyncio.gather(*(revoke(j) for j in queue))
            took = now() - started
            print(
                f"{len(queue)} revocations acknowledged in {took:.1f}s ({len(queue) / took:.0f}/s)"
            )
            top = await pool.fetchval("SELECT max(seq) FROM outbox")

            async def all_at_top() -> bool:
                return all([await applied(proc, top) for proc in procs])

            lag = await wait_for(all_at_top, budget + 120, "every verifier at the top")
            print(f"every verifier at seq {top} {lag:.2f}s after the last ack")
            await settle(history, tokens, now(), 30, "settled after the flood")
            await finish(prober, history, budget)
            await assert_replays(procs, pool)
        finally:
            await prober.stop()
            await revoker.close()
            await bulk.close()
            for proc in procs:
                await proc.close()
    assert_holds(history, budget=budget)

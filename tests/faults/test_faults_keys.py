"""Faults on the key path: a slow or unreachable JWKS source (the key rotator behind the
proxy, with latency, then a blackhole), and the key rotator killed during a rotation.

Key material comes from the key rotator's JWKS, events only hint a refetch (docs/spec.md §4.6):
while the source is away, tokens of keys the verifier holds keep verifying (and revoked ones stay
refused), a token of a key it has never seen fails closed, and verifies once the source is
back. Each run ends with ``assert_holds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import grpc
import pytest
from harness import (
    QUICK_BUDGET,
    InProcess,
    Prober,
    Revoker,
    VerifierProcess,
    assert_exact,
    assert_replays,
    finish,
    mint_tokens,
    now,
    settle,
    stream_seqs,
    wait_for,
)
from history import OK, REVOKED, UNAVAILABLE, History, assert_holds
from proxy import FaultProxy
from verifier_child import outcome_of

from tokenry.devstack import EmbeddedPostgres
from tokenry.devstack.ports import free_tcp_port
from tokenry.servicekit.config import Settings
from tokenry.v1 import keyrotator_pb2, keyrotator_pb2_grpc

from pipeline_support import (
    FAST_REVOCATION,
    basic,
    kill,
    make_keys,
    mint,
    stack,
    start_service,
)
from suite import process_env, register_clients, wait_serving

pytestmark = pytest.mark.integration


def outcomes(history: History, verifier: str, jti: str, since: float) -> list[tuple[float, str]]:
    return [
        (p.at, p.outcome)
        for p in history.probes
        if p.verifier == verifier and p.jti == jti and p.at >= since
    ]


async def test_slow_then_unreachable_jwks_source(
    tmp_path: Path, settings: Settings, pool: asyncpg.Pool
) -> None:
    async with stack(settings, pool) as svc:
        assert svc.keyrotator is not None
        rotator_port = int(svc.keyrotator.addr.rsplit(":", 1)[1])
        async with FaultProxy(("127.0.0.1", rotator_port)) as proxy:
            history = History()
            tokens, jtis = await mint_tokens(pool, settings, 7)
            before, during, controls = jtis[:2], jtis[2:4], jtis[4:]
            history.controls.update(controls)
            runtime = await svc.verifier(keyrotator_addr=proxy.addr, staleness_budget=QUICK_BUDGET)
            revoker = Revoker(history, svc.secrets, svc.revocation.addr)
            target = InProcess("v", [runtime], by_end=True)
            prober = Prober(history, tokens, [target], interval=0.01).start()
            channel = grpc.aio.insecure_channel(svc.keyrotator.addr)  # not through the proxy
            try:
                for jti in before:
                    await revoker.revoke(jti)
                await settle(history, tokens, now(), 20, "\nsteady state")
                # The source slows down, then stops answering (no FIN, no RST). Neither makes
                # the verifier stale: it proves currency with the revocation service.
                index = history.fault_started("JWKS source slow, then blackholed", now())
                proxy.latency(2.0)
                await revoker.revoke(during[0])
                await asyncio.sleep(1.0)
                proxy.blackhole()
                await revoker.revoke(during[1])
                await settle(history, tokens, now(), 10, "known kids verify, source blackholed")
                # A new key signs: the verifier learns of it by its event, cannot fetch it.
                # The next key is published ahead of its activation, so the verifier holds it
                # already: rotate until the key that signs is one it never fetched.
                kr = keyrotator_pb2_grpc.KeyRotatorStub(channel)
                for _ in range(3):
                    rotated = await kr.Rotate(
                        keyrotator_pb2.RotateRequest(force=True, request_id=str(uuid.uuid4())),
                        metadata=[("authorization", basic("admin", svc.secrets["admin"]))],
                        timeout=10,
                    )
                    if rotated.active_kid not in runtime.jwks.keys:
                        break
                assert rotated.active_kid not in runtime.jwks.keys
                token, body = await mint(pool, settings)
                assert token.split(".")[0] != next(iter(tokens.jtis)).split(".")[0]
                unknown = body["jti"]
                tokens.add(token, unknown)
                history.controls.add(unknown)
                new_key = now()
                # A request for it waits for the refresh (GetJwks times out after 5 s), then
                # fails closed; the probes go on meanwhile.
                asked = now()
                outcome, answered = await outcome_of(runtime.verifier, token, by_end=True)
                print(f"\nunknown kid, source away: {outcome} after {answered - asked:.2f}s")
                # An outage is not an unknown key: retry later (UNAVAILABLE), never "invalid".
                assert outcome == UNAVAILABLE
                await asyncio.sleep(1.0)
                proxy.heal()
                healed = now()
                history.fault_healed(index, healed)
                await settle(history, tokens, healed, QUICK_BUDGET + 20, "new kid verifies")
                await assert_exact([target], pool)
                await finish(prober, history)
            finally:
                await prober.stop()
                await revoker.close()
                await channel.close()
        seen = outcomes(history, "v.0", unknown, new_key)
        while_away = {o for t, o in seen if t < healed}
        first_ok = next(t for t, o in seen if t >= healed and o == OK)
        print(
            f"rotated to {rotated.active_kid}; the new kid answered {sorted(while_away)} while"
            f" the source was away, verified {first_ok - healed:.2f}s after the heal"
        )
        assert while_away and OK not in while_away and REVOKED not in while_away
        # Known kids kept verifying throughout: every control accepted at every probe.
        refused = [
            p for p in history.probes if p.jti in controls and p.jti != unknown and p.outcome != OK
        ]
        assert not refused, f"{len(refused)} refusals of tokens of a known key"
        assert_holds(history, budget=QUICK_BUDGET)


# --- the key rotator killed during a rotation ---------------------------------------------------


def rotator_env(settings: Settings, listen: str) -> dict[str, str]:
    assert settings.kek is not None
    extra = {
        "TOKENRY_DEV": "1",
        "TOKENRY_KEYROTATOR_LISTEN": listen,
        # No scheduled rotation during the run: every rotation is the test's.
        "TOKENRY_KEY_ROTATION_INTERVAL": "1h",
        "TOKENRY_KEYROTATOR_LEASE_TTL": "1s",
        "TOKENRY_LOG_LEVEL": "WARNING",
    }
    return process_env(settings, extra)


class Rotator:
    """A key rotator process (its RPCs, its schedule, its outbox relay)."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.addr = f"127.0.0.1:{free_tcp_port()}"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tokenry.services.keyrotator"],
                env=rotator_env(settings, self.addr),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.channel = grpc.aio.insecure_channel(self.addr)

    async def rotate(
        self, secrets: dict[str, str], request_id: str, timeout: float = 10
    ) -> keyrotator_pb2.RotateResponse:
        stub = keyrotator_pb2_grpc.KeyRotatorStub(self.channel)
        return await stub.Rotate(
            keyrotator_pb2.RotateRequest(force=True, request_id=request_id),
            metadata=[("authorization", basic("admin", secrets["admin"]))],
            timeout=timeout,
        )

    async def until_rotated(
        self, secrets: dict[str, str], request_id: str
    ) -> keyrotator_pb2.RotateResponse:
        for _ in range(100):
            try:
                return await self.rotate(secrets, request_id, timeout=5)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ):
                    raise
                await asyncio.sleep(0.2)
        raise TimeoutError("the rotation was never answered")

    async def kill(self) -> None:
        kill(self.proc)  # type: ignore[arg-type]
        await self.channel.close()


def claim_key(request_id: str) -> bytes:
    """What ``idempotency.claim`` locks, inside the write's transaction (a bound parameter)."""
    return f"idempotency/admin/{request_id}".encode()


async def key_count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM signing_keys"))


async def rotator_run(
    tmp_path: Path,
    settings: Settings,
    pool: asyncpg.Pool,
    pg_server: EmbeddedPostgres,
    *,
    sole_publisher: bool,
    budget: float,
) -> None:
    secrets = await register_clients(pool, settings)
    await make_keys(settings, pool)
    socket_path = os.path.join(pg_server.socket_dir, ".s.PGSQL.5432")
    dbname = urlsplit(settings.database_url).path.lstrip("/")
    nats_port = int(settings.nats_url.rsplit(":", 1)[1])
    # sole_publisher: the revocation service runs no relay, so a dead rotator's relay leaves
    # the events unpublished until another rotator's relay takes its lease over (5 s).
    options = dataclasses.replace(FAST_REVOCATION, relay=not sole_publisher)
    async with (
        FaultProxy(socket_path) as db,
        FaultProxy(("127.0.0.1", nats_port)) as bus,
    ):
        rot_settings = dataclasses.replace(
            settings, database_url=db.pg_dsn(dbname), nats_url=bus.nats_url
        )
        revocation = await start_service("revocation", settings, options=options)
        history = History()
        tokens, jtis = await mint_tokens(pool, settings, 5)
        before, during, controls = jtis[:1], jtis[1:3], jtis[3:]
        history.controls.update(controls)
        verifier = await VerifierProcess.spawn(
            "v", settings, revocation_addr=revocation.addr, budget=budget, log_dir=tmp_path
        )
        revoker = Revoker(history, secrets, revocation.addr)
        prober = Prober(history, tokens, [verifier], interval=0.01)
        rotators: list[Rotator] = []

        def spawn() -> Rotator:
            rotators.append(Rotator(rot_settings, tmp_path / f"rotator{len(rotators)}.log"))
            return rotators[-1]

        async def new_key_verifies(what: str) -> None:
            token, body = await mint(pool, settings)
            tokens.add(token, body["jti"])
            history.controls.add(body["jti"])
            await settle(history, tokens, now(), budget + 30, what)

        try:
            rotator = spawn()
            await wait_serving(rotator.addr, timeout=60)
            await verifier.wait_ready()
            prober.start()
            await revoker.revoke(before[0])
            await settle(history, tokens, now(), 20, "\nsteady state")

            # 1. Killed inside the rotation's transaction: held right after its first statement
            #    there (the idempotency claim's lock, whose key names the request_id: a bound
            #    parameter, so it is on the wire even for a prepared statement), before any
            #    key is written.
            keys = await key_count(pool)
            index = history.fault_started("rotator killed in its transaction", now())
            rid = str(uuid.uuid4())
            db.hold_after(claim_key(rid))
            attempt = asyncio.create_task(rotator.rotate(secrets, rid))
            await asyncio.wait_for(db.holding.wait(), 20)
            await rotator.kill()
            # Its channel closed with it: the call ends cancelled, or UNAVAILABLE.
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
                await attempt
            await revoker.revoke(during[0])
            rotator = spawn()
            await rotator.until_rotated(secrets, rid)
            assert await key_count(pool) == keys + 1, "not exactly one rotation"
            await new_key_verifies("a key rotated after a kill in the transaction verifies")
            history.fault_healed(index, now())

            # 2. Killed after the commit, its answer lost.
            keys = await key_count(pool)
            index = history.fault_started("rotator killed after commit", now())
            rid = str(uuid.uuid4())
            db.cut_after_commit(claim_key(rid))
            with pytest.raises(grpc.aio.AioRpcError):
                await rotator.rotate(secrets, rid)
            assert db.commit_cut.is_set()
            await rotator.kill()
            await revoker.revoke(during[1])
            rotator = spawn()
            first = await rotator.until_rotated(secrets, rid)
            again = await rotator.rotate(secrets, rid)
            assert again.SerializeToString() == first.SerializeToString()
            assert await key_count(pool) == keys + 1, "not exactly one rotation"
            await new_key_verifies("a key rotated after a kill after commit verifies")
            history.fault_healed(index, now())

            # 3. Answered, then killed before its relay could publish the key events.
            keys = await key_count(pool)
            index = history.fault_started("rotator killed before publishing", now())
            bus.blackhole()
            await rotator.rotate(secrets, str(uuid.uuid4()))
            await rotator.kill()
            bus.heal()
            rotator = spawn()
            await wait_serving(rotator.addr, timeout=60)
            assert await key_count(pool) == keys + 1
            await new_key_verifies("a key rotated before a kill before publishing verifies")
            history.fault_healed(index, now())
            await finish(prober, history)
            top = await pool.fetchval("SELECT max(seq) FROM outbox")
            await wait_for(
                lambda: verifier_at(verifier, top), budget + 20, "the verifier at the top"
            )
            await assert_replays([verifier], pool)

            # The verifier may have caught up by a snapshot: the stream must get every event
            # too (a dead rotator's lease must run out before the live one publishes).
            async def stream_complete() -> bool:
                seqs = await stream_seqs(settings.nats_url, settings.stream.name)
                return bool(seqs) and seqs[-1] >= top

            took = await wait_for(stream_complete, 30, "every event in the stream")
            print(f"the stream complete {took:.2f}s after the checks")
        finally:
            await prober.stop()
            await revoker.close()
            await verifier.close()
            for r in rotators:
                if r.proc.poll() is None:
                    await r.kill()
            await revocation.stop()
    top = await pool.fetchval("SELECT max(seq) FROM outbox")
    seqs = await stream_seqs(settings.nats_url, settings.stream.name)
    assert seqs == list(range(1, top + 1)), (
        f"stream: {len(seqs)} events for {top} seqs, or out of order"
    )
    assert_holds(history, budget=budget)


async def verifier_at(proc: VerifierProcess, seq: int) -> bool:
    return all(v["applied_seq"] >= seq for v in (await proc.status()).values())


async def test_key_rotator_killed_during_a_rotation(
    tmp_path: Path, settings: Settings, pool: asyncpg.Pool, pg_server: EmbeddedPostgres
) -> None:
    """kill -9 the key rotator inside a rotation's transaction, after its commit (answer
    lost), and after its answer but before its relay published: each retried rotation (same
    request_id) rotates once, tokens of each new key verify everywhere, the stream holds every
    outbox seq once and in order, and the verifier's state equals the replay from zero."""
    await rotator_run(
        tmp_path, settings, pool, pg_server, sole_publisher=False, budget=QUICK_BUDGET
    )


@pytest.mark.chaos
@pytest.mark.timeout(600)
@pytest.mark.parametrize("run", range(3))
async def test_chaos_key_rotator_killed_sole_publisher(
    tmp_path: Path, settings: Settings, pool: asyncpg.Pool, pg_server: EmbeddedPostgres, run: int
) -> None:
    """The same with the rotators' relays as the only publisher (a dead one's lease must
    expire before the next publishes) and the default 30 s budget."""
    await rotator_run(tmp_path, settings, pool, pg_server, sole_publisher=True, budget=30.0)

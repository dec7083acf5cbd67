"""Admin revocation by jti, grant, subject and client; ListRevocations; PostgreSQL-backed checks;
the sweeper — against the real service, PostgreSQL and NATS."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator

import asyncpg
import grpc
import nats
import pytest

from tokenry.bus import codec
from tokenry.bus.codec import Subjects
from tokenry.core.clock import SystemClock
from tokenry.core.events import OutboxEvent
from tokenry.core.revocations import EXPIRY_LEEWAY, Revocation, RevocationKind
from tokenry.servicekit.config import Settings
from tokenry.services.revocation.sweeper import Sweeper
from tokenry.store.outbox import OutboxStore
from tokenry.store.revocation_checks import RevocationChecks
from tokenry.store.revocations import RevocationStore
from tokenry.v1 import events_pb2, revocation_pb2
from tokenry.verifier.errors import RevokedError

from pipeline_support import Stack, mint, oauth_code, stack

pytestmark = pytest.mark.integration


@pytest.fixture
async def svc(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Stack]:
    async with stack(settings, pool) as s:
        yield s


async def test_admin_kinds_need_the_admin_scope(svc: Stack, pool: asyncpg.Pool) -> None:
    for target in ("jti", "grant_id", "subject", "client_id"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await svc.revoke("demo", **{target: "x"})
        assert oauth_code(err.value) == (grpc.StatusCode.PERMISSION_DENIED, "insufficient_scope")
    assert await pool.fetchval("SELECT count(*) FROM revocations") == 0


BAD_INPUT: list[dict[str, object]] = [
    {},
    {"jti": ""},
    {"jti": "has space"},
    {"jti": "x" * 256},
    {"grant_id": "é"},
    {"subject": "a\nb"},
    {"client_id": "c" * 256},
    {"token": ""},
    {"token": "x" * 8193},
    {"token": "bad\x00token"},
    {"jti": "ok", "reason": "r" * 201},
    {"jti": "ok", "reason": "line\nbreak"},
    {"jti": "ok", "expires_at": -1},
]


async def test_bad_input_is_invalid_request_and_writes_nothing(
    svc: Stack, pool: asyncpg.Pool
) -> None:
    for target in BAD_INPUT:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await svc.revoke("admin", **target)
        assert oauth_code(err.value) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_request"), (
            target
        )
    assert await pool.fetchval("SELECT count(*) FROM revocations") == 0
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE subject LIKE '%revoc%'") == 0


async def test_jti_revocation_lasts_until_the_given_exp(svc: Stack, pool: asyncpg.Pool) -> None:
    exp = int(time.time()) + 120
    resp = await svc.revoke(jti="j-1", expires_at=exp, reason="incident 42")
    assert resp.kind == events_pb2.REVOCATION_KIND_JTI
    assert resp.expires_at == exp + EXPIRY_LEEWAY
    past = await svc.revoke(jti="j-2", expires_at=int(time.time()) - 3600)
    assert past.seq == 0  # no verifier accepts that token any more: nothing to remember


async def test_each_admin_kind_is_enforced_by_a_verifier(svc: Stack, pool: asyncpg.Pool) -> None:
    runtime = await svc.verifier()
    by_grant, c1 = await mint(pool, svc.settings)
    by_subject, _ = await mint(pool, svc.settings, sub="alice", client_id="web")
    by_client, _ = await mint(pool, svc.settings, sub="bob", client_id="batch")
    survivor, _ = await mint(pool, svc.settings, sub="carol", client_id="web2")
    seqs = [
        (await svc.revoke(grant_id=c1["gid"])).seq,
        (await svc.revoke(subject="alice")).seq,
        (await svc.revoke(client_id="batch")).seq,
    ]
    await asyncio.wait_for(runtime.state.wait_for_seq(max(seqs)), timeout=10)
    for token, kind in ((by_grant, "grant"), (by_subject, "subject"), (by_client, "client")):
        with pytest.raises(RevokedError) as err:
            await runtime.verifier.verify(token)
        assert kind in err.value.description
    assert (await runtime.verifier.verify(survivor))["sub"] == "carol"


async def test_subject_watermark_is_ceil_now_plus_the_clock_skew(svc: Stack) -> None:
    before = time.time()
    resp = await svc.revoke(subject="alice")
    after = time.time()
    assert resp.kind == events_pb2.REVOCATION_KIND_SUBJECT
    assert math.ceil(before) + 2 <= resp.not_before <= math.ceil(after) + 2


async def test_events_carry_kind_value_reason_and_actor(svc: Stack) -> None:
    nc = await nats.connect(svc.settings.nats_url)
    try:
        received: asyncio.Queue[codec.DecodedEvent] = asyncio.Queue()

        async def on_msg(msg: nats.aio.msg.Msg) -> None:
            await received.put(codec.decode(msg.data))

        await nc.subscribe(f"{svc.settings.subjects.prefix}.events.revocation.>", cb=on_msg)
        await nc.flush()
        resp = await svc.revoke(client_id="batch", reason="compromised")
        event = await asyncio.wait_for(received.get(), timeout=10)
    finally:
        await nc.close()
    assert event.seq == resp.seq and event.actor == "admin"
    assert event.revocation == Revocation(
        RevocationKind.CLIENT, "batch", resp.not_before, resp.expires_at, "compromised"
    )


async def test_list_revocations_streams_a_consistent_snapshot_in_batches(
    svc: Stack, pool: asyncpg.Pool
) -> None:
    store = RevocationStore(pool)
    subjects = Subjects("unused")
    now = int(time.time())
    for i in range(2_500):
        rev = Revocation(RevocationKind.JTI, f"j{i}", 0, now + 600)
        await store.revoke(rev, "admin", codec.revocation_event(subjects, rev, now))
    expired = Revocation(RevocationKind.JTI, "old", 0, now - 1)
    await store.revoke(expired, "admin", codec.revocation_event(subjects, expired, now))
    resp = await svc.revoke(subject="alice")
    messages = [
        m
        async for m in svc.stub().ListRevocations(
            revocation_pb2.ListRevocationsRequest(batch_size=10), timeout=30
        )
    ]
    # Batches of at least 1,000 entries (a smaller request is raised), the seq in every one.
    sizes = [len(m.jtis) + len(m.grant_ids) + len(m.subjects) + len(m.clients) for m in messages]
    assert sizes == [1_000, 1_000, 501]
    assert {m.seq for m in messages} == {resp.seq}
    assert [m.last for m in messages] == [False, False, True] and messages[-1].total == 2_501
    jtis = {j for m in messages for j in m.jtis}
    assert len(jtis) == 2_500 and "old" not in jtis  # expired entries are not listed
    assert [w.value for m in messages for w in m.subjects] == ["alice"]


async def test_postgres_backed_check_matches_the_verifier_rules(
    svc: Stack, pool: asyncpg.Pool
) -> None:
    await svc.revoke(jti="j1")
    sub = await svc.revoke(subject="alice")
    check = RevocationChecks(pool).revoked_kind
    none = {"gid": None, "client_id": None}
    assert await check(jti="j1", subject=None, issued_at=0, **none) == "jti"
    assert await check(jti="x", subject="alice", issued_at=sub.not_before - 1, **none) == "subject"
    assert await check(jti="x", subject="alice", issued_at=sub.not_before, **none) is None
    # The former expiry-filtered copy (RevocationStore.check) is gone: an expired row counts
    # until the sweeper drops it, as an entry of a verifier's set counts until its sweep (the
    # token it covers has expired by then). tests/integration/test_revocation_rule_sql.py
    # proves the SQL and the Python rule agree.


async def test_sweeper_deletes_expired_revocations_and_old_published_outbox_rows(
    pool: asyncpg.Pool,
) -> None:
    store, outbox = RevocationStore(pool), OutboxStore(pool)
    subjects = Subjects("unused")
    now = int(time.time())
    for value, expires in (("gone", now - 5), ("kept", now + 600)):
        rev = Revocation(RevocationKind.JTI, value, 0, expires)
        await store.revoke(rev, "admin", codec.revocation_event(subjects, rev, now))
    # Both events published: one long ago, one just now; plus one never published.
    await pool.execute("UPDATE outbox SET published_at = now() - interval '3 hours' WHERE seq = 1")
    await pool.execute("UPDATE outbox SET published_at = now() WHERE seq = 2")
    rev = Revocation(RevocationKind.JTI, "unpublished", 0, now + 600)
    await store.revoke(rev, "admin", codec.revocation_event(subjects, rev, now))
    sweeper = Sweeper(revocations=store, outbox=outbox, clock=SystemClock(), outbox_max_age=7200)
    result = await sweeper.sweep_once()
    assert (result.revocations, result.outbox) == (1, 1)
    assert {r["value"] for r in await pool.fetch("SELECT value FROM revocations")} == {
        "kept",
        "unpublished",
    }
    assert [r["seq"] for r in await pool.fetch("SELECT seq FROM outbox ORDER BY seq")] == [2, 3]
    assert await sweeper.sweep_once() == type(result)(0, 0)


async def test_revoke_and_event_commit_together_in_seq_order(pool: asyncpg.Pool) -> None:
    """Concurrent producers: every revocation has its event, seqs gap-free in commit order."""
    store = RevocationStore(pool)
    subjects = Subjects("unused")
    now = int(time.time())

    async def one(i: int) -> int:
        rev = Revocation(RevocationKind.JTI, f"c{i}", 0, now + 600)
        event: OutboxEvent = codec.revocation_event(subjects, rev, now)
        return (await store.revoke(rev, "admin", event)).seq

    seqs = await asyncio.gather(*(one(i) for i in range(200)))
    assert sorted(seqs) == list(range(1, 201))
    rows = await pool.fetch("SELECT r.seq FROM revocations r JOIN outbox o USING (seq)")
    assert len(rows) == 200

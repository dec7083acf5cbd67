"""Group-committed revocations (issue 11): a batch is one statement, and each revocation in it
keeps its own semantics — dedupe (against the table and earlier items), its own seq in item
order, gap-free, its outbox row, its idempotency record — against real PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest

from tokenry.bus import codec
from tokenry.bus.codec import Subjects
from tokenry.core.revocations import Revocation, RevocationKind
from tokenry.store.idempotency import IdempotencyKey, body_hash
from tokenry.store.revocations import RevocationStore, RevokeItem, RevokeResult

pytestmark = pytest.mark.integration
SUBJECTS = Subjects("unused")
NOW = int(time.time())


def item(
    value: str,
    expires_at: int = NOW + 600,
    *,
    kind: RevocationKind = RevocationKind.JTI,
    given: bool = True,
    idem: IdempotencyKey | None = None,
) -> RevokeItem:
    rev = Revocation(kind, value, 0, expires_at)
    return RevokeItem(
        rev,
        "admin",
        codec.revocation_event(SUBJECTS, rev, NOW),
        expiry_given=given,
        idem=idem,
        respond=lambda r: f"seq={r.seq}".encode(),
    )


async def gap_free(pool: asyncpg.Pool) -> None:
    head = await pool.fetchval("SELECT seq FROM outbox_counter")
    seqs = await pool.fetchval("SELECT coalesce(array_agg(seq ORDER BY seq), '{}') FROM outbox")
    assert seqs == list(range(1, head + 1))


async def test_each_item_keeps_its_own_dedupe_and_seq_in_item_order(pool: asyncpg.Pool) -> None:
    store = RevocationStore(pool)
    results = await store.revoke_many(
        [item("a"), item("a"), item("b"), item("a", NOW + 900), item("a", NOW + 100)]
    )
    assert results == [
        RevokeResult(1, True),
        RevokeResult(1, False),  # the same batch's earlier item already covers it
        RevokeResult(2, True),
        RevokeResult(3, True),  # a caller-given expiry raised: news
        RevokeResult(3, False),  # a lower one: covered
    ]
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 3
    assert await pool.fetchval("SELECT expires_at FROM revocations WHERE value = 'a'") == NOW + 900
    await gap_free(pool)


async def test_concurrent_overlapping_batches_write_each_revocation_once(
    pool: asyncpg.Pool,
) -> None:
    store = RevocationStore(pool)
    values = [f"v{i}" for i in range(60)]
    batches = [[item(v) for v in values[k::3] + values[: 10 * (k % 3)]] for k in range(9)]
    answers = await asyncio.gather(*(store.revoke_many(b) for b in batches))
    seqs: dict[str, set[int]] = {}
    for batch, results in zip(batches, answers, strict=True):
        for it, res in zip(batch, results, strict=True):
            seqs.setdefault(it.rev.value, set()).add(res.seq)
    assert all(len(s) == 1 for s in seqs.values())
    assert await pool.fetchval("SELECT count(*) FROM outbox") == len(values)
    await gap_free(pool)


async def test_idempotency_records_in_a_batch(pool: asyncpg.Pool) -> None:
    store = RevocationStore(pool)
    key = IdempotencyKey("admin", uuid.uuid4(), body_hash("Revoke", b"one"))
    other_body = IdempotencyKey("admin", key.request_id, body_hash("Revoke", b"two"))
    results = await store.revoke_many(
        [item("x", idem=key), item("x", idem=key), item("y", idem=other_body), item("z")]
    )
    assert results[0] == RevokeResult(1, True)
    assert results[1] == RevokeResult(0, False, replay=b"seq=1")  # same batch, same request
    assert results[2].mismatch and results[2].seq == 0  # same id, another body: nothing done
    assert results[3] == RevokeResult(2, True)
    assert await pool.fetchval("SELECT response FROM idempotency_records") == b"seq=1"
    # A later batch gets the stored answer, and writes nothing.
    (later,) = await store.revoke_many([item("x", NOW + 999, idem=key)])
    assert later == RevokeResult(0, False, replay=b"seq=1")
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 2
    await gap_free(pool)


async def test_a_server_computed_expiry_never_counts(pool: asyncpg.Pool) -> None:
    store = RevocationStore(pool)
    (first,) = await store.revoke_many([item("s", NOW + 600, given=False)])
    (again,) = await store.revoke_many([item("s", NOW + 700, given=False)])
    assert again == RevokeResult(first.seq, False)
    # An entry past its expiry (not yet swept) does not count: recorded anew.
    (old,) = await store.revoke_many([item("old", NOW - 10)], now=NOW)
    (renewed,) = await store.revoke_many([item("old", NOW + 600, given=False)], now=NOW)
    assert renewed.recorded and renewed.seq > old.seq


async def test_a_grant_revocation_in_a_batch_ends_its_family(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO grants (gid, client_id, subject, scopes, audiences, auth_time, created_at,"
        " expires_at) VALUES ('g1', 'c', 's', '{}', '{}', 0, $1, $2)",
        NOW - 5,
        NOW + 3600,
    )
    store = RevocationStore(pool)
    await store.revoke_many([item("j"), item("g1", kind=RevocationKind.GRANT, given=False)])
    assert await pool.fetchval("SELECT revoked_at IS NOT NULL FROM grants WHERE gid = 'g1'")

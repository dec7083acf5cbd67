"""The introspector's cold path: a recalled caller whose token is not cached goes straight to
the lookup (``IntrospectionFlow.answer_or_caller`` → ``introspect_as``), the opaque answer is
built from the row without a claims dict, and the batched store hands the flow the batch's
future. Every rule still applies, and what is cached is invalidated as before."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import grpc
import pytest
from test_introspection_warm_path import ISSUER, Aborted, Context, World, _servicer, basic

from tokenry.core.errors import InsufficientScope
from tokenry.core.introspection import INACTIVE, from_claims
from tokenry.core.opaque import ACCESS, new_token, token_hash
from tokenry.flows.introspection import OpaqueRecord, _opaque_answer
from tokenry.store.batching import Coalescer
from tokenry.store.introspection import BatchedOpaqueRecords, StoreOpaqueRecords
from tokenry.store.opaque_tokens import IntrospectionReader
from tokenry.v1 import introspector_pb2


def _claims(record: OpaqueRecord) -> dict[str, Any]:
    """The claims the row stood for before (the former ``_opaque_claims``)."""
    claims: dict[str, Any] = {
        "iss": record.issuer,
        "sub": record.subject,
        "client_id": record.client_id,
        "scope": record.scope,
        "exp": record.expires_at,
        "iat": record.issued_at,
        "jti": record.jti,
    }
    if record.audiences:
        claims["aud"] = list(record.audiences)
    if record.gid:
        claims["gid"] = record.gid
    if record.act is not None:
        claims["act"] = record.act
    return claims


BASE = OpaqueRecord(
    "access", "j1", None, "web", "alice", "orders.read", ("orders-api",), ISSUER, 100, 700, False
)


@pytest.mark.parametrize(
    "record",
    [
        BASE,
        replace(BASE, gid="g1", act={"sub": "gateway", "act": {"sub": "edge"}}),
        replace(BASE, kind="refresh", audiences=("web",), gid="g2"),
        replace(BASE, audiences=(), scope=""),
        replace(BASE, audiences=("a", "b"), gid=""),
    ],
)
def test_the_answer_from_the_row_is_the_answer_from_its_claims(record: OpaqueRecord) -> None:
    assert _opaque_answer(record) == from_claims(_claims(record))


def test_an_answer_cached_from_the_row_is_invalidated_by_every_rule() -> None:
    w = World()
    cache = w.cache
    now = int(w.clock.now())
    live = replace(BASE, issued_at=now, expires_at=now + 600)
    for name, record in {
        "jti": replace(live, jti="j-a"),
        "grant": replace(live, jti="j-b", gid="g-b"),
        "subject": replace(live, jti="j-c", subject="carol"),
        "client": replace(live, jti="j-d", client_id="svc"),
    }.items():
        assert w.flow._keep_opaque(name.encode(), record, cache.epoch) is not None
        assert cache.get(name.encode()) is not None
    assert len(cache) == 4
    assert cache.invalidate("jti", "j-a") == 1
    assert cache.invalidate("grant", "g-b") == 1
    assert cache.invalidate("subject", "carol", not_before=now) == 0  # iat now is not before
    assert cache.invalidate("subject", "carol", not_before=now + 1) == 1
    assert cache.invalidate("client", "svc", not_before=now + 1) == 1
    assert len(cache) == 0


def test_a_lookup_that_raced_an_invalidation_is_not_cached() -> None:
    w = World()
    now = int(w.clock.now())
    epoch = w.cache.epoch
    w.cache.invalidate("jti", "elsewhere")
    live = replace(BASE, issued_at=now, expires_at=now + 600)
    assert w.flow._keep_opaque(b"d", live, epoch) is not None  # answered
    assert w.cache.get(b"d") is None  # but not cached


def test_revoked_expired_or_unknown_rows_are_inactive() -> None:
    w = World()
    now = int(w.clock.now())
    live = replace(BASE, issued_at=now, expires_at=now + 60)
    assert w.flow._keep_opaque(b"a", replace(live, revoked=True), w.cache.epoch) is None
    assert w.flow._keep_opaque(b"b", replace(live, expires_at=now), w.cache.epoch) is None
    assert w.flow._keep_opaque(b"c", None, w.cache.epoch) is None


async def test_a_recalled_caller_takes_the_cold_path_with_every_rule() -> None:
    w = World()
    servicer, watched = _servicer(w)
    warm_up = w.records.issue("j0")
    auth = ("authorization", basic("orders-api").authorization)
    await servicer.Introspect(introspector_pb2.IntrospectRequest(token=warm_up), Context(auth))  # type: ignore[arg-type]
    assert len(watched.slow_peers) == 1  # proven now
    token = w.records.issue("j1")
    assert w.flow.answer_or_caller(basic("orders-api"), token) == w.clients.cached("orders-api")
    answer = await servicer.Introspect(
        introspector_pb2.IntrospectRequest(token=token), Context(auth)
    )  # type: ignore[arg-type]
    assert answer.active and answer.jti == "j1"
    # introspect_as ran, not introspect (and not caller_credentials: no new lazy peer)
    assert watched.cold == ["orders-api"] and len(watched.slow_peers) == 1
    assert w.records.finds == 2
    # the audience rule: another resource server, proven, sees nothing
    other = ("authorization", basic("other-api").authorization)
    await servicer.Introspect(introspector_pb2.IntrospectRequest(token=warm_up), Context(other))  # type: ignore[arg-type]
    fresh = w.records.issue("j2")
    seen = await servicer.Introspect(
        introspector_pb2.IntrospectRequest(token=fresh), Context(other)
    )  # type: ignore[arg-type]
    assert seen == introspector_pb2.IntrospectResponse(active=False)


async def test_the_cold_path_requires_the_scope_and_counts_the_call() -> None:
    w = World()
    token = w.records.issue("j1")
    caller = w.registry.clients["no-scope"]
    with pytest.raises(InsufficientScope):
        await w.flow.introspect_as(caller, token)
    assert w.records.finds == 0  # refused before any lookup
    before = dict(w.flow._per_caller._tat)
    assert (await w.flow.introspect_as(w.registry.clients["orders-api"], token)).active
    assert w.flow._per_caller._tat != before  # counted against the caller's limit


async def test_a_garbage_token_on_the_cold_path_is_inactive_without_a_lookup() -> None:
    w = World()
    caller = w.registry.clients["orders-api"]
    assert await w.flow.introspect_as(caller, "tkr_at_" + "x" * 49) is INACTIVE
    assert await w.flow.introspect_as(caller, "") is INACTIVE
    assert w.records.finds == 0


async def test_submit_is_the_call_without_a_coroutine() -> None:
    batches: list[list[int]] = []

    async def run(items: list[int]) -> list[int]:
        batches.append(items)
        await asyncio.sleep(0)
        if 13 in items:
            raise ValueError("unlucky")
        return [i * 2 for i in items]

    batcher: Coalescer[int, int] = Coalescer(run)
    futures = [batcher.submit(i) for i in range(3)]
    assert await asyncio.gather(*futures) == [0, 2, 4]
    assert batches == [[0, 1, 2]]
    with pytest.raises(ValueError, match="unlucky"):
        await batcher.submit(13)
    assert await batcher(4) == 8  # later batches still run
    await batcher.close()


class _Pool:
    """What get_many_for_introspection reads: ``fetch`` of the rows (dicts) of these hashes."""

    def __init__(self, rows: dict[bytes, dict[str, Any]]) -> None:
        self.rows = rows
        self.fetches = 0

    async def fetch(self, _sql: str, hashes: list[bytes]) -> list[dict[str, Any]]:
        self.fetches += 1
        return [self.rows[h] for h in hashes if h in self.rows]


def _row(token: str, **changes: Any) -> dict[str, Any]:
    row = {
        "token_hash": token_hash(token),
        "kind": "access",
        "jti": "j1",
        "gid": None,
        "client_id": "web",
        "subject": "alice",
        "scopes": ["a", "b"],
        "audiences": ["orders-api"],
        "issued_at": 100,
        "expires_at": 700,
        "act": None,
        "used_at": None,
        "successor_hash": None,
        "minted": None,
        "revoked": False,
    }
    return {**row, **changes}


async def test_the_batched_store_reads_one_batch_and_keeps_every_revocation() -> None:
    live, revoked, spent, refresh, unknown = (new_token(ACCESS) for _ in range(5))
    pool = _Pool(
        {
            token_hash(live): _row(live),
            token_hash(revoked): _row(revoked, revoked=True),
            token_hash(spent): _row(spent, kind="refresh", used_at=150),
            token_hash(refresh): _row(refresh, kind="refresh", act='{"sub": "x"}'),
        }
    )
    records = BatchedOpaqueRecords(pool, ISSUER)  # type: ignore[arg-type]
    found = await asyncio.gather(
        *(records.find(token_hash(t)) for t in (live, revoked, spent, refresh, unknown))
    )
    assert pool.fetches == 1  # one query for the batch
    assert found[0] == OpaqueRecord(
        "access", "j1", None, "web", "alice", "a b", ("orders-api",), ISSUER, 100, 700, False
    )
    assert found[1] is not None and found[1].revoked
    assert found[2] is not None and found[2].revoked  # a spent refresh token is dead
    assert found[3] is not None and found[3].audiences == ("web",)  # RFC 6749 §1.5
    assert found[3].act == {"sub": "x"}
    assert found[4] is None
    await records.close()


async def test_a_cold_answer_is_rendered_each_time_not_memoized() -> None:
    w = World()
    servicer, _ = _servicer(w)
    auth = ("authorization", basic("orders-api").authorization)
    for jti in ("j1", "j2"):
        token = w.records.issue(jti)
        answer = await servicer.Introspect(
            introspector_pb2.IntrospectRequest(token=token), Context(auth)
        )  # type: ignore[arg-type]
        assert answer.jti == jti
    assert not servicer._rendered  # only warm answers (read again) are kept rendered
    again = await servicer.Introspect(
        introspector_pb2.IntrospectRequest(token=token), Context(auth)
    )  # type: ignore[arg-type]
    assert again.jti == "j2" and len(servicer._rendered) == 1


async def test_the_cold_path_keeps_the_credential_rules() -> None:
    w = World()
    servicer, _ = _servicer(w)
    auth = ("authorization", basic("no-scope").authorization)
    token = w.records.issue("j1")
    for _ in range(2):  # the second time the caller is proven: the cold path refuses too
        context = Context(auth)
        with pytest.raises(Aborted):
            await servicer.Introspect(introspector_pb2.IntrospectRequest(token=token), context)  # type: ignore[arg-type]
        assert context.status is not None
        assert context.status.code == grpc.StatusCode.PERMISSION_DENIED


async def test_the_batched_store_reads_what_the_reader_based_store_reads() -> None:
    tokens = [new_token(ACCESS) for _ in range(4)]
    rows = [
        _row(tokens[0], gid="g1", scopes=[], audiences=[]),
        _row(tokens[1], kind="refresh", act='{"sub": "svc", "act": {"sub": "edge"}}'),
        _row(tokens[2], revoked=True, audiences=["a", "b"]),
        _row(tokens[3], kind="refresh", used_at=5, successor_hash=b"s", minted='{"x": 1}'),
    ]
    pool = _Pool({row["token_hash"]: row for row in rows})
    batched = BatchedOpaqueRecords(pool, ISSUER)  # type: ignore[arg-type]
    reader = StoreOpaqueRecords(IntrospectionReader(pool), ISSUER)  # type: ignore[arg-type]
    for token in [*tokens, new_token(ACCESS)]:
        assert await batched.find(token_hash(token)) == await reader.find(token_hash(token))


async def test_a_basic_header_is_recalled_as_its_basicheader_would_be() -> None:
    w = World()
    servicer, _ = _servicer(w)
    token = w.records.issue("j1")
    header = basic("orders-api")
    assert w.flow.answer_or_caller_basic(header.authorization, token) is None  # not proven yet
    auth = ("authorization", header.authorization)
    await servicer.Introspect(introspector_pb2.IntrospectRequest(token=token), Context(auth))  # type: ignore[arg-type]
    proven = w.flow._proven
    assert proven is not None
    assert proven.recall_basic(header.authorization) == proven.recall(header)[1] is not None
    assert w.flow.answer_or_caller_basic(header.authorization, token) == w.flow.answer_now(
        header, token
    )
    # a rotated secret voids it on this path too
    w.registry.clients["orders-api"] = replace(
        w.registry.clients["orders-api"], secret_hash="rotated"
    )
    w.clients.invalidate("orders-api")
    assert w.flow.answer_or_caller_basic(header.authorization, token) is None

"""One contract for the storage ports of the token flows, run against the in-memory adapter and
PostgreSQL alike (the ``adapter`` fixture is parametrised over both).

What the flows rely on: single-use login challenges and codes, row locks that serialise
concurrent redemptions, units of work that commit whole or not at all, refresh rotation state,
family revocation, grant and opaque-token lookups by hash, assertion jti replay, client lookups
and the revocation checks.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from contract.adapters import Adapter
from tokenry.core import opaque
from tokenry.core.clients import CLIENT_CREDENTIALS, Client
from tokenry.core.ids import new_gid, new_jti
from tokenry.core.refresh import Outcome, RefreshState, decide
from tokenry.core.revocations import Revocation, RevocationKind, family_expiry
from tokenry.store.records import (
    ACCESS,
    REFRESH,
    AuthCodeRecord,
    AuthRequestRecord,
    GrantRecord,
    OpaqueTokenRecord,
)

pytestmark = pytest.mark.integration


def _hash() -> bytes:
    return opaque.token_hash(opaque.new_token(opaque.REFRESH))


def _grant(now: int, *, subject: str = "alice", client_id: str = "web") -> GrantRecord:
    return GrantRecord(
        gid=new_gid(),
        client_id=client_id,
        subject=subject,
        scopes=("openid", "read"),
        audiences=("api",),
        auth_time=now - 5,
        nonce="n1",
        created_at=now,
        expires_at=now + 3600,
    )


def _token(grant: GrantRecord, now: int, kind: str = REFRESH) -> OpaqueTokenRecord:
    return OpaqueTokenRecord(
        token_hash=_hash(),
        kind=kind,
        jti=new_jti(),
        gid=grant.gid,
        client_id=grant.client_id,
        subject=grant.subject,
        scopes=grant.scopes,
        audiences=grant.audiences,
        issued_at=now,
        expires_at=now + 600,
    )


def _code(now: int, *, gid: str | None = None) -> AuthCodeRecord:
    return AuthCodeRecord(
        code_hash=_hash(),
        gid=gid or new_gid(),
        client_id="web",
        redirect_uri="https://app.test/cb",
        code_challenge="c" * 43,
        subject="alice",
        scopes=("read",),
        audiences=("api",),
        nonce="",
        auth_time=now,
        expires_at=now + 60,
    )


def _now(adapter: Adapter) -> int:
    return int(adapter.clock.now())


# --- clients and client assertions --------------------------------------------------------------


async def test_client_lookup_finds_registered_clients_only(adapter: Adapter) -> None:
    client = Client(
        client_id="svc",
        secret_hash="0" * 64,
        pepper_id="p1",
        grant_types=frozenset({CLIENT_CREDENTIALS}),
        scopes=frozenset({"read"}),
        audiences=("api", "api2"),
    )
    await adapter.register(client)
    found = await adapter.ports.clients.get_client("svc")
    assert found is not None
    assert (found.client_id, found.secret_hash, found.scopes, found.audiences) == (
        "svc",
        "0" * 64,
        frozenset({"read"}),
        ("api", "api2"),
    )
    assert await adapter.ports.clients.get_client("nobody") is None
    await adapter.register(replace(client, scopes=frozenset({"read", "write"})))
    again = await adapter.ports.clients.get_client("svc")
    assert again is not None and again.scopes == frozenset({"read", "write"})


async def test_assertion_jti_is_accepted_once_until_it_expires(adapter: Adapter) -> None:
    replay = adapter.ports.assertions
    until = _now(adapter) + 60
    assert await replay.first_use("svc", "jti-1", until)
    assert not await replay.first_use("svc", "jti-1", until)
    assert await replay.first_use("other", "jti-1", until)  # ids are per client
    adapter.clock.advance(61)
    assert await replay.first_use("svc", "jti-1", until + 120)  # remembered until exp only


async def test_concurrent_uses_of_one_assertion_admit_one(adapter: Adapter) -> None:
    until = _now(adapter) + 60
    results = await asyncio.gather(
        *(adapter.ports.assertions.first_use("svc", "jti-2", until) for _ in range(8))
    )
    assert sorted(results) == [False] * 7 + [True]


# --- login challenges and authorization codes (RFC 6749 §4.1.2) ---------------------------------


async def test_a_login_challenge_is_taken_once(adapter: Adapter) -> None:
    now = _now(adapter)
    req = AuthRequestRecord(
        challenge_hash=_hash(),
        client_id="web",
        redirect_uri="https://app.test/cb",
        scopes=("read",),
        audiences=("api",),
        state="st",
        code_challenge="c" * 43,
        nonce="",
        expires_at=now + 600,
    )
    await adapter.ports.requests.save_request(req)
    async with adapter.ports.transactions.transaction() as tx:
        assert await tx.take_request(req.challenge_hash, now) == req
    async with adapter.ports.transactions.transaction() as tx:
        assert await tx.take_request(req.challenge_hash, now) is None


async def test_an_expired_login_challenge_is_refused_and_consumed(adapter: Adapter) -> None:
    now = _now(adapter)
    req = AuthRequestRecord(_hash(), "web", "https://app.test/cb", (), (), "", "c" * 43, "", now)
    await adapter.ports.requests.save_request(req)
    async with adapter.ports.transactions.transaction() as tx:
        assert await tx.take_request(req.challenge_hash, now) is None
    async with adapter.ports.transactions.transaction() as tx:
        assert await tx.take_request(req.challenge_hash, now - 100) is None


async def test_a_code_stays_recorded_once_used(adapter: Adapter) -> None:
    now = _now(adapter)
    code = _code(now)
    async with adapter.ports.transactions.transaction() as tx:
        await tx.save_code(code)
    async with adapter.ports.transactions.transaction() as tx:
        held = await tx.lock_code(code.code_hash)
        assert held == code and held.used_at is None
        await tx.mark_code_used(code.code_hash, now + 1)
    async with adapter.ports.transactions.transaction() as tx:
        used = await tx.lock_code(code.code_hash)
        assert used is not None and used.used_at == now + 1  # a second use is recognised
        assert await tx.lock_code(_hash()) is None


async def test_concurrent_redemptions_of_one_code_serialise(adapter: Adapter) -> None:
    now = _now(adapter)
    code = _code(now)
    async with adapter.ports.transactions.transaction() as tx:
        await tx.save_code(code)

    async def redeem() -> bool:
        async with adapter.ports.transactions.transaction() as tx:
            held = await tx.lock_code(code.code_hash)
            assert held is not None
            if held.used_at is not None:
                return False
            await asyncio.sleep(0.02)  # the other redemption waits on the lock meanwhile
            await tx.mark_code_used(code.code_hash, now)
            return True

    assert sorted(await asyncio.gather(redeem(), redeem(), redeem())) == [False, False, True]


async def test_a_unit_of_work_that_raises_writes_nothing(adapter: Adapter) -> None:
    now = _now(adapter)
    code, grant = _code(now), _grant(now)
    token = _token(grant, now)
    req = AuthRequestRecord(
        _hash(), "web", "https://app.test/cb", (), (), "", "c" * 43, "", now + 60
    )
    await adapter.ports.requests.save_request(req)

    async def doomed() -> None:
        async with adapter.ports.transactions.transaction() as tx:
            assert await tx.take_request(req.challenge_hash, now) is not None
            await tx.save_code(code)
            await tx.create_grant(grant)
            await tx.insert_tokens([token])
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError, match="rolled back"):
        await doomed()
    assert await adapter.reader.get_grant(grant.gid) is None
    assert await adapter.reader.get_token(token.token_hash) is None
    async with adapter.ports.transactions.transaction() as tx:
        assert await tx.lock_code(code.code_hash) is None
        assert await tx.take_request(req.challenge_hash, now) == req  # not consumed


# --- grants, opaque tokens, refresh rotation ----------------------------------------------------


async def test_grants_are_found_by_gid(adapter: Adapter) -> None:
    now = _now(adapter)
    grant = _grant(now)
    async with adapter.ports.transactions.transaction() as tx:
        await tx.create_grant(grant)
        assert await tx.get_grant(grant.gid) == grant
    assert await adapter.reader.get_grant(grant.gid) == grant
    assert await adapter.reader.get_grant(new_gid()) is None


async def test_opaque_tokens_are_found_by_hash(adapter: Adapter) -> None:
    now = _now(adapter)
    grant = _grant(now)
    access = replace(_token(grant, now, ACCESS), act={"sub": "svc-a", "act": {"sub": "x"}})
    await adapter.ports.access_tokens.write_access_token(access)
    found = await adapter.reader.get_token(access.token_hash)
    assert found == access and found.act == {"sub": "svc-a", "act": {"sub": "x"}}
    assert await adapter.reader.get_token(_hash()) is None
    refresh = _token(grant, now)
    async with adapter.ports.transactions.transaction() as tx:
        await tx.insert_tokens([refresh])
        assert await tx.get_token(refresh.token_hash, lock=True) == refresh
    assert await adapter.reader.get_token(refresh.token_hash) == refresh


async def test_refresh_rotation_records_the_successor_and_detects_reuse(adapter: Adapter) -> None:
    now = _now(adapter)
    grant = _grant(now)
    spent, successor = _token(grant, now), _token(grant, now)
    async with adapter.ports.transactions.transaction() as tx:
        await tx.create_grant(grant)
        await tx.insert_tokens([spent])
    minted = {"jti": new_jti(), "iat": now, "exp": now + 600, "scopes": ("read",), "format": "jwt"}
    async with adapter.ports.transactions.transaction() as tx:
        row = await tx.get_token(spent.token_hash, lock=True)
        assert row is not None and row.used_at is None
        await tx.mark_spent(
            spent.token_hash, used_at=now, successor_hash=successor.token_hash, minted=minted
        )
        await tx.insert_tokens([successor])
    row = await adapter.reader.get_token(spent.token_hash)
    assert row is not None
    assert (row.used_at, row.successor_hash) == (now, successor.token_hash)
    assert row.minted == {**minted, "scopes": ["read"]}  # read back as JSON
    state = RefreshState(row.client_id, row.expires_at, row.revoked, row.used_at, False)
    # The same token again: inside the grace it replays, after it, it is reuse (OAuth 2.1 §4.3.1).
    assert decide(state, client_id="web", now=now + 5, grace=10) is Outcome.REPLAY
    assert decide(state, client_id="web", now=now + 11, grace=10) is Outcome.REUSE


async def test_revoking_a_family_revokes_its_tokens_only(adapter: Adapter) -> None:
    now = _now(adapter)
    grant, other = _grant(now), _grant(now)
    mine, theirs = _token(grant, now), _token(other, now)
    async with adapter.ports.transactions.transaction() as tx:
        await tx.create_grant(grant)
        await tx.create_grant(other)
        await tx.insert_tokens([mine, theirs])
    async with adapter.ports.transactions.transaction() as tx:
        await tx.revoke_family(grant.gid)
        await tx.revoke_family(grant.gid)  # idempotent
    got = await adapter.reader.get_grant(grant.gid)
    assert got is not None and got.revoked
    token = await adapter.reader.get_token(mine.token_hash)
    assert token is not None and token.revoked
    untouched = await adapter.reader.get_token(theirs.token_hash)
    assert untouched is not None and not untouched.revoked
    kept = await adapter.reader.get_grant(other.gid)
    assert kept is not None and not kept.revoked


# --- the revocation log and the checks (docs/spec.md §4) ------------------------------------------


async def test_a_grant_revocation_is_recorded_once_and_ends_the_family(adapter: Adapter) -> None:
    now = _now(adapter)
    grant = _grant(now)
    token = _token(grant, now)
    async with adapter.ports.transactions.transaction() as tx:
        await tx.create_grant(grant)
        await tx.insert_tokens([token])
    rev = Revocation(RevocationKind.GRANT, grant.gid, 0, family_expiry(now, now, None), "reuse")
    seq = await adapter.ports.revocations.revoke(rev, "web", now)
    assert seq > 0
    assert await adapter.ports.revocations.revoke(rev, "web", now) == seq  # RFC 7009 §2.2
    other = Revocation(RevocationKind.JTI, new_jti(), 0, now + 600, "")
    assert await adapter.ports.revocations.revoke(other, "web", now) == seq + 1  # gap-free
    got = await adapter.reader.get_grant(grant.gid)
    assert got is not None and got.revoked
    ended = await adapter.reader.get_token(token.token_hash)
    assert ended is not None and ended.revoked
    assert (
        await adapter.checks.revoked_kind(
            jti=None, gid=grant.gid, subject=None, client_id=None, issued_at=now
        )
        == RevocationKind.GRANT.value
    )
    assert (
        await adapter.checks.revoked_kind(
            jti=other.value, gid=new_gid(), subject="alice", client_id="web", issued_at=now
        )
        == RevocationKind.JTI.value
    )


async def test_a_subject_watermark_covers_what_was_issued_before_it(adapter: Adapter) -> None:
    now = _now(adapter)
    before, after = _grant(now - 10, subject="bob"), _grant(now + 10, subject="bob")
    async with adapter.ports.transactions.transaction() as tx:
        await tx.create_grant(before)
        await tx.create_grant(after)
    rev = Revocation(RevocationKind.SUBJECT, "bob", now, family_expiry(now, now, None), "")
    await adapter.ports.revocations.revoke(rev, "admin", now)
    check = adapter.checks.revoked_kind
    assert await check(jti="j", gid="g", subject="bob", client_id="c", issued_at=now - 1) == (
        RevocationKind.SUBJECT.value
    )
    assert await check(jti="j", gid="g", subject="bob", client_id="c", issued_at=now) is None
    assert await check(jti="j", gid="g", subject="eve", client_id="c", issued_at=0) is None
    ended, kept = (
        await adapter.reader.get_grant(before.gid),
        await adapter.reader.get_grant(after.gid),
    )
    assert ended is not None and ended.revoked
    assert kept is not None and not kept.revoked
    assert [(m.kind, m.value) for m in await adapter.checks.future_watermarks(now - 1)] == [
        ("subject", "bob")
    ]
    assert await adapter.checks.future_watermarks(now) == []


async def test_a_unit_of_work_sees_the_revocations(adapter: Adapter) -> None:
    now = _now(adapter)
    jti = new_jti()
    await adapter.ports.revocations.revoke(
        Revocation(RevocationKind.JTI, jti, 0, now + 600, ""), "admin", now
    )
    async with adapter.ports.transactions.transaction() as tx:
        assert (
            await tx.revoked_kind(jti=jti, gid=None, subject=None, client_id=None, issued_at=0)
            == RevocationKind.JTI.value
        )
        assert (
            await tx.revoked_kind(
                jti=new_jti(), gid=None, subject=None, client_id=None, issued_at=0
            )
            is None
        )

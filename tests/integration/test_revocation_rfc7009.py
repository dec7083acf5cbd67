"""RFC 7009 token revocation against the real service, PostgreSQL and NATS — one behaviour each.

§2.1: the client authenticates and may revoke only its own tokens; a JWT's signature is
verified (expiry ignored) before its jti/client_id are trusted; a refresh token revokes its
family. §2.2: invalid, unknown, expired and already-revoked tokens are answered with success.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator

import asyncpg
import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tokenry.core import opaque
from tokenry.core.ids import new_gid, new_jti
from tokenry.core.revocations import EXPIRY_LEEWAY
from tokenry.servicekit.config import Settings
from tokenry.store import opaque_tokens
from tokenry.store.grants import GrantRecord, GrantStore
from tokenry.store.opaque_tokens import OpaqueTokenRecord
from tokenry.v1 import events_pb2
from tokenry.verifier.errors import RevokedError

from pipeline_support import Stack, mint, oauth_code, stack

pytestmark = pytest.mark.integration


@pytest.fixture
async def svc(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Stack]:
    async with stack(settings, pool) as s:
        yield s


async def _outbox_rows(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM outbox WHERE subject LIKE '%revoc%'")
    return count


async def test_client_revokes_its_own_jwt_and_a_verifier_rejects_it(
    svc: Stack, pool: asyncpg.Pool
) -> None:
    token, claims = await mint(pool, svc.settings)
    runtime = await svc.verifier()
    assert (await runtime.verifier.verify(token))["jti"] == claims["jti"]
    started = time.perf_counter()
    resp = await svc.revoke("demo", token=token, reason="laptop lost")
    assert resp.seq > 0 and resp.kind == events_pb2.REVOCATION_KIND_JTI
    assert resp.expires_at == claims["exp"] + EXPIRY_LEEWAY  # docs/spec.md §4.7: until its own exp
    await asyncio.wait_for(runtime.state.wait_for_seq(resp.seq), timeout=10)
    print(f"\nrevoke ack → applied: {(time.perf_counter() - started) * 1000:.1f} ms")
    with pytest.raises(RevokedError):
        await runtime.verifier.verify(token)
    row = await pool.fetchrow("SELECT kind, value, reason, actor FROM revocations")
    assert dict(row) == {
        "kind": "jti",
        "value": claims["jti"],
        "reason": "laptop lost",
        "actor": "demo",
    }


async def test_revoking_an_expired_own_token_succeeds_without_effect(
    svc: Stack, pool: asyncpg.Pool
) -> None:
    now = int(time.time())
    token, _ = await mint(pool, svc.settings, iat=now - 7200, exp=now - 3600)
    resp = await svc.revoke("demo", token=token)
    assert resp.seq == 0 and resp.kind == events_pb2.REVOCATION_KIND_UNSPECIFIED
    assert await _outbox_rows(pool) == 0


def _foreign_token() -> str:
    # Signed by a key that is not in our JWKS, with the same kid shape.
    import jwt

    key = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(
        {"jti": new_jti(), "client_id": "demo", "exp": int(time.time()) + 600},
        key,
        algorithm="ES256",
        headers={"kid": "not-ours", "typ": "at+jwt"},
    )


async def test_invalid_or_unknown_tokens_succeed_without_effect(
    svc: Stack, pool: asyncpg.Pool
) -> None:
    for token in ("garbage", "a.b.c", "tkr_at_" + "A" * 43, _foreign_token()):
        resp = await svc.revoke("demo", token=token)
        assert resp.seq == 0 and resp.kind == events_pb2.REVOCATION_KIND_UNSPECIFIED
    assert await _outbox_rows(pool) == 0
    assert await pool.fetchval("SELECT count(*) FROM revocations") == 0


async def test_revoking_an_already_revoked_token_succeeds_and_publishes_nothing_new(
    svc: Stack, pool: asyncpg.Pool
) -> None:
    token, _ = await mint(pool, svc.settings)
    first = await svc.revoke("demo", token=token)
    again = await svc.revoke("demo", token=token)
    assert again.seq == first.seq and again.kind == events_pb2.REVOCATION_KIND_JTI
    assert await _outbox_rows(pool) == 1


async def test_a_client_cannot_revoke_another_clients_token(svc: Stack, pool: asyncpg.Pool) -> None:
    token, _ = await mint(pool, svc.settings, client_id="other", sub="other")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await svc.revoke("demo", token=token)
    assert oauth_code(err.value) == (grpc.StatusCode.PERMISSION_DENIED, "unauthorized_client")
    assert await pool.fetchval("SELECT count(*) FROM revocations") == 0


async def test_an_admin_may_revoke_any_clients_token(svc: Stack, pool: asyncpg.Pool) -> None:
    token, claims = await mint(pool, svc.settings, client_id="other", sub="other")
    resp = await svc.revoke("admin", token=token)
    assert resp.kind == events_pb2.REVOCATION_KIND_JTI
    assert await pool.fetchval("SELECT actor FROM revocations WHERE value = $1", claims["jti"]) == (
        "admin"
    )


def _reencode_payload(token: str, **changes: object) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def test_claims_of_a_jwt_with_a_bad_signature_are_not_trusted(
    svc: Stack, pool: asyncpg.Pool
) -> None:
    # "other"'s token with client_id rewritten to demo: the signature no longer matches, so
    # demo cannot use it to revoke other's jti (nor learn anything): success without effect.
    token, _ = await mint(pool, svc.settings, client_id="other", sub="other")
    forged = _reencode_payload(token, client_id="demo")
    resp = await svc.revoke("demo", token=forged)
    assert resp.seq == 0
    assert await pool.fetchval("SELECT count(*) FROM revocations") == 0


async def test_the_token_type_hint_is_only_a_hint(svc: Stack, pool: asyncpg.Pool) -> None:
    token, _ = await mint(pool, svc.settings)
    resp = await svc.revoke("demo", token=token, token_type_hint="refresh_token")
    assert resp.kind == events_pb2.REVOCATION_KIND_JTI


async def test_revocation_requires_client_authentication(svc: Stack, pool: asyncpg.Pool) -> None:
    from tokenry.v1 import revocation_pb2

    token, _ = await mint(pool, svc.settings)
    for metadata in (
        [("authorization", "Basic " + base64.b64encode(b"demo:wrong").decode())],
        [("authorization", "Basic " + base64.b64encode(b"nobody:x").decode())],
        [],
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await svc.stub().Revoke(
                revocation_pb2.RevokeRequest(token=token), metadata=metadata, timeout=10
            )
        assert oauth_code(err.value) == (grpc.StatusCode.UNAUTHENTICATED, "invalid_client")
    assert await pool.fetchval("SELECT count(*) FROM revocations") == 0


async def _family(
    pool: asyncpg.Pool, *, client_id: str = "demo", subject: str = "demo", created_at: int = 0
) -> tuple[str, str, str]:
    """A grant family as the issuer writes it (grant row, opaque access and refresh tokens)."""
    now = int(time.time())
    gid = new_gid()
    grant = GrantRecord(
        gid=gid,
        client_id=client_id,
        subject=subject,
        scopes=("demo.read",),
        audiences=("demo-api",),
        auth_time=now,
        nonce="",
        created_at=created_at or now,
        expires_at=now + 30 * 86400,
    )
    access, refresh = opaque.new_token(opaque.ACCESS), opaque.new_token(opaque.REFRESH)
    rows = [
        OpaqueTokenRecord(
            token_hash=opaque.token_hash(token),
            kind=kind,
            jti=new_jti(),
            gid=gid,
            client_id=client_id,
            subject=subject,
            scopes=("demo.read",),
            audiences=("demo-api",),
            issued_at=now,
            expires_at=now + ttl,
        )
        for token, kind, ttl in ((access, "access", 600), (refresh, "refresh", 86400))
    ]
    store = GrantStore(pool)
    async with store.transaction() as conn:
        await store.create(conn, grant)
        await opaque_tokens.insert_many(conn, rows)
    return gid, access, refresh


async def _family_state(pool: asyncpg.Pool, gid: str) -> tuple[bool, list[bool]]:
    grant = await pool.fetchval("SELECT revoked_at IS NOT NULL FROM grants WHERE gid = $1", gid)
    tokens = await pool.fetch(
        "SELECT revoked_at IS NOT NULL AS r FROM opaque_tokens WHERE gid = $1", gid
    )
    return grant, [t["r"] for t in tokens]


async def test_revoking_an_opaque_access_token_revokes_its_jti(
    svc: Stack, pool: asyncpg.Pool
) -> None:
    gid, access, _ = await _family(pool)
    resp = await svc.revoke("demo", token=access)
    assert resp.kind == events_pb2.REVOCATION_KIND_JTI
    jti = await pool.fetchval(
        "SELECT jti FROM opaque_tokens WHERE token_hash = $1", opaque.token_hash(access)
    )
    assert await pool.fetchval("SELECT value FROM revocations WHERE kind = 'jti'") == jti
    assert await _family_state(pool, gid) == (False, [False, False])  # the family lives on


async def test_revoking_a_refresh_token_ends_its_whole_family(
    svc: Stack, pool: asyncpg.Pool
) -> None:
    gid, access, refresh = await _family(pool)
    jwt, _ = await mint(pool, svc.settings, gid=gid)  # an access token of the same family
    runtime = await svc.verifier()
    resp = await svc.revoke("demo", token=refresh, token_type_hint="refresh_token")
    assert resp.kind == events_pb2.REVOCATION_KIND_GRANT
    await asyncio.wait_for(runtime.state.wait_for_seq(resp.seq), timeout=10)
    with pytest.raises(RevokedError) as err:
        await runtime.verifier.verify(jwt)
    assert "grant" in err.value.description
    # Refreshing is decided in PostgreSQL: the family is ended there for good.
    assert await _family_state(pool, gid) == (True, [True, True])
    # RFC 7009 §2.2: revoking it again, or the family's access token, succeeds.
    assert (await svc.revoke("demo", token=refresh)).seq == resp.seq
    assert (await svc.revoke("demo", token=access)).kind == events_pb2.REVOCATION_KIND_JTI


async def test_another_clients_opaque_token_is_refused(svc: Stack, pool: asyncpg.Pool) -> None:
    gid, _, refresh = await _family(pool, client_id="other", subject="other")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await svc.revoke("demo", token=refresh)
    assert oauth_code(err.value) == (grpc.StatusCode.PERMISSION_DENIED, "unauthorized_client")
    assert await _family_state(pool, gid) == (False, [False, False])


async def test_subject_and_client_revocations_end_the_families_begun_before_them(
    svc: Stack, pool: asyncpg.Pool
) -> None:
    old_alice, _, _ = await _family(pool, subject="alice")
    old_batch, _, _ = await _family(pool, client_id="batch", subject="svc")
    later_alice, _, _ = await _family(pool, subject="alice", created_at=int(time.time()) + 60)
    await svc.revoke(subject="alice")
    await svc.revoke(client_id="batch")
    assert await _family_state(pool, old_alice) == (True, [True, True])
    assert await _family_state(pool, old_batch) == (True, [True, True])
    # Begun at or after the watermark: untouched (the issuer never mints one born revoked).
    assert await _family_state(pool, later_alice) == (False, [False, False])

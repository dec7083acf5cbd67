"""The key rotator's RPCs and rows on real PostgreSQL and NATS: bootstrap, ListKeys, Rotate,
RevokeKey, admin-only writes, the outbox events, and private keys that are never stored in clear.
"""

from __future__ import annotations

import json

import asyncpg
import grpc
import pytest
from cryptography.hazmat.primitives.serialization import load_der_private_key

from tokenry.bus import codec
from tokenry.core.keylifecycle import KeySet
from tokenry.core.keywrap import open_sealed
from tokenry.servicekit.config import Settings
from tokenry.servicekit.status import oauth_error_of
from tokenry.v1 import keyrotator_pb2

from keys_support import (
    ACCESS,
    active_kid,
    admin,
    key_states,
    pending_kid,
    rotator_config,
    running_rotator,
    stub,
)
from suite import run_suite

pytestmark = pytest.mark.integration

ID_RS = KeySet("id", "RS256")
ID_ES = KeySet("id", "ES256")


async def _outbox_key_events(pool: asyncpg.Pool) -> list[tuple[int, str, str, str]]:
    rows = await pool.fetch("SELECT seq, subject, payload FROM outbox ORDER BY seq")
    found = []
    for row in rows:
        event = codec.decode(codec.stamp_seq(bytes(row["payload"]), row["seq"]))
        if event.key is not None:
            found.append((row["seq"], row["subject"], event.key.kid, event.key.state))
    return found


async def _error(call) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    detail = oauth_error_of(err.value)
    assert detail is not None
    return err.value.code(), detail.error


async def test_first_start_creates_an_active_key_and_a_published_successor_per_key_set(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    config = rotator_config(settings, keysets=(ACCESS, ID_RS, ID_ES))
    async with running_rotator(settings, config) as addr, grpc.aio.insecure_channel(addr) as ch:
        rows = await pool.fetch(
            "SELECT kid, use, alg, state, public_jwk::text AS jwk FROM signing_keys"
        )
        by_set: dict[tuple[str, str], list[str]] = {}
        for row in rows:
            by_set.setdefault((row["use"], row["alg"]), []).append(row["state"])
            jwk = json.loads(row["jwk"])
            assert jwk["kid"] == row["kid"] and jwk["alg"] == row["alg"] and jwk["use"] == "sig"
        assert {k: sorted(v) for k, v in by_set.items()} == {
            ("access", "ES256"): ["active", "pending"],
            ("id", "RS256"): ["active", "pending"],
            ("id", "ES256"): ["active", "pending"],
        }
        # The JWKS publishes all six (pending ones before they sign), current to the events.
        resp = await stub(ch).GetJwks(keyrotator_pb2.GetJwksRequest(), timeout=5)
        assert {k["kid"] for k in json.loads(resp.jwks_json)["keys"]} == {r["kid"] for r in rows}
        events = await _outbox_key_events(pool)
        assert resp.seq == events[-1][0]
        prefix = settings.subjects.prefix
        assert {(subject, state) for _, subject, _, state in events} == {
            (f"{prefix}.events.keys.active", "active"),
            (f"{prefix}.events.keys.pending", "pending"),
        }
        listed = await stub(ch).ListKeys(keyrotator_pb2.ListKeysRequest(), timeout=5)
        assert {k.kid for k in listed.keys} == {r["kid"] for r in rows}
        for key in listed.keys:
            assert key.HasField("created_at") and key.HasField("next_transition_at")
            assert key.has_private_key and key.kek_id == settings.kek.id  # type: ignore[union-attr]


async def test_rotate_needs_an_admin_and_a_ready_successor(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    config = rotator_config(settings, lead=3600, interval=7200)
    async with (
        running_rotator(settings, config) as addr,
        run_suite(settings, pool, services=()) as suite,
        grpc.aio.insecure_channel(addr) as ch,
    ):
        before_states = await key_states(pool)
        before_seq = await pool.fetchval("SELECT seq FROM outbox_counter")
        rotate = keyrotator_pb2.RotateRequest()
        code, error = await _error(stub(ch).Rotate(rotate, timeout=5))
        assert (code, error) == (grpc.StatusCode.UNAUTHENTICATED, "invalid_client")
        code, error = await _error(
            stub(ch).Rotate(rotate, metadata=admin(suite.secrets, "demo"), timeout=5)
        )
        assert (code, error) == (grpc.StatusCode.PERMISSION_DENIED, "insufficient_scope")
        # The successor was published a moment ago: rotating now could hand verifiers a token
        # signed by a key they have not fetched. Refused unless forced.
        code, error = await _error(
            stub(ch).Rotate(rotate, metadata=admin(suite.secrets), timeout=5)
        )
        assert (code, error) == (grpc.StatusCode.UNAVAILABLE, "temporarily_unavailable")
        bad = keyrotator_pb2.RotateRequest(use="access", alg="HS256")
        code, error = await _error(stub(ch).Rotate(bad, metadata=admin(suite.secrets), timeout=5))
        assert error == "invalid_request"
        none = keyrotator_pb2.RotateRequest(use="id", alg="RS256")
        code, error = await _error(stub(ch).Rotate(none, metadata=admin(suite.secrets), timeout=5))
        assert error == "not_found"
        # Nothing was written by any refused call.
        assert await key_states(pool) == before_states
        assert await pool.fetchval("SELECT seq FROM outbox_counter") == before_seq

        old, successor = await active_kid(pool), await pending_kid(pool)
        forced = keyrotator_pb2.RotateRequest(force=True)
        resp = await stub(ch).Rotate(forced, metadata=admin(suite.secrets), timeout=10)
        assert (resp.active_kid, resp.retiring_kid) == (successor, old)
        assert resp.pending_kid and resp.pending_kid not in before_states
        states = await key_states(pool)
        assert states[old] == "retiring" and states[successor] == "active"  # type: ignore[index]
        assert states[resp.pending_kid] == "pending"
        # One transaction, its events in publish order: the activation first.
        events = [e for e in await _outbox_key_events(pool) if e[0] > before_seq]
        assert [(kid, state) for _, _, kid, state in events] == [
            (successor, "active"),
            (old, "retiring"),
            (resp.pending_kid, "pending"),
        ]
        assert resp.seq == events[-1][0]
        # The retiring key stays published; it no longer signs.
        jwks = await stub(ch).GetJwks(keyrotator_pb2.GetJwksRequest(), timeout=5)
        assert old in {k["kid"] for k in json.loads(jwks.jwks_json)["keys"]}


async def test_revoke_key_from_each_state(settings: Settings, pool: asyncpg.Pool) -> None:
    config = rotator_config(settings)
    async with (
        running_rotator(settings, config) as addr,
        run_suite(settings, pool, services=()) as suite,
        grpc.aio.insecure_channel(addr) as ch,
    ):
        kr = stub(ch)
        md = admin(suite.secrets)
        # Refused calls write nothing.
        before = await key_states(pool)
        revoke = keyrotator_pb2.RevokeKeyRequest
        assert (await _error(kr.RevokeKey(revoke(kid="x"), timeout=5)))[1] == "invalid_client"
        _, error = await _error(
            kr.RevokeKey(revoke(kid="x"), metadata=admin(suite.secrets, "demo"), timeout=5)
        )
        assert error == "insufficient_scope"
        for bad in ("", "a b", "x" * 129, "kid\n"):
            assert (await _error(kr.RevokeKey(revoke(kid=bad), metadata=md, timeout=5)))[
                1
            ] == "invalid_request"
        assert (await _error(kr.RevokeKey(revoke(kid="unknown"), metadata=md, timeout=5))) == (
            grpc.StatusCode.NOT_FOUND,
            "not_found",
        )
        too_long = revoke(kid="unknown", reason="r" * 201)
        assert (await _error(kr.RevokeKey(too_long, metadata=md, timeout=5)))[
            1
        ] == "invalid_request"
        assert await key_states(pool) == before

        # Pending: replaced by a new successor.
        pending = await pending_kid(pool)
        resp = await kr.RevokeKey(
            revoke(kid=pending, reason="test pending"), metadata=md, timeout=10
        )
        assert resp.revoked_kid == pending and not resp.active_kid and resp.pending_kid
        # Active: the successor is promoted in the same transaction, and replaced.
        active, successor = await active_kid(pool), await pending_kid(pool)
        resp = await kr.RevokeKey(revoke(kid=active, reason="leaked"), metadata=md, timeout=10)
        assert (resp.revoked_kid, resp.active_kid) == (active, successor)
        assert await active_kid(pool) == successor and await pending_kid(pool) == resp.pending_kid
        row = await pool.fetchrow(
            "SELECT state, revoke_reason, revoked_by, revoked_at, private_key_sealed"
            " FROM signing_keys WHERE kid = $1",
            active,
        )
        assert (row["state"], row["revoke_reason"], row["revoked_by"]) == (
            "revoked",
            "leaked",
            "admin",
        )
        assert row["revoked_at"] is not None
        assert row["private_key_sealed"] is None  # destroyed: it can never sign again
        # Events of that transaction: active(successor), revoked(old), pending(new).
        events = await _outbox_key_events(pool)
        assert [(kid, state) for _, _, kid, state in events[-3:]] == [
            (successor, "active"),
            (active, "revoked"),
            (resp.pending_kid, "pending"),
        ]
        assert resp.seq == events[-1][0]
        # Already revoked: nothing changes, seq 0.
        again = await kr.RevokeKey(revoke(kid=active), metadata=md, timeout=10)
        assert again.seq == 0
        assert await _outbox_key_events(pool) == events
        # Retiring: revoked, no promotion.
        rotated = await kr.Rotate(keyrotator_pb2.RotateRequest(force=True), metadata=md, timeout=10)
        resp = await kr.RevokeKey(revoke(kid=rotated.retiring_kid), metadata=md, timeout=10)
        assert resp.revoked_kid == rotated.retiring_kid and not resp.active_kid
        assert not resp.pending_kid
        listed = await kr.ListKeys(keyrotator_pb2.ListKeysRequest(include_ended=True), timeout=5)
        ended = {k.kid: k for k in listed.keys if k.state == "revoked"}
        assert set(ended) == {pending, active, rotated.retiring_kid}
        assert not any(k.has_private_key for k in ended.values())
        published = await kr.ListKeys(keyrotator_pb2.ListKeysRequest(), timeout=5)
        assert not {k.kid for k in published.keys} & set(ended)


async def test_the_private_key_column_never_holds_plaintext(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Checked on the raw rows: sealed blobs only, no PEM, no JWK, no DER, not even the scalar."""
    config = rotator_config(settings, keysets=(ACCESS, KeySet("access", "EdDSA"), ID_RS))
    async with (
        running_rotator(settings, config) as addr,
        run_suite(settings, pool, services=()) as suite,
        grpc.aio.insecure_channel(addr) as ch,
    ):
        await stub(ch).Rotate(
            keyrotator_pb2.RotateRequest(force=True), metadata=admin(suite.secrets), timeout=10
        )
    rows = await pool.fetch(
        "SELECT kid, state, kek_id, private_key_sealed, private_key_sealed::text AS as_text"
        " FROM signing_keys"
    )
    assert len(rows) == 7
    assert settings.kek is not None
    for row in rows:
        sealed = row["private_key_sealed"]
        assert sealed is not None  # nothing retired or revoked yet
        sealed = bytes(sealed)
        assert sealed.startswith(b"tkw1")
        for marker in (b"-----BEGIN", b"PRIVATE KEY", b'"d":"', b'"kty":'):
            assert marker not in sealed, (row["kid"], marker)
        with pytest.raises(ValueError, match=r"(?i)could not deserialize|invalid|unsupported"):
            load_der_private_key(sealed, password=None)
        der = open_sealed(settings.kek, row["kid"], sealed)
        private = load_der_private_key(der, password=None)
        assert der not in sealed and der[-32:] not in sealed
        if hasattr(private, "private_numbers"):
            numbers = private.private_numbers()
            secret = getattr(numbers, "private_value", None) or getattr(numbers, "d", None)
            if secret is not None:
                raw = secret.to_bytes((secret.bit_length() + 7) // 8, "big")
                assert raw not in sealed
        assert "BEGIN" not in row["as_text"]
    # The schema refuses a plaintext key, whatever writes it.
    pem = b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"
    for blob in (pem, b'{"kty":"EC","crv":"P-256","d":"abc"}', b"\x30\x81\x87" + b"\x00" * 64):
        with pytest.raises(asyncpg.CheckViolationError):
            await pool.execute(
                "INSERT INTO signing_keys (kid, alg, use, state, public_jwk, private_key_sealed,"
                " kek_id) VALUES ('plain', 'ES256', 'access', 'retiring', '{}', $1, 'x')",
                blob,
            )
    # A key that can still sign must keep its (sealed) private key.
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(
            "UPDATE signing_keys SET private_key_sealed = NULL WHERE state = 'active'"
        )

"""The one revocation rule, twice: its SQL fragment and its Python method agree (issue 12, item 1).

``tokenry.store.revocation_checks.covers`` (used by the issuer's and the introspector's checks
and by the introspection query) and ``tokenry.core.revocations.RevocationSet.check`` (the
verifier's state, the in-memory store) must give the same answer for every revocation set and
every token: Hypothesis draws both, PostgreSQL (the session's real server) answers one side.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenry.core.revocations import Revocation, RevocationKind, RevocationSet
from tokenry.store import opaque_tokens
from tokenry.store.records import ACCESS, OpaqueTokenRecord
from tokenry.store.revocation_checks import RevocationChecks

pytestmark = pytest.mark.integration

# A few values and small times, so that draws collide: the same value under several kinds,
# a watermark equal to the token's iat, a value revoked twice (the watermark is raised).
_values = st.sampled_from(["a", "b", "c"])
_times = st.integers(min_value=0, max_value=3)
_revocations = st.lists(
    st.builds(Revocation, st.sampled_from(RevocationKind), _values, _times, _times),
    max_size=8,
)


@dataclass(frozen=True)
class Token:
    jti: str
    gid: str | None
    sub: str | None
    client_id: str | None
    iat: int


_tokens = st.builds(
    Token, _values, st.none() | _values, st.none() | _values, st.none() | _values, _times
)

# Mirrors tokenry_revoke's upsert (migrations 0005/0006): raise the watermark and expiry.
_UPSERT = """
INSERT INTO revocations (kind, value, not_before, expires_at, actor, seq)
VALUES ($1, $2, $3, $4, 'test', 0)
ON CONFLICT (kind, value) DO UPDATE SET
    not_before = GREATEST(revocations.not_before, excluded.not_before),
    expires_at = GREATEST(revocations.expires_at, excluded.expires_at)
"""


def python_rule(revs: list[Revocation], t: Token) -> str | None:
    state = RevocationSet()
    state.apply_all(revs)
    return state.check(t.jti, t.gid, t.sub, t.client_id, t.iat)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(revs=_revocations, token=_tokens)
async def test_sql_rule_and_revocation_set_agree(
    pool: asyncpg.Pool, revs: list[Revocation], token: Token
) -> None:
    await pool.execute("TRUNCATE revocations, opaque_tokens")
    for rev in revs:
        await pool.execute(_UPSERT, rev.kind.value, rev.value, rev.not_before, rev.expires_at)
    expected = python_rule(revs, token)

    # The issuer's and introspector's check (absent claims travel as "").
    kind = await RevocationChecks(pool).revoked_kind(
        jti=token.jti,
        gid=token.gid,
        subject=token.sub,
        client_id=token.client_id,
        issued_at=token.iat,
    )
    assert (kind is None) == (expected is None)
    if kind is not None:
        # Several kinds may cover the token; SQL names any one, and it must cover alone.
        assert python_rule([r for r in revs if r.kind.value == kind], token) == kind

    # The introspection query (its columns are never NULL: an absent claim is "").
    token_hash = hashlib.sha256(repr(token).encode()).digest()
    record = OpaqueTokenRecord(
        token_hash=token_hash,
        kind=ACCESS,
        jti=token.jti,
        gid=token.gid or "",
        client_id=token.client_id or "",
        subject=token.sub or "",
        scopes=(),
        audiences=(),
        issued_at=token.iat,
        expires_at=token.iat + 600,
    )
    await opaque_tokens.insert_many(pool, [record])
    found = await opaque_tokens.get_many_for_introspection(pool, [token_hash])
    with_empty = Token(
        token.jti, token.gid or "", token.sub or "", token.client_id or "", token.iat
    )
    assert found[token_hash].revoked == (python_rule(revs, with_empty) is not None)

"""The client credentials hot path after its cuts (flows.client_credentials, flows.minting
.sign_from_template, core.ids.new_jti_and_gid): the same tokens, grants and refusals as before.

What a request grants is remembered per (client object, scope, audiences, token_format); these
tests hold that a remembered grant is the one the rules give (RFC 6749 §3.3, RFC 8707 §2), that a
changed client is judged again, that refusals are never remembered, and that the memo is bounded.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flows_support import ISSUER, access_claims, creds, memory_rig

from tokenry.core import b64url, ids
from tokenry.core.clients import CLIENT_CREDENTIALS
from tokenry.core.errors import (
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    TemporarilyUnavailable,
)
from tokenry.core.signing import SigningKey
from tokenry.core.tokens import ACCESS_TOKEN_TYPE_URN, new_access_token
from tokenry.flows import TokenRequest, TokenResult
from tokenry.flows import client_credentials as cc
from tokenry.flows.minting import Minter
from tokenry.flows.watermarks import Watermarks


def _request(scope: str = "", audiences: tuple[str, ...] = (), fmt: str = "") -> TokenRequest:
    return TokenRequest(CLIENT_CREDENTIALS, scope, audiences, creds("svc"), token_format=fmt)


# --- core.ids ---------------------------------------------------------------------------------


def test_jti_and_gid_are_each_the_base64url_of_their_own_16_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One encoding pass of ``jti + 00 00 + gid`` gives exactly ``b64url.encode`` of each half,
    whatever the bytes (docs/spec.md §2: 128 bits, unpadded base64url, canonical)."""
    samples = [os.urandom(32) for _ in range(200)]
    samples += [b"\xff" * 32, b"\0" * 32, bytes(range(32)), b"\xfb\xef\xbe" * 10 + b"\xff\xff"]
    for raw in samples:
        monkeypatch.setattr(ids, "urandom", lambda n, raw=raw: raw[:n])
        jti, gid = ids.new_jti_and_gid()
        assert (jti, gid) == (b64url.encode(raw[:16]), b64url.encode(raw[16:]))
        assert b64url.decode(jti) == raw[:16] and b64url.decode(gid) == raw[16:]


def test_jti_and_gid_are_fresh() -> None:
    seen = {part for _ in range(500) for part in ids.new_jti_and_gid()}
    assert len(seen) == 1000
    assert all(type(part) is str and len(part) == 22 and b64url.is_canonical(part) for part in seen)


# --- flows.minting.sign_from_template ---------------------------------------------------------


class _Keys:
    def __init__(self, key: SigningKey) -> None:
        self.key = key

    def current(self, use: str = "access", alg: str | None = None) -> SigningKey:
        return self.key


def _es256(kid: str) -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


def _decoded(token: str, key: SigningKey) -> tuple[dict[str, Any], dict[str, Any]]:
    public = key.private_key.public_key()
    claims = jwt.decode(
        token,
        public,
        algorithms=["ES256"],
        options={"verify_exp": False, "verify_iat": False, "verify_aud": False},
    )
    return jwt.get_unverified_header(token), claims


@pytest.mark.parametrize("audiences", [("api",), ("api", "billing")])
def test_sign_from_template_is_sign_access_of_the_same_token(audiences: tuple[str, ...]) -> None:
    """RFC 9068 §2.2: the same header and claims as the plain signer, key rotation included."""
    keys = _Keys(_es256("k1"))
    minter = Minter(issuer=ISSUER, keys=keys)
    for kid in ("k1", "k1", "k2"):
        if kid != keys.key.kid:
            keys.key = _es256(kid)
        jti, gid = ids.new_jti_and_gid()
        token = new_access_token(
            issuer=ISSUER,
            subject="svc",
            client_id="svc",
            audiences=audiences,
            scopes=("read", "write"),
            now=1_700_000_000.9,
            ttl=300,
            jti=jti,
            gid=gid,
        )
        template = minter.access_template("svc", "svc", audiences, ("read", "write"), None)
        fast = minter.sign_from_template(
            template, token.issued_at, token.expires_at, token.jti, token.gid
        )
        assert _decoded(fast, keys.key) == _decoded(minter.sign_access(token), keys.key)
        assert _decoded(fast, keys.key)[0]["kid"] == kid


def test_tokens_of_other_seconds_and_lifetimes_carry_their_own_exp_and_iat() -> None:
    """The template extended with one second's exp and iat is rebuilt when either changes."""
    key = _es256("k1")
    minter = Minter(issuer=ISSUER, keys=_Keys(key))
    template = minter.access_template("svc", "svc", ("api",), ("read",), None)
    for issued_at, ttl in [(100, 300), (100, 300), (101, 300), (101, 60), (100, 300), (10**10, 7)]:
        jti, gid = ids.new_jti_and_gid()
        token = minter.sign_from_template(template, issued_at, issued_at + ttl, jti, gid)
        claims = _decoded(token, key)[1]
        assert (claims["iat"], claims["exp"], claims["jti"], claims["gid"]) == (
            issued_at,
            issued_at + ttl,
            jti,
            gid,
        )
        assert list(claims)[-4:] == ["exp", "iat", "jti", "gid"]
        assert claims["scope"] == "read" and claims["aud"] == "api" and claims["iss"] == ISSUER


# --- flows.watermarks -------------------------------------------------------------------------


def test_held_says_whether_any_watermark_is_held() -> None:
    """The hot path calls check() only while ``held``: it must be true whenever check() could
    refuse (docs/spec.md §4)."""
    marks = Watermarks()
    assert not marks.held
    marks.raise_to("user", "x", 10**10)  # an unknown kind holds nothing
    assert not marks.held
    marks.raise_to("client", "svc", 1002)
    assert marks.held
    marks.load([("subject", "alice", 1005)], now=1003)  # the client's mark is behind now
    assert marks.held
    with pytest.raises(TemporarilyUnavailable):
        marks.check("alice", "svc", 1004)
    marks.load([], now=1005)
    assert not marks.held
    marks.load([("client", "svc", 2000)], now=1006)
    assert marks.held


async def test_a_client_watermark_still_refuses_its_tokens() -> None:
    flows, _, _ = await memory_rig()
    await flows.token(_request("read"))  # the grant is remembered; the watermark is not
    now = int(flows.client_credentials._d.clock.now())
    flows.client_credentials._d.watermarks.raise_to("client", "svc", now + 1)
    with pytest.raises(TemporarilyUnavailable):
        await flows.token(_request("read"))
    flows.client_credentials._d.watermarks.load([], now=now + 1)
    assert (await flows.token(_request("read"))).scope == "read"


# --- flows.client_credentials -----------------------------------------------------------------


async def test_the_result_is_the_token_result_the_fields_give() -> None:
    flows, _, keys = await memory_rig()
    out = await flows.token(_request("read"))
    expected = TokenResult(out.access_token, "Bearer", out.expires_in, "read")
    assert type(out) is TokenResult and out == expected and len(out) == len(TokenResult._fields)
    assert out.issued_token_type == ACCESS_TOKEN_TYPE_URN
    assert out.refresh_token == "" and out.id_token == ""  # RFC 6749 §4.4.3
    claims = access_claims(out.access_token, keys)
    assert claims["exp"] - claims["iat"] == out.expires_in


async def test_remembered_grants_are_the_grants_the_rules_give() -> None:
    flows, _, keys = await memory_rig()
    for _ in range(3):  # the first works the grant out, the others reuse it
        default = await flows.token(_request())
        assert default.scope == "read write"  # RFC 6749 §3.3: empty means the client's default
        claims = access_claims(default.access_token, keys)
        assert (claims["scope"], claims["aud"], claims["sub"]) == ("read write", "api", "svc")
        narrowed = await flows.token(_request("write", ("api",)))
        assert (
            narrowed.scope == "write"
            and access_claims(narrowed.access_token, keys)["scope"] == "write"
        )
    first, second = await flows.token(_request("read")), await flows.token(_request("read"))
    one, two = access_claims(first.access_token, keys), access_claims(second.access_token, keys)
    assert one["jti"] != two["jti"] and one["gid"] != two["gid"]


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        (_request("admin"), InvalidScope),  # RFC 6749 §3.3: beyond what the client may have
        (_request("read", ("elsewhere",)), InvalidTarget),  # RFC 8707 §2
        (_request("read", fmt="paper"), InvalidRequest),  # docs/spec.md §3
    ],
)
async def test_refusals_are_never_remembered(
    request_: TokenRequest, error: type[Exception]
) -> None:
    flows, _, _ = await memory_rig()
    for _ in range(3):
        with pytest.raises(error):
            await flows.token(request_)
    assert not flows.client_credentials._shapes


async def test_a_changed_client_is_judged_again() -> None:
    """A client the registry re-reads is another object: its grant is worked out anew (a scope
    taken away is refused at once)."""
    flows, store, _ = await memory_rig()
    client = await store.get_client("svc")
    assert client is not None
    assert (await flows.client_credentials.issue(client, _request("write"))).scope == "write"
    narrowed = dataclasses.replace(client, scopes=frozenset({"read"}))
    with pytest.raises(InvalidScope):
        await flows.client_credentials.issue(narrowed, _request("write"))
    assert (await flows.client_credentials.issue(narrowed, _request())).scope == "read"
    opaque_now = dataclasses.replace(client, token_format="opaque")
    out = await flows.client_credentials.issue(opaque_now, _request("write"))
    assert out.access_token.count(".") != 2 and out.scope == "write"


async def test_opaque_tokens_still_write_their_row() -> None:
    flows, store, _ = await memory_rig()
    for _ in range(2):
        out = await flows.token(_request("read", fmt="opaque"))
        assert out.scope == "read" and out.expires_in > 0
    assert len(store.tokens) == 2


async def test_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cc, "MAX_SHAPES", 4)
    flows, store, _ = await memory_rig()
    client = await store.get_client("svc")
    assert client is not None
    for scope in ("read", "write", "read write", "write read", "", "read", "write"):
        await flows.client_credentials.issue(client, _request(scope))
        assert len(flows.client_credentials._shapes) <= 4

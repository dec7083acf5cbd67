"""Token claims as plain data: RFC 9068 access tokens, RFC 8693 act, OIDC ID tokens."""

from __future__ import annotations

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tokenry.core.oidc import at_hash, new_id_token
from tokenry.core.signing import SigningKey
from tokenry.core.tokens import new_access_token


def _token(**kw: object) -> dict[str, object]:
    args: dict[str, object] = {
        "issuer": "https://iss",
        "subject": "alice",
        "client_id": "app",
        "audiences": ("api",),
        "scopes": ("a", "b"),
        "now": 1_800_000_000.9,
        "ttl": 600,
        "jti": "j" * 22,
        "gid": "g" * 22,
    }
    args.update(kw)
    return new_access_token(**args).claims()  # type: ignore[arg-type]


def test_rfc9068_claims() -> None:
    claims = _token()
    assert claims == {
        "iss": "https://iss",
        "sub": "alice",
        "aud": "api",
        "exp": 1_800_000_600,
        "iat": 1_800_000_000,  # whole seconds, never rounded up (docs/spec.md §4 watermarks)
        "jti": "j" * 22,
        "client_id": "app",
        "scope": "a b",
        "gid": "g" * 22,
    }


def test_several_audiences_are_an_array() -> None:
    assert _token(audiences=("a", "b"))["aud"] == ["a", "b"]


def test_act_claim_for_token_exchange() -> None:
    act = {"sub": "svc-b", "act": {"sub": "svc-a"}}
    assert _token(act=act)["act"] == act
    assert "act" not in _token()


def test_exchanged_token_never_outlives_its_subject() -> None:
    claims = _token(not_after=1_800_000_100)
    assert claims["exp"] == 1_800_000_100
    assert _token(not_after=1_900_000_000)["exp"] == 1_800_000_600


def test_at_hash_oidc_core_appendix_a_vector() -> None:
    # OpenID Connect Core 1.0, Appendix A.3/A.4.
    assert at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y") == "77QmUPtjPfzWtF2AnpK9RQ"


def test_id_token_claims_and_typ() -> None:
    key = SigningKey("rk", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    token = new_id_token(
        issuer="https://iss",
        subject="alice",
        client_id="app",
        now=1000.5,
        ttl=600,
        auth_time=990,
        nonce="n-0S6_WzA2Mj",
        access_token="tkr_at_x",
    )
    claims = token.claims()
    assert claims == {
        "iss": "https://iss",
        "sub": "alice",
        "aud": "app",
        "exp": 1600,
        "iat": 1000,
        "auth_time": 990,
        "nonce": "n-0S6_WzA2Mj",
        "at_hash": at_hash("tkr_at_x"),
    }
    signed = key.sign(claims, typ="JWT")
    header = jwt.get_unverified_header(signed)
    # ID tokens are never mistaken for RFC 9068 access tokens (typ at+jwt).
    assert header == {"alg": "RS256", "kid": "rk", "typ": "JWT"}


def test_id_token_without_nonce_has_no_nonce_claim() -> None:
    token = new_id_token(
        issuer="i",
        subject="s",
        client_id="c",
        now=1,
        ttl=1,
        auth_time=1,
        nonce="",
        access_token="t",
    )
    assert "nonce" not in token.claims()


def test_lean_jws_signer_matches_pyjwt_for_every_algorithm() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    from tokenry.core.jws import JwsSigner

    claims = _token()
    for alg, private in (
        ("ES256", ec.generate_private_key(ec.SECP256R1())),
        ("EdDSA", ed25519.Ed25519PrivateKey.generate()),
        ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ("PS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ):
        signer = JwsSigner(SigningKey("k-" + alg, alg, private), "at+jwt")
        token = signer.sign(claims)
        assert jwt.get_unverified_header(token) == {"alg": alg, "kid": "k-" + alg, "typ": "at+jwt"}
        decoded = jwt.decode(
            token,
            private.public_key(),
            algorithms=[alg],
            audience="api",
            options={"verify_exp": False, "verify_iat": False},
        )
        assert decoded == claims
        assert "=" not in token and len(token.split(".")) == 3

"""Signing keys: RFC 7638 thumbprints, public JWKs, algorithm pinning, sign → verify."""

from __future__ import annotations

import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tokenry.core.signing import (
    SUPPORTED_ALGS,
    SigningKey,
    generate_private_key,
    key_matches_alg,
    load_signing_key,
    private_key_to_der,
    public_jwk,
    thumbprint,
)

# RFC 7638 §3.1: the example RSA key and its SHA-256 thumbprint.
RFC7638_JWK = {
    "kty": "RSA",
    "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
        "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FD"
        "W2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vM"
        "QFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    ),
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_rfc7638_example_thumbprint() -> None:
    assert thumbprint(RFC7638_JWK) == RFC7638_THUMBPRINT


def test_thumbprint_ignores_optional_members() -> None:
    bare = {k: RFC7638_JWK[k] for k in ("kty", "n", "e")}
    assert thumbprint(bare) == thumbprint({**RFC7638_JWK, "use": "sig", "x5c": ["junk"]})


@pytest.fixture(scope="module")
def keys() -> dict[str, object]:
    return {alg: generate_private_key(alg) for alg in SUPPORTED_ALGS}


@pytest.mark.parametrize("alg", SUPPORTED_ALGS)
def test_public_jwk_carries_alg_use_and_thumbprint_kid(alg: str, keys: dict[str, object]) -> None:
    key = keys[alg]
    jwk = public_jwk(key, alg)  # type: ignore[arg-type]
    assert jwk["alg"] == alg and jwk["use"] == "sig"
    assert jwk["kid"] == thumbprint(jwk)
    # Only public members: no private parameter of any key type (RFC 7518 §6).
    assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(jwk)


@pytest.mark.parametrize("alg", SUPPORTED_ALGS)
def test_sign_then_verify_with_the_published_jwk(alg: str, keys: dict[str, object]) -> None:
    jwk = public_jwk(keys[alg], alg)  # type: ignore[arg-type]
    signer = load_signing_key(jwk["kid"], alg, private_key_to_der(keys[alg]))  # type: ignore[arg-type]
    token = signer.sign({"sub": "s", "iat": 1})
    header = jwt.get_unverified_header(token)
    assert header == {"alg": alg, "kid": jwk["kid"], "typ": "at+jwt"}
    verifying = jwt.PyJWK.from_json(json.dumps(jwk))
    assert jwt.decode(token, verifying.key, algorithms=[alg]) == {"sub": "s", "iat": 1}


def test_algorithms_are_pinned_to_their_key_type(keys: dict[str, object]) -> None:
    for alg, key in keys.items():
        for other in SUPPORTED_ALGS:
            expected = other == alg or {alg, other} == {"PS256", "RS256"}
            assert key_matches_alg(key, other) is expected, (alg, other)  # type: ignore[arg-type]
    assert not key_matches_alg(ec.generate_private_key(ec.SECP384R1()), "ES256")
    assert not key_matches_alg(keys["ES256"], "HS256")  # type: ignore[arg-type]


def test_short_rsa_keys_are_refused() -> None:
    # RFC 7518 §3.3: RSA keys of 2048 bits or more.
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match="does not fit"):
        load_signing_key("k", "RS256", private_key_to_der(small))


def test_loading_a_key_under_the_wrong_alg_fails(keys: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="does not fit ES256"):
        load_signing_key("k", "ES256", private_key_to_der(keys["EdDSA"]))  # type: ignore[arg-type]


def test_signing_key_repr_shows_no_key_material(keys: dict[str, object]) -> None:
    key = SigningKey("kid1", "ES256", keys["ES256"])  # type: ignore[arg-type]
    assert repr(key) == "SigningKey(kid='kid1', alg='ES256')"


def test_unknown_algorithms_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        generate_private_key("HS256")

"""Attacks on the JWS/JWT validation core, one test per attack (pyjwt ``test_advisory.py`` style).

Every forged token is built here, with cryptography keys and pyjwt's algorithm objects, or by
hand where pyjwt refuses to produce the malformed thing. ``NOW`` is fixed.

At the end, negative controls prove the suite has teeth: deliberately broken decoders (built by
injecting a broken :class:`SignaturePolicy` into :class:`Decoder`, never by patching the real
code) accept the forgeries that the attack tests reject, and the very assertion the attack
tests use fails against them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm, get_default_algorithms

from tokenry.jose import (
    ALGORITHMS,
    Decoder,
    SignaturePolicy,
    VerificationKey,
    decode_verified,
    split_and_parse,
)
from tokenry.verifier.errors import (
    BadSignatureError,
    InvalidClaimsError,
    MalformedTokenError,
    RejectedHeaderError,
    TokenExpiredError,
    VerificationError,
)

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
ISSUER = "https://issuer.tokenry.test"
AUDIENCE = "demo-api"
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = Ed25519PrivateKey.generate()
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ATTACKER_EC_KEY = ec.generate_private_key(ec.SECP256R1())


def public_jwk(private_key: Any, kid: str, alg: str) -> dict[str, Any]:
    public = private_key.public_key()
    if alg == "ES256":
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    elif alg == "EdDSA":
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


# One RSA key published twice, pinned to two algorithms: the alg-swap tests need that.
SIGNERS: dict[str, tuple[Any, str]] = {
    "ES256": (EC_KEY, "ec-1"),
    "EdDSA": (ED_KEY, "ed-1"),
    "PS256": (RSA_KEY, "ps-1"),
    "RS256": (RSA_KEY, "rs-1"),
}
KEYS: dict[str, VerificationKey] = {
    kid: VerificationKey.from_jwk(public_jwk(private_key, kid, alg))
    for alg, (private_key, kid) in SIGNERS.items()
}
PYJWT_ALGORITHMS = get_default_algorithms()
STRICT = Decoder()
_DROP = object()


# --- token building ------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64_json(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def make_claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "svc-orders",
        "aud": AUDIENCE,
        "exp": NOW + 600,
        "iat": NOW - 5,
        "jti": "c2VjcmV0LWp0aS0xMjM0NQ",
        "client_id": "svc-orders",
        "scope": "demo.read",
    }
    for name, value in overrides.items():
        if value is _DROP:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def make_header(alg: Any = "ES256", **overrides: Any) -> dict[str, Any]:
    kid = SIGNERS[alg][1] if isinstance(alg, str) and alg in SIGNERS else "ec-1"
    header: dict[str, Any] = {"alg": alg, "kid": kid, "typ": "at+jwt"}
    if alg is _DROP:
        del header["alg"]
    for name, value in overrides.items():
        if value is _DROP:
            header.pop(name, None)
        else:
            header[name] = value
    return header


def sign(signing_input: str, alg: str = "ES256", private_key: Any = None) -> bytes:
    key = private_key if private_key is not None else SIGNERS[alg][0]
    signature: bytes = PYJWT_ALGORITHMS[alg].sign(signing_input.encode("ascii"), key)
    return signature


def make_token(
    claims: dict[str, Any] | None = None,
    header: dict[str, Any] | None = None,
    *,
    alg: str = "ES256",
    header_segment: str | None = None,
    payload_segment: str | None = None,
    signature: bytes | None = None,
    private_key: Any = None,
) -> str:
    """A JWS over the given header/claims (or raw segments), signed with ``alg``'s key."""
    h = header_segment if header_segment is not None else b64_json(header or make_header(alg))
    p = payload_segment if payload_segment is not None else b64_json(claims or make_claims())
    signing_input = f"{h}.{p}"
    sig = signature if signature is not None else sign(signing_input, alg, private_key)
    return f"{signing_input}.{b64(sig)}"


def decode(token: Any, *, decoder: Decoder = STRICT, **options: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "now": NOW}
    kwargs.update(options)
    return decoder.decode(token, KEYS, **kwargs)


def expect_rejected(
    token: Any, reason: str, *, decoder: Decoder = STRICT, **options: Any
) -> VerificationError:
    """The assertion every attack test makes: rejected, for ``reason``, without echoing it."""
    with pytest.raises(VerificationError) as caught:
        decode(token, decoder=decoder, **options)
    error = caught.value
    assert error.reason == reason, f"{error!r}"
    if isinstance(token, str):
        # Descriptions never quote the token (docs/spec.md §7): no segment may appear in them.
        for segment in token.split("."):
            if len(segment) >= 8:
                assert segment not in str(error)
                assert segment not in repr(error)
    return error


# --- forgeries shared by the attack tests and the negative controls ------------------------------


def forge_alg_none(spelling: str) -> str:
    """CVE-2015-9235: an unsigned token claiming ``alg: none``, naming a real kid."""
    header = make_header(alg=spelling, kid="ec-1")
    return f"{b64_json(header)}.{b64_json(make_claims())}."


def forge_hs256_with_public_key(secret: bytes, kid: str = "ec-1") -> str:
    """Algorithm confusion: HMAC-SHA256 keyed with the verifier's own public key bytes."""
    header = make_header(alg="HS256", kid=kid)
    signing_input = f"{b64_json(header)}.{b64_json(make_claims())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def public_pem(kid: str) -> bytes:
    return KEYS[kid].public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def forge_der_signature() -> str:
    """A genuine ES256 signature, DER-encoded (what cryptography emits) instead of raw r‖s."""
    signing_input = f"{b64_json(make_header())}.{b64_json(make_claims())}"
    der = EC_KEY.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    return f"{signing_input}.{b64(der)}"


def high_s_variant(token: str) -> str:
    """Replace an ES256 signature (r, s) by (r, n - s): also valid (ECDSA malleability)."""
    signing_input, _, signature = token.rpartition(".")
    raw = base64.urlsafe_b64decode(signature + "==")
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    flipped = r.to_bytes(32, "big") + (P256_ORDER - s).to_bytes(32, "big")
    return f"{signing_input}.{b64(flipped)}"


# --- legitimate tokens must pass -----------------------------------------------------------------


@pytest.mark.parametrize("alg", sorted(ALGORITHMS))
def test_accepts_token_minted_by_pyjwt(alg: str) -> None:
    private_key, kid = SIGNERS[alg]
    claims = make_claims()
    token = jwt.encode(claims, private_key, algorithm=alg, headers={"kid": kid, "typ": "at+jwt"})
    assert decode(token) == claims


def test_accepts_es256() -> None:
    assert decode(make_token(alg="ES256")) == make_claims()


def test_accepts_eddsa() -> None:
    assert decode(make_token(alg="EdDSA")) == make_claims()


def test_accepts_ps256() -> None:
    assert decode(make_token(alg="PS256")) == make_claims()


def test_accepts_rs256() -> None:
    assert decode(make_token(alg="RS256")) == make_claims()


def test_accepts_high_s_ecdsa_signature() -> None:
    token = make_token()
    twin = high_s_variant(token)
    assert twin != token
    # Both verify: the token string is malleable, so nothing may key on the token bytes.
    assert decode(twin) == decode(token)


def test_accepts_aud_as_array() -> None:
    token = make_token(make_claims(aud=["other-api", AUDIENCE]))
    assert decode(token)["aud"] == ["other-api", AUDIENCE]


def test_accepts_typ_case_insensitive() -> None:
    assert decode(make_token(header=make_header(typ="AT+JWT")))["jti"]
    assert decode(make_token(header=make_header(typ="Application/At+Jwt")))["jti"]


def test_accepts_application_at_jwt_typ() -> None:
    assert decode(make_token(header=make_header(typ="application/at+jwt")))["jti"]


def test_accepts_custom_accepted_typ_case_insensitively() -> None:
    token = make_token(header=make_header(typ="dpop+JWT"))
    assert decode(token, accepted_typ=frozenset({"DPoP+jwt"}))["jti"]
    expect_rejected(make_token(), "bad_typ", accepted_typ=frozenset({"DPoP+jwt"}))


def test_accepts_unknown_header_parameter() -> None:
    # RFC 7515 §4: parameters not understood are ignored unless listed in crit.
    assert decode(make_token(header=make_header(x_trace="abc")))["jti"]


def test_accepts_float_times_and_no_optional_claims() -> None:
    claims = make_claims(exp=NOW + 0.5, iat=NOW - 0.25, scope=_DROP)
    assert decode(make_token(claims)) == claims


def test_accepts_json_whitespace_inside_and_around_header() -> None:
    header_text = ' { "alg" : "ES256",\r\n "kid":"ec-1", "typ":"at+jwt" } '
    assert decode(make_token(header_segment=b64(header_text.encode())))["jti"]


def test_accepts_exp_one_second_before_leeway_edge() -> None:
    token = make_token(make_claims(exp=NOW))
    assert decode(token, now=NOW + 29)["jti"]
    assert decode(token, now=NOW + 29.999, leeway=30.0)["jti"]


def test_rejects_expired_exactly_at_leeway_edge() -> None:
    # RFC 7519 §4.1.4: "on or after" exp is expired.
    expect_rejected(make_token(make_claims(exp=NOW)), "expired", now=NOW + 30)


def test_accepts_nbf_at_leeway_edge_and_iat_at_clock_skew_edge() -> None:
    token = make_token(make_claims(nbf=NOW + 30, iat=NOW + 2))
    assert decode(token)["jti"]


def test_rejects_iat_beyond_the_max_clock_skew_within_the_leeway() -> None:
    """Issue 11: a token stamped 3-30 s in the future (an issuer running fast) would pass the
    30 s leeway and outlive a subject revocation whose watermark is only 2 s ahead."""
    expect_rejected(make_token(make_claims(iat=NOW + 3)), "iat_in_future")
    expect_rejected(make_token(make_claims(iat=NOW + 25)), "iat_in_future")


def test_zero_leeway_is_exact() -> None:
    token = make_token(make_claims(exp=NOW + 1, nbf=NOW, iat=NOW))
    assert decode(token, leeway=0.0)["jti"]
    expect_rejected(token, "expired", now=NOW + 1, leeway=0.0)


def test_expiry_cannot_be_disabled_with_a_huge_or_nan_leeway() -> None:
    token = make_token(make_claims(exp=NOW - 10_000))
    for leeway in (1e9, float("inf"), float("nan"), -1.0):
        with pytest.raises(ValueError, match="leeway"):
            decode(token, leeway=leeway)


def test_decode_verified_function_matches_decoder() -> None:
    token = make_token()
    claims = decode_verified(token, KEYS, issuer=ISSUER, audience=AUDIENCE, now=NOW)
    assert claims == make_claims()
    with pytest.raises(TokenExpiredError):
        decode_verified(token, KEYS, issuer=ISSUER, audience=AUDIENCE, now=NOW + 10_000)


def test_split_and_parse_exposes_the_unverified_header() -> None:
    token = make_token()
    parts = split_and_parse(token)
    assert parts.kid == "ec-1"
    assert parts.alg == "ES256"
    assert parts.header["typ"] == "at+jwt"
    assert parts.signing_input == token.rpartition(".")[0].encode()
    assert STRICT.verify_signature(parts, KEYS["ec-1"]) == make_claims()


def test_verify_signature_alone_ignores_expiry_but_not_the_signature() -> None:
    # RFC 7009 revocation proves possession even of an expired token (docs/spec.md §3).
    expired = make_token(make_claims(exp=NOW - 10_000))
    assert STRICT.verify_signature(split_and_parse(expired), KEYS["ec-1"])["jti"]
    forged = make_token(make_claims(exp=NOW - 10_000), private_key=ATTACKER_EC_KEY)
    with pytest.raises(BadSignatureError):
        STRICT.verify_signature(split_and_parse(forged), KEYS["ec-1"])


# --- alg: none, HMAC confusion, algorithm swaps --------------------------------------------------


def test_rejects_alg_none_lowercase() -> None:
    expect_rejected(forge_alg_none("none"), "alg_not_allowed")


def test_rejects_alg_none_capitalized() -> None:
    expect_rejected(forge_alg_none("None"), "alg_not_allowed")


def test_rejects_alg_none_uppercase() -> None:
    expect_rejected(forge_alg_none("NONE"), "alg_not_allowed")


def test_rejects_alg_none_mixed_case() -> None:
    expect_rejected(forge_alg_none("nOnE"), "alg_not_allowed")


def test_rejects_alg_none_keeping_the_original_signature() -> None:
    token = make_token()
    signing_input, _, signature = token.rpartition(".")
    _, payload = signing_input.split(".")
    header = b64_json(make_header(alg="none", kid="ec-1"))
    expect_rejected(f"{header}.{payload}.{signature}", "alg_not_allowed")


def test_rejects_hs256_signed_with_public_key() -> None:
    expect_rejected(forge_hs256_with_public_key(public_pem("ec-1")), "alg_not_allowed")


def test_rejects_hs256_signed_with_public_rsa_key() -> None:
    token = forge_hs256_with_public_key(public_pem("rs-1"), kid="rs-1")
    expect_rejected(token, "alg_not_allowed")


def test_rejects_hs256_signed_with_public_jwk() -> None:
    secret = json.dumps(public_jwk(EC_KEY, "ec-1", "ES256")).encode()
    expect_rejected(forge_hs256_with_public_key(secret), "alg_not_allowed")


def test_rejects_alg_swap_es256_to_rs256() -> None:
    # Header claims RS256 but names the ES256 key: the key pins the algorithm (RFC 8725 §3.1).
    token = make_token(header=make_header(alg="RS256", kid="ec-1"), alg="ES256")
    expect_rejected(token, "alg_mismatch")


def test_rejects_alg_swap_rs256_to_ps256_with_a_valid_pss_signature() -> None:
    # The signature is a genuine PS256 signature by the RSA key that rs-1 publishes, but rs-1 is
    # pinned to RS256: a valid signature under another algorithm is still refused.
    token = make_token(header=make_header(alg="PS256", kid="rs-1"), alg="PS256")
    expect_rejected(token, "alg_mismatch")


def test_rejects_alg_swap_eddsa_key_named_by_es256_header() -> None:
    token = make_token(header=make_header(alg="ES256", kid="ed-1"), alg="ES256")
    expect_rejected(token, "alg_mismatch")


def test_rejects_unsupported_alg_es384() -> None:
    expect_rejected(make_token(header=make_header(alg="ES384", kid="ec-1")), "alg_not_allowed")


def test_rejects_alg_with_wrong_case() -> None:
    expect_rejected(make_token(header=make_header(alg="es256")), "alg_not_allowed")
    expect_rejected(make_token(header=make_header(alg="EDDSA", kid="ed-1")), "alg_not_allowed")


def test_rejects_alg_not_a_string() -> None:
    expect_rejected(make_token(header=make_header(alg=["ES256"], kid="ec-1")), "alg_not_allowed")


def test_rejects_missing_alg() -> None:
    expect_rejected(make_token(header=make_header(alg=_DROP)), "alg_not_allowed")


# --- kid -----------------------------------------------------------------------------------------


def test_rejects_missing_kid() -> None:
    expect_rejected(make_token(header=make_header(kid=_DROP)), "missing_kid")


def test_rejects_empty_kid() -> None:
    expect_rejected(make_token(header=make_header(kid="")), "missing_kid")


def test_rejects_kid_not_a_string() -> None:
    expect_rejected(make_token(header=make_header(kid=1)), "missing_kid")


def test_rejects_unknown_kid() -> None:
    expect_rejected(make_token(header=make_header(kid="ec-2")), "unknown_kid")


def test_rejects_unknown_kid_without_trying_every_key() -> None:
    # Signed by a real key, but the kid names none: no fallback search over the key set.
    expect_rejected(make_token(header=make_header(kid="rotated-away")), "unknown_kid")


def test_rejects_kid_path_traversal() -> None:
    expect_rejected(make_token(header=make_header(kid="../../../../dev/null")), "unknown_kid")


def test_rejects_kid_sql_injection() -> None:
    expect_rejected(make_token(header=make_header(kid="x' UNION SELECT 'k")), "unknown_kid")


def test_rejects_signature_by_another_key_under_a_known_kid() -> None:
    expect_rejected(make_token(private_key=ATTACKER_EC_KEY), "bad_signature")


# --- key-locating and other refused headers ------------------------------------------------------


def test_rejects_embedded_jwk() -> None:
    # The attacker signs with their own key and ships it in the header (CVE-2018-0114).
    header = make_header(jwk=public_jwk(ATTACKER_EC_KEY, "ec-1", "ES256"))
    token = make_token(header=header, private_key=ATTACKER_EC_KEY)
    expect_rejected(token, "forbidden_header")


def test_rejects_jku() -> None:
    header = make_header(jku="https://attacker.example/jwks.json")
    expect_rejected(make_token(header=header), "forbidden_header")


def test_rejects_x5u() -> None:
    header = make_header(x5u="https://attacker.example/cert.pem")
    expect_rejected(make_token(header=header), "forbidden_header")


def test_rejects_x5c() -> None:
    expect_rejected(
        make_token(header=make_header(x5c=["MIIBszCCAVmgAwIBAgIU"])), "forbidden_header"
    )


def test_rejects_x5t() -> None:
    expect_rejected(make_token(header=make_header(x5t="dGh1bWJwcmludA")), "forbidden_header")


def test_rejects_x5t_s256() -> None:
    header = make_header(**{"x5t#S256": "dGh1bWJwcmludA"})
    expect_rejected(make_token(header=header), "forbidden_header")


def test_rejects_zip() -> None:
    expect_rejected(make_token(header=make_header(zip="DEF")), "forbidden_header")


def test_rejects_cty_nested_jwt() -> None:
    expect_rejected(make_token(header=make_header(cty="JWT")), "forbidden_header")


def test_rejects_b64_false_unencoded_payload() -> None:
    header = make_header(b64=False, crit=["b64"])
    expect_rejected(make_token(header=header), "forbidden_header")


def test_rejects_enc_jwe_header_in_a_jws() -> None:
    expect_rejected(make_token(header=make_header(enc="A256GCM")), "forbidden_header")


def test_rejects_crit() -> None:
    expect_rejected(make_token(header=make_header(crit=["exp"])), "unknown_crit")


def test_rejects_empty_crit() -> None:
    # RFC 7515 §4.1.11: an empty crit list is itself invalid.
    expect_rejected(make_token(header=make_header(crit=[])), "unknown_crit")


def test_rejects_wrong_typ() -> None:
    expect_rejected(make_token(header=make_header(typ="JWT")), "bad_typ")


def test_rejects_id_token_typ_confusion() -> None:
    # An OIDC ID token or a client assertion must not pass as an access token (RFC 9068 §4).
    expect_rejected(make_token(header=make_header(typ="application/jwt")), "bad_typ")


def test_rejects_missing_typ() -> None:
    expect_rejected(make_token(header=make_header(typ=_DROP)), "bad_typ")


def test_rejects_typ_not_a_string() -> None:
    expect_rejected(make_token(header=make_header(typ=["at+jwt"])), "bad_typ")


def test_rejects_header_not_an_object() -> None:
    expect_rejected(make_token(header_segment=b64_json(["ES256", "ec-1"])), "malformed")


# --- duplicate members and JSON tricks -----------------------------------------------------------


def test_rejects_duplicate_header_member() -> None:
    # First-wins and last-wins parsers would disagree about the algorithm.
    text = '{"alg":"none","kid":"ec-1","typ":"at+jwt","alg":"ES256"}'
    expect_rejected(make_token(header_segment=b64(text.encode())), "duplicate_member")


def test_rejects_duplicate_claim() -> None:
    claims = json.dumps(make_claims())[:-1] + ',"aud":"admin-api"}'
    expect_rejected(make_token(payload_segment=b64(claims.encode())), "duplicate_member")


def test_rejects_duplicate_member_in_nested_claim() -> None:
    claims = json.dumps(make_claims())[:-1] + ',"act":{"sub":"a","sub":"b"}}'
    expect_rejected(make_token(payload_segment=b64(claims.encode())), "duplicate_member")


def test_rejects_non_utf8_header() -> None:
    expect_rejected(make_token(header_segment=b64(b'{"alg":"ES256","kid":"\xff"}')), "malformed")


def test_rejects_utf16_json_header() -> None:
    # json.loads(bytes) would auto-detect UTF-16; JOSE headers are UTF-8 (RFC 7515 §4).
    text = json.dumps(make_header()).encode("utf-16")
    expect_rejected(make_token(header_segment=b64(text)), "malformed")


def test_rejects_utf8_bom_header() -> None:
    text = b"\xef\xbb\xbf" + json.dumps(make_header()).encode()
    expect_rejected(make_token(header_segment=b64(text)), "malformed")


def test_rejects_trailing_garbage_after_header_json() -> None:
    text = json.dumps(make_header()) + "x"
    expect_rejected(make_token(header_segment=b64(text.encode())), "malformed")


def test_rejects_deeply_nested_json_without_crashing() -> None:
    text = '{"alg":"ES256","kid":"ec-1","typ":"at+jwt","x":' + "[" * 2500 + "]" * 2500 + "}"
    expect_rejected(make_token(header_segment=b64(text.encode())), "malformed")


def test_rejects_payload_not_an_object() -> None:
    expect_rejected(make_token(payload_segment=b64_json([make_claims()])), "malformed")


def test_rejects_empty_payload() -> None:
    expect_rejected(make_token(payload_segment=""), "malformed")


# --- signature encoding --------------------------------------------------------------------------


def test_rejects_der_ecdsa_signature() -> None:
    expect_rejected(forge_der_signature(), "bad_signature")


def test_rejects_ecdsa_r_s_zero() -> None:
    # CVE-2022-21449 ("psychic signatures"): r = s = 0 must never verify.
    expect_rejected(make_token(signature=bytes(64)), "bad_signature")


def test_rejects_ecdsa_r_zero() -> None:
    valid = base64.urlsafe_b64decode(make_token().rpartition(".")[2] + "==")
    expect_rejected(make_token(signature=bytes(32) + valid[32:]), "bad_signature")


def test_rejects_ecdsa_s_zero() -> None:
    valid = base64.urlsafe_b64decode(make_token().rpartition(".")[2] + "==")
    expect_rejected(make_token(signature=valid[:32] + bytes(32)), "bad_signature")


def test_rejects_ecdsa_r_s_equal_to_group_order() -> None:
    n = P256_ORDER.to_bytes(32, "big")
    expect_rejected(make_token(signature=n + n), "bad_signature")


def test_rejects_truncated_signature() -> None:
    valid = base64.urlsafe_b64decode(make_token().rpartition(".")[2] + "==")
    expect_rejected(make_token(signature=valid[:63]), "bad_signature")


def test_rejects_signature_with_trailing_byte() -> None:
    valid = base64.urlsafe_b64decode(make_token().rpartition(".")[2] + "==")
    expect_rejected(make_token(signature=valid + b"\x00"), "bad_signature")


def test_rejects_empty_signature() -> None:
    expect_rejected(make_token().rpartition(".")[0] + ".", "bad_signature")


def test_rejects_eddsa_signature_of_wrong_length() -> None:
    valid = base64.urlsafe_b64decode(make_token(alg="EdDSA").rpartition(".")[2] + "==")
    expect_rejected(make_token(alg="EdDSA", signature=valid + b"\x00"), "bad_signature")


def test_rejects_rsa_signature_with_leading_zero_byte() -> None:
    # RFC 8017 §8.2.2: the signature must be exactly k octets; no zero-padding to sneak by.
    valid = base64.urlsafe_b64decode(make_token(alg="RS256").rpartition(".")[2] + "==")
    expect_rejected(make_token(alg="RS256", signature=b"\x00" + valid), "bad_signature")


def test_rejects_tampered_payload() -> None:
    token = make_token()
    header, _, signature = token.split(".")
    forged = b64_json(make_claims(scope="tokenry:admin"))
    expect_rejected(f"{header}.{forged}.{signature}", "bad_signature")


def test_rejects_payload_spliced_from_another_token() -> None:
    mine = make_token(make_claims(aud="other-api"))
    theirs = make_token()
    h, _, s = mine.split(".")
    expect_rejected(f"{h}.{theirs.split('.')[1]}.{s}", "bad_signature")


# --- shape and base64url -------------------------------------------------------------------------


def test_rejects_oversized_token() -> None:
    token = make_token(make_claims(padding="x" * 9000))
    error = expect_rejected(token, "too_large")
    assert isinstance(error, MalformedTokenError)


def test_rejects_oversized_garbage_before_parsing() -> None:
    expect_rejected("\x00" * 8193, "too_large")
    expect_rejected("a" * 100, "too_large", max_size=99)


def test_rejects_padded_base64() -> None:
    token = make_token()
    h, p, s = token.split(".")
    padded = h + "=" * (-len(h) % 4)
    assert padded != h
    expect_rejected(f"{padded}.{p}.{s}", "bad_base64")
    expect_rejected(f"{h}.{p}.{s}==", "bad_base64")


def test_rejects_noncanonical_base64() -> None:
    # 64 signature bytes → 86 characters; the last one carries 4 unused bits. Setting one of
    # them gives a string that lenient decoders map to the very same bytes (and a signature
    # that still verifies); it must be refused.
    token = make_token()
    head, _, signature = token.rpartition(".")
    assert len(signature) % 4 == 2
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = signature[:-1] + alphabet[alphabet.index(signature[-1]) + 1]
    lenient = base64.urlsafe_b64decode(twin + "==")
    assert lenient == base64.urlsafe_b64decode(signature + "==")
    assert KEYS["ec-1"].verify(head.encode(), lenient)  # a lenient decoder would accept it
    expect_rejected(f"{head}.{twin}", "bad_base64")


def test_rejects_noncanonical_base64_in_header() -> None:
    text = json.dumps(make_header()).encode()
    while len(text) % 3 == 0:  # a whole number of quanta has no unused bits to set
        text += b" "
    header = b64(text)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = header[:-1] + alphabet[alphabet.index(header[-1]) + 1]
    expect_rejected(make_token(header_segment=twin), "bad_base64")


def test_rejects_impossible_base64_length() -> None:
    token = make_token()
    h, p, s = token.split(".")
    assert len(s) == 86  # 64 bytes; dropping a character leaves 85 = 4k + 1, never valid
    expect_rejected(f"{h}.{p}.{s[:-1]}", "bad_base64")


def test_rejects_standard_base64_alphabet() -> None:
    token = make_token()
    h, p, s = token.split(".")
    expect_rejected(f"{h}.{p}.{s[:-6]}ab+/AA", "bad_base64")
    expect_rejected(f"{h}.{p}.{s[:-6]}ab/+AA", "bad_base64")


def test_rejects_whitespace_in_token() -> None:
    token = make_token()
    expect_rejected(token + "\n", "bad_base64")
    expect_rejected(" " + token, "bad_base64")
    h, p, s = token.split(".")
    expect_rejected(f"{h}.{p[:10]} {p[10:]}.{s}", "bad_base64")


def test_rejects_non_ascii_token() -> None:
    token = make_token()
    expect_rejected(token[:20] + "é" + token[21:], "bad_base64")
    expect_rejected(token[:20] + "\ud800" + token[21:], "bad_base64")


def test_rejects_extra_segments() -> None:
    expect_rejected(make_token() + ".e30", "malformed")


def test_rejects_two_segments() -> None:
    expect_rejected(make_token().rpartition(".")[0], "malformed")


def test_rejects_jwe_five_segments() -> None:
    header = b64_json({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": "rs-1"})
    error = expect_rejected(f"{header}.ZW5j.aXY.Y2lwaGVy.dGFn", "malformed")
    assert "JWE" in error.description


def test_rejects_empty_token_and_dots_only() -> None:
    expect_rejected("", "malformed")
    expect_rejected("..", "malformed")


@pytest.mark.parametrize("token", [None, b"a.b.c", 42, ["a", "b", "c"]])
def test_rejects_non_str_token(token: Any) -> None:
    expect_rejected(token, "malformed")


# --- claims --------------------------------------------------------------------------------------


def test_rejects_expired() -> None:
    error = expect_rejected(make_token(make_claims(exp=NOW - 31)), "expired")
    assert isinstance(error, TokenExpiredError)


def test_rejects_nbf_in_future() -> None:
    expect_rejected(make_token(make_claims(nbf=NOW + 31)), "not_yet_valid")


def test_rejects_iat_in_future() -> None:
    expect_rejected(make_token(make_claims(iat=NOW + 31)), "iat_in_future")


def test_rejects_missing_exp() -> None:
    expect_rejected(make_token(make_claims(exp=_DROP)), "missing_claim")


def test_rejects_missing_iat() -> None:
    expect_rejected(make_token(make_claims(iat=_DROP)), "missing_claim")


def test_rejects_exp_as_string() -> None:
    expect_rejected(make_token(make_claims(exp=str(NOW + 600))), "bad_claim_type")


def test_rejects_exp_bool() -> None:
    # True == 1 in Python: a naive isinstance(exp, int) check would take it for 1970.
    expect_rejected(make_token(make_claims(exp=True)), "bad_claim_type")


def test_rejects_exp_null() -> None:
    expect_rejected(make_token(make_claims(exp=None)), "bad_claim_type")


def test_rejects_exp_nan() -> None:
    payload = json.dumps(make_claims(exp=float("nan")))
    assert "NaN" in payload
    expect_rejected(make_token(payload_segment=b64(payload.encode())), "malformed")


def test_rejects_exp_infinity() -> None:
    payload = json.dumps(make_claims(exp=float("inf")))
    expect_rejected(make_token(payload_segment=b64(payload.encode())), "malformed")


def test_rejects_exp_overflowing_to_infinity() -> None:
    # 1e400 is valid JSON that Python parses to inf without calling parse_constant.
    payload = json.dumps(make_claims())[:-1] + ',"nbf":1e400}'
    expect_rejected(make_token(payload_segment=b64(payload.encode())), "bad_claim_type")
    payload = json.dumps(make_claims(exp=_DROP))[:-1] + ',"exp":1e400}'
    expect_rejected(make_token(payload_segment=b64(payload.encode())), "bad_claim_type")


def test_rejects_exp_with_thousands_of_digits() -> None:
    payload = json.dumps(make_claims(exp=_DROP))[:-1] + ',"exp":1' + "0" * 4400 + "}"
    expect_rejected(make_token(payload_segment=b64(payload.encode())), "malformed")


def test_rejects_nbf_as_string() -> None:
    expect_rejected(make_token(make_claims(nbf="0")), "bad_claim_type")


def test_rejects_iat_as_list() -> None:
    expect_rejected(make_token(make_claims(iat=[NOW])), "bad_claim_type")


def test_rejects_missing_jti() -> None:
    expect_rejected(make_token(make_claims(jti=_DROP)), "missing_claim")


def test_rejects_empty_jti() -> None:
    expect_rejected(make_token(make_claims(jti="")), "bad_claim_type")


def test_rejects_jti_not_a_string() -> None:
    expect_rejected(make_token(make_claims(jti=12345)), "bad_claim_type")


def test_rejects_wrong_issuer() -> None:
    error = expect_rejected(make_token(make_claims(iss="https://evil.example")), "bad_issuer")
    assert isinstance(error, InvalidClaimsError)
    assert "evil" not in str(error)


def test_rejects_issuer_with_trailing_slash() -> None:
    expect_rejected(make_token(make_claims(iss=ISSUER + "/")), "bad_issuer")


def test_rejects_issuer_case_variant() -> None:
    expect_rejected(make_token(make_claims(iss=ISSUER.upper())), "bad_issuer")


def test_rejects_missing_issuer() -> None:
    expect_rejected(make_token(make_claims(iss=_DROP)), "missing_claim")


def test_rejects_issuer_as_list() -> None:
    expect_rejected(make_token(make_claims(iss=[ISSUER])), "bad_claim_type")


def test_rejects_wrong_audience() -> None:
    expect_rejected(make_token(make_claims(aud="admin-api")), "bad_audience")


def test_rejects_audience_prefix_match() -> None:
    expect_rejected(make_token(make_claims(aud=AUDIENCE + "-2")), "bad_audience")


def test_rejects_audience_array_without_us() -> None:
    expect_rejected(make_token(make_claims(aud=["a", "b"])), "bad_audience")


def test_rejects_empty_audience_array() -> None:
    expect_rejected(make_token(make_claims(aud=[])), "bad_audience")


def test_rejects_audience_array_with_non_string() -> None:
    expect_rejected(make_token(make_claims(aud=[AUDIENCE, 7])), "bad_claim_type")


def test_rejects_audience_as_object() -> None:
    expect_rejected(make_token(make_claims(aud={AUDIENCE: True})), "bad_claim_type")


def test_rejects_missing_audience() -> None:
    expect_rejected(make_token(make_claims(aud=_DROP)), "missing_claim")


def test_rejects_scope_as_list() -> None:
    expect_rejected(make_token(make_claims(scope=["tokenry:admin"])), "bad_claim_type")


def test_rejects_sub_not_a_string() -> None:
    expect_rejected(make_token(make_claims(sub=42)), "bad_claim_type")


def test_rejects_client_id_not_a_string() -> None:
    expect_rejected(make_token(make_claims(client_id=None)), "bad_claim_type")


def test_error_classes_match_reasons() -> None:
    assert isinstance(
        expect_rejected(forge_alg_none("none"), "alg_not_allowed"), RejectedHeaderError
    )
    assert isinstance(
        expect_rejected(make_token(signature=bytes(64)), "bad_signature"), BadSignatureError
    )


# --- negative controls: the suite must fail a broken decoder -------------------------------------


class _AcceptsAlgNone(SignaturePolicy):
    """CVE-2015-9235: the header's alg decides how to verify, and ``none`` means "unsigned"."""

    def __init__(self) -> None:
        # Bypasses SignaturePolicy.__init__, which refuses to widen the algorithm set.
        self.algorithms = ALGORITHMS | {"none", "None", "NONE", "nOnE"}

    def check(self, alg: str, key: VerificationKey, signing_input: bytes, signature: bytes) -> None:
        if alg.lower() == "none":
            return
        super().check(alg, key, signing_input, signature)


class _AcceptsDerEcdsa(SignaturePolicy):
    """A 'helpful' verifier that also takes DER ECDSA signatures (RFC 7518 §3.4 violated)."""

    def check(self, alg: str, key: VerificationKey, signing_input: bytes, signature: bytes) -> None:
        if alg == "ES256" and len(signature) != 64:
            r, s = decode_dss_signature(signature)
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        super().check(alg, key, signing_input, signature)


class _TrustsHeaderAlgHmac(SignaturePolicy):
    """The algorithm-confusion bug: HS256 accepted, keyed with whatever key the kid names."""

    def __init__(self) -> None:
        self.algorithms = ALGORITHMS | {"HS256"}

    def check(self, alg: str, key: VerificationKey, signing_input: bytes, signature: bytes) -> None:
        if alg != "HS256":
            super().check(alg, key, signing_input, signature)
            return
        for secret in (
            key.public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
            json.dumps(public_jwk(EC_KEY, "ec-1", "ES256")).encode(),
        ):
            mac = hmac.new(secret, signing_input, hashlib.sha256).digest()
            if hmac.compare_digest(mac, signature):
                return
        raise BadSignatureError("bad_signature", "signature does not verify")


NEGATIVE_CONTROLS: list[tuple[str, Callable[[], SignaturePolicy], Callable[[], str], str]] = [
    # (attack test, broken policy, forgery, reason the real decoder gives)
    (
        "test_rejects_alg_none_lowercase",
        _AcceptsAlgNone,
        lambda: forge_alg_none("none"),
        "alg_not_allowed",
    ),
    (
        "test_rejects_alg_none_capitalized",
        _AcceptsAlgNone,
        lambda: forge_alg_none("None"),
        "alg_not_allowed",
    ),
    (
        "test_rejects_alg_none_uppercase",
        _AcceptsAlgNone,
        lambda: forge_alg_none("NONE"),
        "alg_not_allowed",
    ),
    (
        "test_rejects_alg_none_mixed_case",
        _AcceptsAlgNone,
        lambda: forge_alg_none("nOnE"),
        "alg_not_allowed",
    ),
    ("test_rejects_der_ecdsa_signature", _AcceptsDerEcdsa, forge_der_signature, "bad_signature"),
    (
        "test_rejects_hs256_signed_with_public_key",
        _TrustsHeaderAlgHmac,
        lambda: forge_hs256_with_public_key(public_pem("ec-1")),
        "alg_not_allowed",
    ),
    (
        "test_rejects_hs256_signed_with_public_jwk",
        _TrustsHeaderAlgHmac,
        lambda: forge_hs256_with_public_key(
            json.dumps(public_jwk(EC_KEY, "ec-1", "ES256")).encode()
        ),
        "alg_not_allowed",
    ),
]


@pytest.mark.parametrize(
    ("attack", "broken_policy", "forge", "reason"),
    NEGATIVE_CONTROLS,
    ids=[case[0] for case in NEGATIVE_CONTROLS],
)
def test_negative_control_attack_case_fails_a_broken_decoder(
    attack: str,
    broken_policy: Callable[[], SignaturePolicy],
    forge: Callable[[], str],
    reason: str,
) -> None:
    assert attack in globals(), f"{attack} is not an attack test of this module"
    forged = forge()
    broken = Decoder(policy=broken_policy())
    # The broken decoder really accepts the forgery (so the forgery is a real attack) …
    assert decode(forged, decoder=broken) == make_claims()
    # … the attack test's own assertion fails against it (the suite has teeth) …
    with pytest.raises(pytest.fail.Exception):
        expect_rejected(forged, reason, decoder=broken)
    # … and the real decoder, untouched by building the broken one, still refuses it.
    expect_rejected(forged, reason)
    globals()[attack]()


@pytest.mark.parametrize("broken_policy", [_AcceptsAlgNone, _AcceptsDerEcdsa, _TrustsHeaderAlgHmac])
def test_negative_control_broken_decoders_still_accept_legit_tokens(
    broken_policy: Callable[[], SignaturePolicy],
) -> None:
    # A control that rejected everything would prove nothing.
    broken = Decoder(policy=broken_policy())
    for alg in sorted(ALGORITHMS):
        assert decode(make_token(alg=alg), decoder=broken) == make_claims()


def test_signature_policy_refuses_to_widen_the_algorithms() -> None:
    with pytest.raises(ValueError, match="subset"):
        SignaturePolicy(ALGORITHMS | {"none"})
    with pytest.raises(ValueError, match="subset"):
        SignaturePolicy(frozenset())
    only_es256 = Decoder(policy=SignaturePolicy(frozenset({"ES256"})))
    assert decode(make_token(), decoder=only_es256)["jti"]
    expect_rejected(make_token(alg="EdDSA"), "alg_not_allowed", decoder=only_es256)

"""Property tests: whatever the input, decoding raises only VerificationError and forgeries fail.

- random text, and random strings over the token alphabet, never pass and never raise anything
  else;
- every single-character change, truncation, extension and segment shuffle of a valid token is
  refused (a mutation that only touches unused base64 bits is refused as non-canonical);
- arbitrary JSON in the header and the claims, *validly signed*, either decodes to claims that
  meet every invariant of docs/spec.md §3 or raises VerificationError.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm

from tokenry.jose import FORBIDDEN_HEADERS, VerificationKey, decode_verified
from tokenry.verifier.errors import REASONS, VerificationError

NOW = 1_767_225_600
ISSUER = "https://issuer.tokenry.test"
AUDIENCE = "demo-api"
EC_KEY = ec.generate_private_key(ec.SECP256R1())
KEYS = {
    "ec-1": VerificationKey.from_jwk(
        {**ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True), "kid": "ec-1", "alg": "ES256"}
    )
}
SIGNER = ECAlgorithm(ECAlgorithm.SHA256)
HEADER = {"alg": "ES256", "kid": "ec-1", "typ": "at+jwt"}
CLAIMS = {
    "iss": ISSUER,
    "sub": "svc-orders",
    "aud": AUDIENCE,
    "exp": NOW + 600,
    "iat": NOW,
    "jti": "c2VjcmV0LWp0aS0xMjM0NQ",
    "client_id": "svc-orders",
    "scope": "demo.read",
}
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(header: Any, claims: Any) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = SIGNER.sign(signing_input.encode(), EC_KEY)
    return f"{signing_input}.{b64(signature)}"


VALID = signed(HEADER, CLAIMS)


def decode(token: Any) -> dict[str, Any]:
    return decode_verified(token, KEYS, issuer=ISSUER, audience=AUDIENCE, now=NOW)


def assert_refused(token: Any) -> None:
    with pytest.raises(VerificationError):
        decode(token)


def test_the_valid_token_is_valid() -> None:
    assert decode(VALID) == CLAIMS


@FAST
@given(st.text(max_size=600))
def test_random_text_is_refused(text: str) -> None:
    assert_refused(text)


@FAST
@given(st.lists(st.text(ALPHABET, max_size=120), min_size=0, max_size=6))
def test_random_base64url_segments_are_refused(segments: list[str]) -> None:
    assert_refused(".".join(segments))


@FAST
@given(st.binary(max_size=600))
def test_random_bytes_are_refused(data: bytes) -> None:
    assert_refused(data)
    assert_refused(data.decode("latin-1"))


@FAST
@given(position=st.integers(0, len(VALID) - 1), replacement=st.characters())
def test_any_single_character_change_is_refused(position: int, replacement: str) -> None:
    if VALID[position] == replacement:
        return
    assert_refused(VALID[:position] + replacement + VALID[position + 1 :])


@FAST
@given(position=st.integers(0, len(VALID) - 1), offset=st.integers(1, len(ALPHABET) - 1))
def test_any_base64url_character_change_is_refused(position: int, offset: int) -> None:
    if VALID[position] == ".":
        return
    replacement = ALPHABET[(ALPHABET.index(VALID[position]) + offset) % len(ALPHABET)]
    assert_refused(VALID[:position] + replacement + VALID[position + 1 :])


@FAST
@given(st.integers(0, len(VALID) - 1))
def test_any_truncation_is_refused(length: int) -> None:
    assert_refused(VALID[:length])
    assert_refused(VALID[len(VALID) - length :])


@FAST
@given(st.text(ALPHABET + ".=", min_size=1, max_size=8))
def test_any_extension_is_refused(suffix: str) -> None:
    assert_refused(VALID + suffix)
    assert_refused(suffix + VALID)


def test_every_segment_shuffle_and_duplication_is_refused() -> None:
    segments = VALID.split(".")
    for order in itertools.product(range(3), repeat=3):
        if order != (0, 1, 2):
            assert_refused(".".join(segments[i] for i in order))


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
header_names = st.sampled_from(
    ["alg", "kid", "typ", "crit", "cty", "zip", "b64", "jwk", "jku", "x5c", "enc", "foo"]
)
claim_names = st.sampled_from(
    ["iss", "aud", "exp", "iat", "nbf", "jti", "sub", "client_id", "scope", "gid", "act"]
)
header_values = st.sampled_from(
    ["ES256", "none", "HS256", "EdDSA", "ec-1", "ec-2", "at+jwt", "AT+JWT", "JWT"]
)
claim_values = st.sampled_from(
    [ISSUER, AUDIENCE, [AUDIENCE], ["x", AUDIENCE], NOW, NOW + 10_000, NOW - 10_000, "", True]
)


JSON_SETTINGS = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
header_edits = st.tuples(
    st.dictionaries(header_names, header_values | json_values, max_size=4),
    st.sets(header_names, max_size=2),
)
claim_edits = st.tuples(
    st.dictionaries(claim_names, claim_values | json_values, max_size=5),
    st.sets(claim_names, max_size=2),
)
no_edits = st.just(({}, set()))


def edited(base: dict[str, Any], edits: tuple[dict[str, Any], set[str]]) -> dict[str, Any]:
    changes, removals = edits
    return {k: v for k, v in {**base, **changes}.items() if k not in removals}


@JSON_SETTINGS
@given(header_edit=header_edits, claim_edit=claim_edits | no_edits)
def test_signed_arbitrary_header_passes_only_when_it_meets_every_rule(
    header_edit: tuple[dict[str, Any], set[str]], claim_edit: tuple[dict[str, Any], set[str]]
) -> None:
    check_signed(edited(HEADER, header_edit), edited(CLAIMS, claim_edit))


@JSON_SETTINGS
@given(claim_edit=claim_edits)
def test_signed_arbitrary_claims_pass_only_when_they_meet_every_rule(
    claim_edit: tuple[dict[str, Any], set[str]],
) -> None:
    check_signed(HEADER, edited(CLAIMS, claim_edit))


def check_signed(header: dict[str, Any], claims: dict[str, Any]) -> None:
    token = signed(header, claims)
    reason = ""
    try:
        result = decode(token)
    except VerificationError as error:
        reason = error.reason
    if reason:
        assert reason in REASONS
        event(f"refused: {reason}")
        return
    event("accepted")
    # Accepted: then every rule of docs/spec.md §3 holds.
    assert result == claims
    assert header["alg"] == "ES256"
    assert header["kid"] == "ec-1"
    assert isinstance(header["typ"], str)
    assert header["typ"].lower() in {"at+jwt", "application/at+jwt"}
    assert not FORBIDDEN_HEADERS.intersection(header)
    assert "crit" not in header
    for name in ("exp", "iat"):
        assert type(result[name]) in (int, float)
        assert math.isfinite(result[name])
    assert result["exp"] + 30 > NOW
    assert result["iat"] <= NOW + 2
    if "nbf" in result:
        assert type(result["nbf"]) in (int, float)
        assert result["nbf"] <= NOW + 30
    assert isinstance(result["jti"], str)
    assert result["jti"]
    assert result["iss"] == ISSUER
    aud = result["aud"]
    assert aud == AUDIENCE or (isinstance(aud, list) and AUDIENCE in aud)
    assert isinstance(result["sub"], str)  # RFC 9068 §2.2: required
    assert result["sub"]
    assert isinstance(result["client_id"], str)
    assert result["client_id"]
    assert "scope" not in result or isinstance(result["scope"], str)


@FAST
@given(st.binary(min_size=0, max_size=80))
def test_random_signatures_over_a_valid_payload_are_refused(signature: bytes) -> None:
    signing_input = VALID.rpartition(".")[0]
    assert_refused(f"{signing_input}.{b64(signature)}")

"""The audience check can never be skipped (RFC 8725 §3.9, issue 12 item 2).

``check_claims`` and the decoder take a required audience — one identifier, or a collection of
which ``aud`` must contain one; there is no option, flag or empty value that turns the check off.
The two server-side paths that legitimately judge the audience elsewhere (RFC 7009 revocation,
RFC 7662 introspection) are private functions, not options of the public API.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from tokenry import jose
from tokenry.jose import Decoder, InvalidClaimsError, check_claims, decode_verified
from tokenry.jose._rfc7009 import owned_token_claims
from tokenry.jose._rfc7662 import introspection_claims
from tokenry.verifier import Verifier, VerifierConfig

from .test_jose_adversarial import AUDIENCE, ISSUER, KEYS, NOW, make_claims, make_token


@pytest.mark.parametrize("audience", ["", (), [], frozenset(), [""], None, 42])
def test_an_empty_or_missing_audience_is_a_programming_error(audience: Any) -> None:
    with pytest.raises(ValueError, match="audience"):
        check_claims(make_claims(), issuer=ISSUER, audience=audience, now=NOW)
    with pytest.raises(ValueError, match="audience"):
        decode_verified(make_token(), KEYS, issuer=ISSUER, audience=audience, now=NOW)


def test_check_claims_requires_the_audience_argument() -> None:
    with pytest.raises(TypeError):
        check_claims(make_claims(), issuer=ISSUER, now=NOW)  # type: ignore[call-arg]
    assert inspect.signature(check_claims).parameters["audience"].default is inspect.Parameter.empty


@pytest.mark.parametrize("function", [check_claims, decode_verified, Decoder.decode])
def test_no_public_function_has_an_option_to_skip_a_claim(function: Any) -> None:
    names = set(inspect.signature(function).parameters)
    assert not names & {"options", "verify", "verify_aud", "verify_audience", "verify_exp"}


def test_a_collection_audience_needs_one_match() -> None:
    claims = make_claims(aud=["orders", "billing"])
    check_claims(claims, issuer=ISSUER, audience={"billing", "svc-x"}, now=NOW)
    check_claims(make_claims(aud="billing"), issuer=ISSUER, audience=["billing"], now=NOW)
    with pytest.raises(InvalidClaimsError) as caught:
        check_claims(claims, issuer=ISSUER, audience=("svc-x", "svc-y"), now=NOW)
    assert caught.value.reason == "bad_audience"
    # A string audience is one identifier, never a set of characters.
    with pytest.raises(InvalidClaimsError):
        check_claims(make_claims(aud="b"), issuer=ISSUER, audience="billing", now=NOW)


def test_the_public_verifier_always_checks_its_audience() -> None:
    with pytest.raises(ValueError, match="audience"):
        VerifierConfig(issuer=ISSUER, audience="")
    params = set(inspect.signature(Verifier.verify).parameters)
    assert not params & {"audience", "verify_aud", "options"}
    assert VerifierConfig(issuer=ISSUER, audience=AUDIENCE).audience == AUDIENCE


def test_rfc7009_path_checks_the_signature_only() -> None:
    # A client revokes its own expired token; revocation names no audience.
    token = make_token(make_claims(exp=NOW - 10_000, aud="someone-else"))
    parts = jose.split_and_parse(token)
    assert owned_token_claims(Decoder(), parts, KEYS["ec-1"])["aud"] == "someone-else"


def test_rfc7662_path_defers_only_the_audience_membership() -> None:
    decoder = Decoder()
    other = make_token(make_claims(aud=["someone-else"]))
    claims = introspection_claims(
        decoder, jose.split_and_parse(other), KEYS["ec-1"], issuer=ISSUER, now=NOW, leeway=30
    )
    assert claims["aud"] == ["someone-else"]
    for bad in ({"aud": []}, {"aud": ""}, {"aud": 7}, {"exp": NOW - 100}):
        token = make_token(make_claims(**bad))
        with pytest.raises(jose.VerificationError):
            introspection_claims(
                decoder, jose.split_and_parse(token), KEYS["ec-1"], issuer=ISSUER, now=NOW, leeway=0
            )

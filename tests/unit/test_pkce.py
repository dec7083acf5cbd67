"""PKCE (RFC 7636) as docs/spec.md §3 profiles it: mandatory, S256 only."""

from __future__ import annotations

import pytest

from tokenry.core import pkce
from tokenry.core.errors import InvalidGrant, InvalidRequest

# RFC 7636 Appendix B.
APPENDIX_B_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
APPENDIX_B_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_rfc7636_appendix_b_vector() -> None:
    assert pkce.s256_challenge(APPENDIX_B_VERIFIER) == APPENDIX_B_CHALLENGE
    pkce.check_challenge(APPENDIX_B_CHALLENGE, "S256")
    pkce.verify(APPENDIX_B_VERIFIER, APPENDIX_B_CHALLENGE)


def test_plain_method_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="S256"):
        pkce.check_challenge(APPENDIX_B_VERIFIER, "plain")


def test_absent_method_means_plain_and_is_rejected() -> None:
    # RFC 7636 §4.3: "defaults to plain if not present in the request".
    with pytest.raises(InvalidRequest):
        pkce.check_challenge(APPENDIX_B_CHALLENGE, "")


def test_lowercase_method_is_not_s256() -> None:
    with pytest.raises(InvalidRequest):
        pkce.check_challenge(APPENDIX_B_CHALLENGE, "s256")


def test_missing_challenge_is_rejected() -> None:
    with pytest.raises(InvalidRequest, match="required"):
        pkce.check_challenge("", "S256")


@pytest.mark.parametrize(
    "challenge",
    [
        APPENDIX_B_CHALLENGE[:-1],  # too short
        APPENDIX_B_CHALLENGE + "A",  # too long
        APPENDIX_B_CHALLENGE[:-1] + "=",  # padding
        APPENDIX_B_CHALLENGE[:-1] + "N",  # not canonical (non-zero trailing bits)
        "+" + APPENDIX_B_CHALLENGE[1:],  # standard base64 alphabet
    ],
)
def test_malformed_challenge_is_rejected(challenge: str) -> None:
    with pytest.raises(InvalidRequest):
        pkce.check_challenge(challenge, "S256")


def test_wrong_verifier_is_invalid_grant() -> None:
    with pytest.raises(InvalidGrant):
        pkce.verify("x" * 43, APPENDIX_B_CHALLENGE)


def test_missing_verifier_is_invalid_request() -> None:
    with pytest.raises(InvalidRequest):
        pkce.verify("", APPENDIX_B_CHALLENGE)


@pytest.mark.parametrize("verifier", ["a" * 42, "a" * 129, "a" * 42 + "/", "a" * 42 + " "])
def test_malformed_verifier_is_invalid_request(verifier: str) -> None:
    # RFC 7636 §4.1: 43-128 characters of [A-Z a-z 0-9 - . _ ~].
    with pytest.raises(InvalidRequest):
        pkce.verify(verifier, APPENDIX_B_CHALLENGE)


def test_verifier_bounds_accepted() -> None:
    for verifier in ("a" * 43, "-._~" * 32):
        pkce.verify(verifier, pkce.s256_challenge(verifier))

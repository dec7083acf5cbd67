"""RFC 9068 §2.2 makes ``sub`` and ``client_id`` REQUIRED in a JWT access token (issue 13 item 6).

The attack they stop: the subject and client revocation watermarks key on those claims, so a
token that lacks one (minted by a buggy or misconfigured issuer path, or a key compromised long
enough to mint) is never matched by ``revoke --subject`` / ``revoke --client`` and stays valid
until ``exp``. One test per attack (pyjwt ``test_advisory.py`` style), each through the public
claim check, the strict decoder and the verifier itself.

Negative controls at the end: a deliberately broken claim check that skips the requirement
(it fills the missing claims in before calling the real check, so nothing in the product is
patched) makes the very assertion the attack tests use fail.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from tokenry.core.revocations import Revocation, RevocationKind
from tokenry.jose import Decoder, check_claims
from tokenry.verifier.errors import InvalidClaimsError, VerificationError

from .minting import AUDIENCE, ISSUER, NOW, Minter, make_verifier

ClaimCheck = Callable[[Mapping[str, Any]], None]


def real_check(claims: Mapping[str, Any]) -> None:
    check_claims(claims, issuer=ISSUER, audience=AUDIENCE, now=NOW)


def broken_check_skipping_required_claims(claims: Mapping[str, Any]) -> None:
    """A check that forgot RFC 9068 §2.2 (the code before issue 13): absent ``sub`` and
    ``client_id`` are papered over, everything else is checked for real."""
    patched = dict(claims)
    for name in ("sub", "client_id"):
        if not isinstance(patched.get(name), str) or not patched.get(name):
            patched[name] = "filled-in"
    check_claims(patched, issuer=ISSUER, audience=AUDIENCE, now=NOW)


def assert_rejected(check: ClaimCheck, claims: Mapping[str, Any], reason: str) -> None:
    """The assertion every attack test makes: the check refuses the claims for ``reason``."""
    with pytest.raises(InvalidClaimsError) as caught:
        check(claims)
    assert caught.value.reason == reason


MINTER = Minter()


def claims_without(*names: str, **overrides: Any) -> dict[str, Any]:
    claims = MINTER.claims(**overrides)
    for name in names:
        claims.pop(name, None)
    return claims


# --- the attacks ---------------------------------------------------------------------------------


def test_rejects_token_without_sub_escaping_subject_revocation() -> None:
    assert_rejected(real_check, claims_without("sub"), "missing_claim")


def test_rejects_token_without_client_id_escaping_client_revocation() -> None:
    assert_rejected(real_check, claims_without("client_id"), "missing_claim")


def test_rejects_token_without_sub_and_client_id() -> None:
    assert_rejected(real_check, claims_without("sub", "client_id"), "missing_claim")


@pytest.mark.parametrize("name", ["sub", "client_id"])
@pytest.mark.parametrize("value", [None, "", 0, 1, True, ["svc-a"], {"id": "svc-a"}])
def test_rejects_null_empty_or_non_string_sub_and_client_id(name: str, value: Any) -> None:
    claims = MINTER.claims()
    claims[name] = value
    assert_rejected(real_check, claims, "bad_claim_type")


@pytest.mark.parametrize("name", ["sub", "client_id"])
def test_decoder_rejects_signed_token_missing_required_claim(name: str) -> None:
    """The strict decoder's first-sight path runs the same check after the signature."""
    minter = Minter(kid="d1")
    token = minter.token(**{name: None})  # Minter drops claims overridden with None
    decoder = Decoder()
    keys = {"d1": _verification_key(minter)}
    with pytest.raises(VerificationError) as caught:
        decoder.decode(token, keys, issuer=ISSUER, audience=AUDIENCE, now=NOW)
    assert caught.value.reason == "missing_claim"


def _verification_key(minter: Minter) -> Any:
    from tokenry.jose import VerificationKey

    return VerificationKey.from_jwk(minter.jwk)


@pytest.mark.parametrize(
    ("name", "kind"), [("sub", RevocationKind.SUBJECT), ("client_id", RevocationKind.CLIENT)]
)
async def test_verifier_rejects_token_that_would_outlive_its_revocation(
    name: str, kind: RevocationKind
) -> None:
    """End to end through the verifier: the subject/client is revoked, and a token lacking the
    claim that revocation keys on is refused instead of slipping past the watermark."""
    verifier, _source, state, _clock = await make_verifier(MINTER)
    state.revocations.apply(Revocation(kind, "svc-a", int(NOW) + 10, int(NOW) + 3600))
    normal = MINTER.token()
    with pytest.raises(VerificationError):  # the watermark catches the complete token
        await verifier.verify(normal)
    stripped = MINTER.token(**{name: None})
    with pytest.raises(VerificationError) as caught:
        await verifier.verify(stripped)
    assert caught.value.reason == "missing_claim"


def test_accepts_token_with_both_required_claims() -> None:
    real_check(MINTER.claims())


# --- negative controls: the suite catches a check that skips the requirement --------------------


@pytest.mark.parametrize("missing", [("sub",), ("client_id",), ("sub", "client_id")])
def test_negative_control_broken_check_fails_the_attack_assertion(
    missing: tuple[str, ...],
) -> None:
    claims = claims_without(*missing)
    broken_check_skipping_required_claims(claims)  # the broken variant accepts the token ...
    with pytest.raises(pytest.fail.Exception):  # ... so the attack test's assertion fails
        assert_rejected(broken_check_skipping_required_claims, claims, "missing_claim")


def test_negative_control_broken_check_is_otherwise_real() -> None:
    """The control is broken only in the one place: an expired token is still refused."""
    with pytest.raises(VerificationError) as caught:
        broken_check_skipping_required_claims(MINTER.claims(exp=int(NOW) - 100))
    assert caught.value.reason == "expired"

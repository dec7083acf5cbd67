"""RFC 7662 introspection: a JWT's claims checked for the authorization server itself.

The introspector answers many callers from one cached verification, and RFC 7662 §4 makes the
audience a per-caller decision taken afterwards (``tokenry.core.introspection.may_see``). So
this path checks the signature and every registered claim as the verifier does, and of ``aud``
only that it is a well-formed, non-empty string or array of strings. It is private on purpose:
no public function or option of :mod:`tokenry.jose` or :mod:`tokenry.verifier` skips the
audience check; only the introspector imports this module.
"""

from __future__ import annotations

from typing import Any, Final

from tokenry.jose._claims import DEFAULT_MAX_CLOCK_SKEW, Audience, check, check_leeway
from tokenry.jose._decoder import Decoder, JwsParts
from tokenry.jose._keys import VerificationKey
from tokenry.jose._rfc7009 import owned_token_claims

__all__ = ["introspection_claims"]

# Matches no audience a token can name: a malformed or empty ``aud`` then fails the claim
# check with the reason it always had (missing_claim, bad_claim_type or bad_audience).
_NO_AUDIENCE: Final = frozenset({"\x00"})


def introspection_claims(
    decoder: Decoder,
    parts: JwsParts,
    key: VerificationKey,
    *,
    issuer: str,
    now: float,
    leeway: float,
    max_clock_skew: float = DEFAULT_MAX_CLOCK_SKEW,
) -> dict[str, Any]:
    """The claims of a token whose signature and claims verify, its audience left to the caller.

    Raises:
        VerificationError: as :meth:`tokenry.jose.Decoder.decode`, but never ``bad_audience``
            for a well-formed, non-empty ``aud``.
        ValueError: ``leeway`` out of range.
    """
    check_leeway(leeway)
    claims = owned_token_claims(decoder, parts, key)
    aud = claims.get("aud")
    audience: Audience = _NO_AUDIENCE
    if type(aud) is str and aud:
        audience = aud
    elif type(aud) is list and aud and all(type(a) is str for a in aud):
        audience = frozenset(aud)
    check(claims, issuer, audience, now, leeway, iat_leeway=min(leeway, max_clock_skew))
    return claims

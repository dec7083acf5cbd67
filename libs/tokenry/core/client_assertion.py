"""private_key_jwt client authentication: RFC 7523 §2.2 and §3, as profiled by docs/spec.md §3.

The client signs a short-lived JWT with a key whose public half it registered (its JWKS):

- ``iss`` = ``sub`` = the client id (RFC 7523 §3 items 1-2);
- ``aud`` is the issuer identifier or the token endpoint URL: one string, or an array holding
  nothing else (§3 item 3, docs/spec.md §3);
- ``exp`` is required (§3 item 4), and at most :data:`MAX_ASSERTION_LIFETIME` after ``iat``
  (or after now, when there is no ``iat``): a long-lived assertion is a long-lived password;
- ``jti`` is required and single-use until ``exp`` (§3 item 7; replay protection is done by the
  caller's :class:`AssertionReplay` port, since it needs storage);
- the signature is checked with the key named by ``kid`` in the client's JWKS, with that key's
  own registered ``alg`` (RFC 8725 §3.1): no ``none``, no HMAC, no header-supplied keys.

Time is passed in; pyjwt's own clock-based checks are switched off and done here instead.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Final

import jwt

from tokenry.core.errors import InvalidClient

CLIENT_ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME: Final = 300
MAX_ASSERTION_SIZE: Final = 8192
DEFAULT_LEEWAY: Final = 30
ALGORITHMS: Final = frozenset({"ES256", "EdDSA", "PS256", "RS256"})
# Never follow a key named by the token itself (RFC 8725 §3.10); no extensions understood.
_FORBIDDEN_HEADERS: Final = frozenset({"jku", "x5u", "jwk", "x5c", "crit", "zip", "b64"})
_BAD_ASSERTION: Final = "client authentication failed"
_PYJWT_OPTIONS: Final[Any] = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
}


@dataclass(frozen=True, slots=True)
class VerifiedAssertion:
    client_id: str
    jti: str
    # Until when the jti must be remembered (exp plus the leeway it was accepted with).
    remember_until: int


def unverified_subject(assertion: str) -> str:
    """The ``sub`` an assertion claims, to look the client up; nothing is trusted yet."""
    if len(assertion) > MAX_ASSERTION_SIZE:
        raise InvalidClient("client assertion too large")
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError):
        raise InvalidClient("malformed client assertion") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise InvalidClient("client assertion has no sub")
    return sub


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if type(value) not in (int, float) or not math.isfinite(value):
        raise InvalidClient(f"client assertion claim {name} must be a number")
    return float(value)


def _select_key(jwks_json: str, kid: object, alg: str) -> Any:
    try:
        keys = json.loads(jwks_json)["keys"]
    except (ValueError, KeyError, TypeError):
        raise InvalidClient(_BAD_ASSERTION) from None
    if not isinstance(keys, list):
        raise InvalidClient(_BAD_ASSERTION)
    usable = [k for k in keys if isinstance(k, dict)]
    if kid is None:
        # RFC 7523 does not require kid: a client with exactly one key may omit it.
        candidates = usable if len(keys) == 1 else []
    else:
        candidates = [k for k in usable if k.get("kid") == kid]
    if len(candidates) != 1:
        raise InvalidClient(_BAD_ASSERTION)
    jwk = candidates[0]
    if jwk.get("alg") != alg:  # the key pins the algorithm (RFC 8725 §3.1)
        raise InvalidClient(_BAD_ASSERTION)
    try:
        return jwt.PyJWK(jwk, algorithm=alg).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        raise InvalidClient(_BAD_ASSERTION) from None


def _check_audience(aud: object, audiences: frozenset[str]) -> None:
    if isinstance(aud, str):
        ok = aud in audiences
    elif isinstance(aud, list):
        ok = bool(aud) and all(isinstance(a, str) and a in audiences for a in aud)
    else:
        ok = False
    if not ok:
        raise InvalidClient("client assertion aud must be the issuer or its token endpoint")


def verify_client_assertion(
    assertion: str,
    *,
    client_id: str,
    jwks_json: str,
    audiences: frozenset[str],
    now: float,
    leeway: int = DEFAULT_LEEWAY,
    max_lifetime: int = MAX_ASSERTION_LIFETIME,
) -> VerifiedAssertion:
    """Verify a client assertion for ``client_id`` (everything but replay).

    Raises:
        InvalidClient: for any failure; before the signature is verified the description is
            the same for every cause.
    """
    if len(assertion) > MAX_ASSERTION_SIZE:
        raise InvalidClient("client assertion too large")
    try:
        header = jwt.get_unverified_header(assertion)
    except (jwt.PyJWTError, ValueError):
        raise InvalidClient("malformed client assertion") from None
    alg = header.get("alg")
    if alg not in ALGORITHMS or not _FORBIDDEN_HEADERS.isdisjoint(header):
        raise InvalidClient(_BAD_ASSERTION)
    key = _select_key(jwks_json, header.get("kid"), str(alg))
    try:
        claims: dict[str, Any] = jwt.decode(
            assertion, key, algorithms=[str(alg)], options=_PYJWT_OPTIONS
        )
    except (jwt.PyJWTError, ValueError, TypeError):
        raise InvalidClient(_BAD_ASSERTION) from None
    # Signed by the client's key from here on: specific descriptions leak nothing.
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise InvalidClient("client assertion iss and sub must both be the client id")
    _check_audience(claims.get("aud"), audiences)
    exp = _number(claims, "exp")
    if exp is None:
        raise InvalidClient("client assertion exp is required (RFC 7523 §3)")
    iat = _number(claims, "iat")
    nbf = _number(claims, "nbf")
    if now >= exp + leeway:
        raise InvalidClient("client assertion has expired")
    if iat is not None and iat > now + leeway:
        raise InvalidClient("client assertion iat is in the future")
    if nbf is not None and nbf > now + leeway:
        raise InvalidClient("client assertion is not valid yet (nbf)")
    start = iat if iat is not None else now
    if exp - start > max_lifetime:
        raise InvalidClient(
            f"client assertion may live at most {max_lifetime} s (exp - iat); use a fresh one"
        )
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= 255:
        raise InvalidClient("client assertion jti is required (RFC 7523 §3)")
    return VerifiedAssertion(client_id, jti, math.ceil(exp) + leeway)

"""Strict JOSE for Tokenry: JWS/JWT decoding, verification keys and the JWKS cache.

RFC 7515 (JWS), RFC 7517 (JWK), RFC 7518 (algorithms), RFC 7519 (JWT), RFC 8725 (JWT BCP) and
RFC 9068 (JWT access tokens), as profiled by docs/spec.md §3. Pure but for the cache's fetches: it
loads no gRPC, NATS or database driver, so services and tools may import it without the verifier
(``tokenry.verifier`` builds on it)::

    keys = parse_jwks(jwks_json).keys
    claims = decode_verified(token, keys, issuer=ISS, audience="demo-api", now=time.time())

The audience is always required (RFC 8725 §3.9): a string, or a collection of which ``aud``
must contain one. Every rejection is a :class:`~tokenry.jose.errors.VerificationError` with a
stable ``reason`` (the tree is drawn in :mod:`tokenry.jose.errors`).
"""

from tokenry.jose._claims import DEFAULT_LEEWAY, DEFAULT_MAX_CLOCK_SKEW, MAX_LEEWAY, check_claims
from tokenry.jose._decoder import (
    ACCEPTED_TYP,
    ALGORITHMS,
    DEFAULT_MAX_SIZE,
    FORBIDDEN_HEADERS,
    Decoder,
    JwsParts,
    Rules,
    SignaturePolicy,
    decode_verified,
    split_and_parse,
)
from tokenry.jose._json import b64url_decode, is_canonical_b64url, loads_strict
from tokenry.jose._jwks_cache import DEFAULT_MIN_REFRESH_INTERVAL, JwksCache, JwksSource
from tokenry.jose._keys import ParsedJwks, PublicKey, RejectedKey, VerificationKey, parse_jwks
from tokenry.jose.errors import (
    REASONS,
    BadSignatureError,
    InvalidClaimsError,
    MalformedTokenError,
    RejectedHeaderError,
    RevokedError,
    TokenExpiredError,
    VerificationError,
    VerifierUnavailableError,
)

__all__ = [
    # decoding
    "ACCEPTED_TYP",
    "ALGORITHMS",
    "DEFAULT_LEEWAY",
    "DEFAULT_MAX_CLOCK_SKEW",
    "DEFAULT_MAX_SIZE",
    "FORBIDDEN_HEADERS",
    "MAX_LEEWAY",
    "Decoder",
    "JwsParts",
    "Rules",
    "SignaturePolicy",
    "check_claims",
    "decode_verified",
    "split_and_parse",
    "b64url_decode",
    "is_canonical_b64url",
    "loads_strict",
    # keys
    "ParsedJwks",
    "PublicKey",
    "RejectedKey",
    "VerificationKey",
    "parse_jwks",
    # the JWKS cache
    "DEFAULT_MIN_REFRESH_INTERVAL",
    "JwksCache",
    "JwksSource",
    # errors
    "REASONS",
    "BadSignatureError",
    "InvalidClaimsError",
    "MalformedTokenError",
    "RejectedHeaderError",
    "RevokedError",
    "TokenExpiredError",
    "VerificationError",
    "VerifierUnavailableError",
]

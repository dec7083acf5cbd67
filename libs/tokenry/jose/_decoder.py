"""The strict decoder: JWS compact serialization and JWT access tokens.

RFC 7515 (JWS), RFC 7519 (JWT), RFC 8725 (JWT BCP), RFC 9068 (JWT access tokens), as profiled
by docs/spec.md §3. No I/O, no clock: ``now`` is an argument. Everything that goes wrong is raised
as a :class:`~tokenry.jose.errors.VerificationError`; nothing else escapes.

Checks run cheapest first, and nothing that needs a key runs before the header is known to be
acceptable (so a hostile header can never trigger a JWKS refresh or a signature check):

1. ``str`` only; ``len(token) > max_size`` → ``too_large`` before any parsing (docs/spec.md §3).
2. Exactly three segments (RFC 7515 §7.1; a five-segment JWE is refused), each canonical unpadded
   base64url (RFC 7515 §2, RFC 4648 §5: unused trailing bits must be zero): a length and
   last-character check per segment, then a strict decode of each (``binascii`` in strict mode
   over a translation that maps ``+``, ``/`` and ``=`` to an invalid byte, so only the url-safe
   alphabet passes). A header segment already seen and checked is recognised by its exact text.
3. Header: strict UTF-8 JSON object (RFC 8725 §3.7), duplicate member names rejected (RFC 7515
   §4; RFC 7519 §4 for the claims); ``alg`` one of ES256/EdDSA/PS256/RS256 in exact case (RFC
   8725 §3.1, §3.2: no ``none``, no HMAC); ``kid`` required; ``jku``, ``x5u``, ``jwk``,
   ``x5c``, ``x5t``, ``x5t#S256`` never followed and refused (RFC 8725 §3.10); ``zip``, ``cty``,
   ``b64``, ``enc`` refused; any ``crit`` refused (RFC 7515 §4.1.11: we understand no
   extension); ``typ`` required and, compared case-insensitively, one of ``accepted_typ``
   (RFC 9068 §4, RFC 8725 §3.11).
4. Key: ``kid`` must name a key we hold (no try-every-key fallback) and that key's own ``alg``
   must equal the header's (RFC 8725 §3.1).
5. Signature with the key's prepared pyjwt/cryptography objects; exact length (ES256 raw r‖s of
   64 bytes, RFC 7518 §3.4 — DER is refused; Ed25519 64 bytes; RSA the modulus length). High-S
   ECDSA signatures are valid: token strings are malleable, so denylists key on ``jti``.
6. Payload (only after the signature verified): a strict JSON object whose registered claims
   pass :mod:`tokenry.jose._claims` (``exp`` cannot be turned off, the audience cannot be
   skipped).

The strict JSON and base64url halves are in :mod:`tokenry.jose._json`.
"""

from __future__ import annotations

import binascii
import warnings
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from tokenry.core.b64url import canonical_tail as _canonical_tail
from tokenry.jose._claims import (
    DEFAULT_LEEWAY,
    DEFAULT_MAX_CLOCK_SKEW,
    MAX_LEEWAY,
    Audience,
    check_claims,
    check_leeway,
    expected_audience,
)
from tokenry.jose._claims import check as _check_claims
from tokenry.jose._json import DECODE_ERRORS as _DECODE_ERRORS
from tokenry.jose._json import b64url_decode, is_canonical_b64url, loads_strict
from tokenry.jose.errors import (
    BadSignatureError,
    MalformedTokenError,
    RejectedHeaderError,
    VerificationError,
)

if TYPE_CHECKING:
    from tokenry.jose._keys import VerificationKey

__all__ = [
    "ACCEPTED_TYP",
    "ALGORITHMS",
    "DEFAULT_LEEWAY",
    "DEFAULT_MAX_SIZE",
    "FORBIDDEN_HEADERS",
    "MAX_LEEWAY",
    "Decoder",
    "JwsParts",
    "Rules",
    "SignaturePolicy",
    "b64url_decode",
    "check_claims",
    "decode_verified",
    "is_canonical_b64url",
    "loads_strict",
    "split_and_parse",
]

#: The only JWS algorithms Tokenry signs or accepts (docs/spec.md §3), exact case.
ALGORITHMS: Final[frozenset[str]] = frozenset({"ES256", "EdDSA", "PS256", "RS256"})
#: RFC 9068 §4: ``at+jwt``, with or without the ``application/`` prefix; compared lower-cased.
ACCEPTED_TYP: Final[frozenset[str]] = frozenset({"at+jwt", "application/at+jwt"})
DEFAULT_MAX_SIZE: Final = 8192
#: Header parameters refused outright. Key-locating headers are never followed (RFC 8725 §3.10);
#: ``zip`` (RFC 7516 §4.1.3) and ``cty`` (nested JWTs, RFC 7519 §5.2) are refused by
#: docs/spec.md §3; ``b64`` (RFC 7797) changes what is signed; ``enc`` marks a JWE header.
FORBIDDEN_HEADERS: Final[frozenset[str]] = frozenset(
    {"jku", "x5u", "jwk", "x5c", "x5t", "x5t#S256", "zip", "cty", "b64", "enc"}
)

# Canonical unpadded base64url (RFC 4648 §5 without '=', RFC 7515 §2; tokenry.core.b64url):
# _canonical_tail checks the length and the last character of a segment, and _decode_segment
# decodes it strictly — the url-safe characters become the standard ones, and '+', '/' and '='
# (which are not base64url, or are padding) become '!', which binascii's strict mode refuses
# like any other byte outside the alphabet (whitespace, non-ASCII included). So every byte
# string has exactly one accepted encoding. This replaced a regex over the whole token: the
# segments must be decoded anyway, and the scan cost ≈ 0.4 µs per first sight
# (docs/benchmarks/verifier.md).
_TO_STANDARD: Final = bytes.maketrans(b"-_+/=", b"+/!!!")
_PADDING: Final = (b"", b"", b"==", b"=")  # indexed by len % 4; a remainder of 1 never decodes
_a2b: Final = binascii.a2b_base64
HEADER_CACHE_SIZE: Final = 64


def _decode_segment(segment: str) -> bytes:
    """Strictly decode a segment whose tail :func:`_canonical_tail` accepted; raises ValueError
    (UnicodeEncodeError, binascii.Error) for any character outside the base64url alphabet."""
    return _a2b(
        segment.encode("ascii").translate(_TO_STANDARD) + _PADDING[len(segment) & 3],
        strict_mode=True,
    )


def _bad_base64() -> MalformedTokenError:
    return MalformedTokenError("bad_base64", "segments must be canonical base64url")


# --- the signature policy ------------------------------------------------------------------------


class SignaturePolicy:
    """Which header ``alg`` values are considered, and how a signature meets its key.

    ``algorithms`` may narrow :data:`ALGORITHMS` (a deployment that only accepts ES256), never
    widen it. The default instance is the policy; the class exists as a seam so that the test
    suite can build deliberately broken decoders (``Decoder(policy=...)``) and prove that its
    attack cases catch them, without touching the real code path.
    """

    __slots__ = ("algorithms",)

    def __init__(self, algorithms: frozenset[str] = ALGORITHMS) -> None:
        if not algorithms or not algorithms <= ALGORITHMS:
            raise ValueError(f"algorithms must be a non-empty subset of {sorted(ALGORITHMS)}")
        self.algorithms = algorithms

    def check(self, alg: str, key: VerificationKey, signing_input: bytes, signature: bytes) -> None:
        """Raise unless ``signature`` is a valid ``alg`` signature by ``key``.

        The key pins the algorithm (RFC 8725 §3.1): a token cannot choose how it is verified.
        ``key.verify`` enforces the exact signature length (64-byte raw r‖s for ES256).
        """
        if key.alg != alg:
            raise RejectedHeaderError("alg_mismatch", "header alg differs from the key's alg")
        if not key.verify(signing_input, signature):
            raise BadSignatureError("bad_signature", "signature does not verify")


class Rules(NamedTuple):
    """What a verifier expects of every token, fixed at configuration (see :meth:`Decoder.decode`
    for each; ``leeway`` must already be within 0 to ``MAX_LEEWAY``, and ``audience`` a non-empty
    string or the frozenset :func:`~tokenry.jose._claims.expected_audience` makes)."""

    issuer: str
    audience: Audience
    leeway: float = DEFAULT_LEEWAY
    max_size: int = DEFAULT_MAX_SIZE
    accepted_typ: frozenset[str] = ACCEPTED_TYP
    #: the future-``iat`` allowance: ``min(leeway, max clock skew)``
    iat_leeway: float = DEFAULT_MAX_CLOCK_SKEW


class JwsParts(NamedTuple):
    """A JWS whose shape and header passed every key-independent check; signature not checked."""

    header: dict[str, Any]
    alg: str
    kid: str
    signing_input: bytes
    payload_segment: str
    signature: bytes


# --- the decoder ---------------------------------------------------------------------------------


def _shape_error(token: str) -> MalformedTokenError:
    # Slow path, only for tokens the regex refused: say why.
    dots = token.count(".")
    if dots == 4:
        return MalformedTokenError("malformed", "JWE (five segments) is not accepted")
    if dots != 2:
        return MalformedTokenError("malformed", "a JWS compact token has exactly three segments")
    return MalformedTokenError("bad_base64", "segments must be canonical unpadded base64url")


class Decoder:
    """Strict JWS/JWT decoding under a :class:`SignaturePolicy` (the default one in production).

    Immutable but for a small cache of accepted headers; one instance can serve every thread and
    task (dict reads and writes are atomic).
    """

    __slots__ = ("_algorithms", "_headers", "_policy")

    def __init__(self, policy: SignaturePolicy | None = None) -> None:
        self._policy = policy if policy is not None else SignaturePolicy()
        self._algorithms = self._policy.algorithms
        # Every token one key signs carries the same header segment (alg, kid, typ), so the
        # checked header is kept by its exact base64url text: a first-sight token then skips one
        # base64 decode and one strict JSON parse (docs/design.md §7). Only headers that passed
        # every check are kept, only for the default typ set, at most HEADER_CACHE_SIZE of them.
        self._headers: dict[str, tuple[dict[str, Any], str, str]] = {}

    @property
    def policy(self) -> SignaturePolicy:
        """The signature policy this decoder applies."""
        return self._policy

    def parse(
        self,
        token: str,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        accepted_typ: frozenset[str] = ACCEPTED_TYP,
    ) -> JwsParts:
        """Run every check that needs no key: size, shape, base64url and the header.

        The header is parsed but NOT authenticated; use it only to pick the key (``kid``).

        Raises:
            MalformedTokenError, RejectedHeaderError: see the module docstring, steps 1 to 3.
        """
        try:
            header, alg, kid, signing_input, _payload, signature = self._parse(
                token, max_size, accepted_typ
            )
        except VerificationError:
            raise
        except _DECODE_ERRORS:
            raise MalformedTokenError("malformed", "token could not be decoded") from None
        payload_segment = token.split(".")[1]  # _parse found exactly three segments
        return JwsParts(header, alg, kid, signing_input, payload_segment, signature)

    def _parse(
        self, token: str, max_size: int, accepted_typ: frozenset[str]
    ) -> tuple[dict[str, Any], str, str, bytes, bytes, bytes]:
        """``(header, alg, kid, signing_input, payload bytes, signature)`` after every check
        that needs no key (a plain tuple: the first sight builds no NamedTuple)."""
        if not isinstance(token, str):
            raise MalformedTokenError("malformed", "token must be a str")
        if len(token) > max_size:
            raise MalformedTokenError("too_large", f"token is longer than {max_size} characters")
        segments = token.split(".")
        if len(segments) != 3:
            raise _shape_error(token)
        header_segment, payload_segment, signature_segment = segments
        if not (
            _canonical_tail(header_segment)
            and _canonical_tail(payload_segment)
            and _canonical_tail(signature_segment)
        ):
            raise _bad_base64()
        try:
            # Both decoded before the header is looked at, so a bad segment anywhere is
            # bad_base64 whatever the header says (the payload is parsed only after the
            # signature verified).
            payload = _decode_segment(payload_segment)
            signature = _decode_segment(signature_segment)
        except ValueError:
            raise _bad_base64() from None
        if accepted_typ is ACCEPTED_TYP:
            # A cached segment passed every check, its strict decoding included.
            cached = self._headers.get(header_segment)
            if cached is None:
                cached = self._check_header(header_segment, accepted_typ)
                if len(self._headers) >= HEADER_CACHE_SIZE:
                    self._headers.clear()
                self._headers[header_segment] = cached
            header, alg, kid = cached
        else:
            header, alg, kid = self._check_header(header_segment, accepted_typ)
        signing_input = token[: len(header_segment) + 1 + len(payload_segment)].encode("ascii")
        return header, alg, kid, signing_input, payload, signature

    def _check_header(
        self, header_segment: str, accepted_typ: frozenset[str]
    ) -> tuple[dict[str, Any], str, str]:
        try:
            decoded = _decode_segment(header_segment)
        except ValueError:
            raise _bad_base64() from None
        header = loads_strict(decoded)
        if type(header) is not dict:
            raise MalformedTokenError("malformed", "JOSE header must be a JSON object")
        alg = header.get("alg")
        if type(alg) is not str or alg not in self._algorithms:
            raise RejectedHeaderError("alg_not_allowed", "alg is not an accepted algorithm")
        kid = header.get("kid")
        if type(kid) is not str or not kid:
            raise RejectedHeaderError("missing_kid", "header kid is required")
        if not FORBIDDEN_HEADERS.isdisjoint(header):
            names = ", ".join(sorted(FORBIDDEN_HEADERS.intersection(header)))
            raise RejectedHeaderError("forbidden_header", f"header parameter refused: {names}")
        if "crit" in header:
            raise RejectedHeaderError("unknown_crit", "crit names extensions this verifier lacks")
        typ = header.get("typ")
        if accepted_typ is not ACCEPTED_TYP:
            accepted_typ = frozenset(t.lower() for t in accepted_typ)
        if type(typ) is not str or typ.lower() not in accepted_typ:
            raise RejectedHeaderError("bad_typ", "typ is missing or not an accepted token type")
        return header, alg, kid

    def verify_signature(self, parts: JwsParts, key: VerificationKey) -> dict[str, Any]:
        """Deprecated: checks the signature only, no claim. Use :meth:`decode`.

        Kept importable for one release; it warns. The one caller that legitimately needs the
        signature alone, RFC 7009 revocation (a client revokes its own expired token), has its
        own private function (:func:`tokenry.jose._rfc7009.owned_token_claims`).
        """
        warnings.warn(
            "Decoder.verify_signature skips every claim check (audience included) and will be "
            "removed; use Decoder.decode",
            DeprecationWarning,
            stacklevel=2,
        )
        from tokenry.jose._rfc7009 import owned_token_claims

        return owned_token_claims(self, parts, key)

    def decode(
        self,
        token: str,
        keys: Mapping[str, VerificationKey],
        *,
        issuer: str,
        audience: str | Collection[str],
        now: float,
        leeway: float = DEFAULT_LEEWAY,
        max_size: int = DEFAULT_MAX_SIZE,
        accepted_typ: frozenset[str] = ACCEPTED_TYP,
        max_clock_skew: float = DEFAULT_MAX_CLOCK_SKEW,
    ) -> dict[str, Any]:
        """Verify an access token and return its claims. See :func:`decode_verified`."""
        check_leeway(leeway)
        rules = Rules(
            issuer,
            expected_audience(audience),
            leeway,
            max_size,
            accepted_typ,
            min(leeway, max_clock_skew),
        )
        _, claims = self.decode_for(token, keys, rules, now)
        if claims is None:
            raise RejectedHeaderError("unknown_kid", "kid names no known key")
        return claims

    def decode_for(
        self, token: str, keys: Mapping[str, VerificationKey], rules: Rules, now: float
    ) -> tuple[str, dict[str, Any] | None]:
        """:meth:`decode` for a caller that can fetch keys: ``(kid, claims)``, with claims None
        (and nothing checked past the header) when ``kid`` names no key in ``keys``. One call
        for the verifier's first sight, with its rules built once."""
        try:
            _, alg, kid, signing_input, payload, signature = self._parse(
                token, rules.max_size, rules.accepted_typ
            )
            key = keys.get(kid)
            if key is None:
                return kid, None
            self._policy.check(alg, key, signing_input, signature)
            claims = _claims_object(payload)
            _check_claims(
                claims, rules.issuer, rules.audience, now, rules.leeway, iat_leeway=rules.iat_leeway
            )
        except VerificationError:
            raise
        except _DECODE_ERRORS:
            raise MalformedTokenError("malformed", "token could not be decoded") from None
        return kid, claims


def _claims_object(payload: bytes) -> dict[str, Any]:
    """The decoded payload as a strict JSON object (only after the signature verified)."""
    claims = loads_strict(payload)
    if type(claims) is not dict:
        raise MalformedTokenError("malformed", "JWT claims must be a JSON object")
    return claims


_STRICT: Final = Decoder()


def split_and_parse(
    token: str,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    accepted_typ: frozenset[str] = ACCEPTED_TYP,
) -> JwsParts:
    """The key-independent checks of :func:`decode_verified`; see :meth:`Decoder.parse`."""
    return _STRICT.parse(token, max_size=max_size, accepted_typ=accepted_typ)


def decode_verified(
    token: str,
    keys: Mapping[str, VerificationKey],
    *,
    issuer: str,
    audience: str | Collection[str],
    now: float,
    leeway: float = DEFAULT_LEEWAY,
    max_size: int = DEFAULT_MAX_SIZE,
    accepted_typ: frozenset[str] = ACCEPTED_TYP,
) -> dict[str, Any]:
    """Verify a JWT access token (docs/spec.md §3, RFC 8725, RFC 9068) and return its claims.

    Args:
        token: the bearer token, a JWS compact serialization.
        keys: the verification keys by ``kid`` (for example from :func:`~tokenry.jose.parse_jwks`).
        issuer: the expected ``iss``, compared exactly.
        audience: required: this resource server's identifier, which ``aud`` must contain (or
            several, of which ``aud`` must contain one). It cannot be skipped (RFC 8725 §3.9).
        now: the current time in seconds since the epoch.
        leeway: clock-skew allowance for ``exp``, ``nbf`` and ``iat``, 0 to ``MAX_LEEWAY`` s.
        max_size: tokens longer than this many characters are refused unparsed.
        accepted_typ: accepted ``typ`` values, compared case-insensitively.

    Returns:
        The claims, a fresh dict the caller may keep.

    Raises:
        VerificationError: the token is not accepted; ``reason`` says why. Nothing else is
            raised for any token value.
        ValueError: ``leeway`` is out of range or ``audience`` empty (a programming error, not
            a token problem).
    """
    return _STRICT.decode(
        token,
        keys,
        issuer=issuer,
        audience=audience,
        now=now,
        leeway=leeway,
        max_size=max_size,
        accepted_typ=accepted_typ,
    )

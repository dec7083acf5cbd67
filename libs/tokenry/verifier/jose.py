"""The pure validation core of the verifier: JWS compact serialization and JWT access tokens.

RFC 7515 (JWS), RFC 7519 (JWT), RFC 8725 (JWT BCP), RFC 9068 (JWT access tokens), as profiled
by SPEC §3. No I/O, no clock: ``now`` is an argument. Everything that goes wrong is raised as a
:class:`~tokenry.verifier.errors.VerificationError`; nothing else escapes.

Checks run cheapest first, and nothing that needs a key runs before the header is known to be
acceptable (so a hostile header can never trigger a JWKS refresh or a signature check):

1. ``str`` only; ``len(token) > max_size`` → ``too_large`` before any parsing (SPEC §3).
2. Exactly three segments (RFC 7515 §7.1; a five-segment JWE is refused), each canonical unpadded
   base64url (RFC 7515 §2, RFC 4648 §5: unused trailing bits must be zero): one precompiled
   regex over the whole token, then a length and last-character check per segment.
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
6. Payload (only after the signature verified): strict JSON object; ``exp``, ``iat`` required
   finite JSON numbers (not bool, NaN or Infinity), ``nbf`` optional likewise; ``jti`` a
   non-empty string; ``iss`` equal to the issuer; ``aud`` a string or array of strings containing
   the audience; ``sub``/``client_id``/``scope`` strings when present; then ``now >= exp + leeway``
   → ``expired`` (cannot be turned off, NIST SP 800-228), ``nbf`` later than ``now + leeway``
   → ``not_yet_valid``, ``iat`` later than ``now + min(leeway, max clock skew)`` →
   ``iat_in_future``. The iat allowance never exceeds the skew the issuers are held to
   (docs/events.md): subject and client revocations compare ``iat`` with a watermark set
   that much ahead, so a token stamped further in the future could outlive its revocation.
"""

from __future__ import annotations

import binascii
import json
import math
import re
from collections.abc import Mapping
from json.scanner import make_scanner
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from tokenry.core.revocations import DEFAULT_MAX_CLOCK_SKEW as _MAX_CLOCK_SKEW
from tokenry.verifier.errors import (
    BadSignatureError,
    InvalidClaimsError,
    MalformedTokenError,
    RejectedHeaderError,
    TokenExpiredError,
    VerificationError,
)

if TYPE_CHECKING:
    from tokenry.verifier.keys import VerificationKey

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

#: The only JWS algorithms Tokenry signs or accepts (SPEC §3), exact case.
ALGORITHMS: Final[frozenset[str]] = frozenset({"ES256", "EdDSA", "PS256", "RS256"})
#: RFC 9068 §4: ``at+jwt``, with or without the ``application/`` prefix; compared lower-cased.
ACCEPTED_TYP: Final[frozenset[str]] = frozenset({"at+jwt", "application/at+jwt"})
DEFAULT_MAX_SIZE: Final = 8192
DEFAULT_LEEWAY: Final = 30.0
#: The largest clock difference between an issuer and PostgreSQL that issuers tolerate (they
#: stop serving beyond it); the future-``iat`` allowance is capped at it.
DEFAULT_MAX_CLOCK_SKEW: Final = float(_MAX_CLOCK_SKEW)
#: Upper bound on the clock-skew leeway, so that expiry checking cannot be defeated by a huge one.
MAX_LEEWAY: Final = 300.0
#: Header parameters refused outright. Key-locating headers are never followed (RFC 8725 §3.10);
#: ``zip`` (RFC 7516 §4.1.3) and ``cty`` (nested JWTs, RFC 7519 §5.2) are refused by SPEC §3;
#: ``b64`` (RFC 7797) changes what is signed; ``enc`` marks a JWE header.
FORBIDDEN_HEADERS: Final[frozenset[str]] = frozenset(
    {"jku", "x5u", "jwk", "x5c", "x5t", "x5t#S256", "zip", "cty", "b64", "enc"}
)

# Canonical unpadded base64url (RFC 4648 §5 without '=', RFC 7515 §2). The regex checks the
# alphabet and splits; _canonical_tail then checks the length and the last character: a
# remainder of one character is never valid, and the unused low bits of the last character must
# be zero (4 bits after a 2-character remainder: A Q g w; 2 bits after a 3-character remainder).
# "QQ" decodes to b"A"; "QR" would decode to the same byte and is refused, so every byte string
# has exactly one accepted encoding. (One regex encoding the tail rule is 3x slower.)
_B64 = "[A-Za-z0-9_-]"
_SEGMENT_RE: Final = re.compile(f"{_B64}*")
_JWS_RE: Final = re.compile(rf"({_B64}*)\.({_B64}*)\.({_B64}*)")
_TAIL_2: Final = frozenset("AQgw")
_TAIL_3: Final = frozenset("AEIMQUYcgkosw048")
HEADER_CACHE_SIZE: Final = 64
_PADDING: Final = (b"", b"", b"==", b"=")  # indexed by len % 4; a remainder of 1 never matches
_URLSAFE_TO_STANDARD: Final = bytes.maketrans(b"-_", b"+/")

# Exceptions that decoding hostile input can raise from the standard library or cryptography
# (ValueError covers JSONDecodeError, UnicodeDecodeError and binascii.Error). They are turned
# into MalformedTokenError; the original is dropped (``from None``) because its message can quote
# bytes of the token.
_DECODE_ERRORS: Final = (ValueError, TypeError, RecursionError, OverflowError)
_MISSING: Final = object()


# --- base64url and JSON --------------------------------------------------------------------------


def _canonical_tail(segment: str) -> bool:
    # Only for strings of the base64url alphabet.
    rest = len(segment) & 3
    if rest == 0:
        return True
    if rest == 2:
        return segment[-1] in _TAIL_2
    return rest == 3 and segment[-1] in _TAIL_3


def is_canonical_b64url(text: str) -> bool:
    """True if ``text`` is the canonical unpadded base64url encoding of some byte string."""
    return _SEGMENT_RE.fullmatch(text) is not None and _canonical_tail(text)


def _b64decode_checked(segment: str) -> bytes:
    # Only for canonical segments (is_canonical_b64url): the padding makes a whole quantum.
    return binascii.a2b_base64(
        segment.encode("ascii").translate(_URLSAFE_TO_STANDARD) + _PADDING[len(segment) & 3]
    )


def b64url_decode(text: str) -> bytes:
    """Decode canonical unpadded base64url; anything else is ``MalformedTokenError(bad_base64)``."""
    if type(text) is not str or not is_canonical_b64url(text):
        raise MalformedTokenError("bad_base64", "not canonical unpadded base64url")
    return _b64decode_checked(text)


def _no_duplicate_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise MalformedTokenError("duplicate_member", "duplicate JSON member name")
    return obj


def _no_constant(_name: str) -> Any:
    raise MalformedTokenError("malformed", "NaN and Infinity are not JSON")


# One decoder object, built once: json.loads(..., object_pairs_hook=...) would build a new
# JSONDecoder on every call. It holds no state between calls.
_JSON: Final = json.JSONDecoder(
    object_pairs_hook=_no_duplicate_members, parse_constant=_no_constant
)


# The C scanner that JSONDecoder.decode runs; typeshed types its duck-typed context too narrowly.
_SCAN: Final = make_scanner(_JSON)  # type: ignore[arg-type]


def loads_strict(data: bytes | str) -> Any:
    """Parse strict JSON: UTF-8 only, no duplicate member names, no NaN/Infinity.

    Raises:
        MalformedTokenError: ``duplicate_member`` or ``malformed``.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        try:
            # Fast path: the scanner alone, for a document with no surrounding whitespace.
            value, end = _SCAN(text, 0)
            if end == len(text):
                return value
        except StopIteration:
            pass
        return _JSON.decode(text)  # whitespace around the value, or the precise error
    except VerificationError:
        raise
    except _DECODE_ERRORS:
        raise MalformedTokenError("malformed", "not valid UTF-8 JSON") from None


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
    for each; ``leeway`` must already be within 0 to ``MAX_LEEWAY``)."""

    issuer: str
    audience: str
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


# --- claims --------------------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    kind = type(value)  # exact: bool is a subclass of int and is refused
    return kind is int or (kind is float and math.isfinite(value))  # type: ignore[arg-type]


def _required_number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name, _MISSING)
    if value is _MISSING:
        raise InvalidClaimsError("missing_claim", f"claim {name} is required")
    if not _is_number(value):
        raise InvalidClaimsError("bad_claim_type", f"claim {name} must be a finite JSON number")
    return value  # type: ignore[no-any-return]


def _optional_number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name, _MISSING)
    if value is _MISSING:
        return None
    if not _is_number(value):
        raise InvalidClaimsError("bad_claim_type", f"claim {name} must be a finite JSON number")
    return value  # type: ignore[no-any-return]


def _optional_string(claims: Mapping[str, Any], name: str) -> None:
    value = claims.get(name, _MISSING)
    if value is not _MISSING and type(value) is not str:
        raise InvalidClaimsError("bad_claim_type", f"claim {name} must be a string")


def _check_identity(claims: Mapping[str, Any], issuer: str, audience: str) -> None:
    jti = claims.get("jti")
    if jti is None:
        raise InvalidClaimsError("missing_claim", "claim jti is required")
    if type(jti) is not str or not jti:
        raise InvalidClaimsError("bad_claim_type", "claim jti must be a non-empty string")

    iss = claims.get("iss")
    if iss is None:
        raise InvalidClaimsError("missing_claim", "claim iss is required")
    if type(iss) is not str:
        raise InvalidClaimsError("bad_claim_type", "claim iss must be a string")
    if iss != issuer:
        raise InvalidClaimsError("bad_issuer", "token was issued by another issuer")

    aud = claims.get("aud")
    if aud is None:
        raise InvalidClaimsError("missing_claim", "claim aud is required")
    if type(aud) is str:
        if aud != audience:
            raise InvalidClaimsError("bad_audience", "token is not for this audience")
    elif type(aud) is list:
        if not all(type(item) is str for item in aud):
            raise InvalidClaimsError("bad_claim_type", "claim aud must be a string or strings")
        if audience not in aud:
            raise InvalidClaimsError("bad_audience", "token is not for this audience")
    else:
        raise InvalidClaimsError("bad_claim_type", "claim aud must be a string or strings")


def check_claims(
    claims: Mapping[str, Any],
    *,
    issuer: str,
    audience: str,
    now: float,
    leeway: float = DEFAULT_LEEWAY,
    max_clock_skew: float = DEFAULT_MAX_CLOCK_SKEW,
) -> None:
    """Validate the registered claims of a verified access token (RFC 7519 §4.1, RFC 9068 §4).

    ``iat`` may be at most ``min(leeway, max_clock_skew)`` in the future.

    Raises:
        InvalidClaimsError: ``missing_claim``, ``bad_claim_type``, ``bad_issuer``,
            ``bad_audience``, ``not_yet_valid``, ``iat_in_future``.
        TokenExpiredError: ``expired``.
        ValueError: ``leeway`` is outside 0 to ``MAX_LEEWAY`` (a programming error).
    """
    _check_leeway(leeway)
    _check_claims(claims, issuer, audience, now, leeway, iat_leeway=min(leeway, max_clock_skew))


def _check_leeway(leeway: float) -> None:
    if not 0.0 <= leeway <= MAX_LEEWAY:
        raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY} seconds")


def _check_claims(
    claims: Mapping[str, Any],
    issuer: str,
    audience: str,
    now: float,
    leeway: float,
    *,
    iat_leeway: float,
) -> None:
    exp = _required_number(claims, "exp")
    iat = _required_number(claims, "iat")
    nbf = _optional_number(claims, "nbf")

    _check_identity(claims, issuer, audience)

    _optional_string(claims, "sub")
    _optional_string(claims, "client_id")
    _optional_string(claims, "scope")

    # RFC 7519 §4.1.4: the token must not be accepted on or after exp (plus the skew leeway).
    if now >= exp + leeway:
        raise TokenExpiredError("expired", "token has expired")
    if nbf is not None and nbf > now + leeway:
        raise InvalidClaimsError("not_yet_valid", "token is not valid yet (nbf)")
    if iat > now + iat_leeway:
        raise InvalidClaimsError("iat_in_future", "token was issued in the future (iat)")


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
        # base64 decode and one strict JSON parse (ARCHITECTURE §7). Only headers that passed
        # every check are kept, only for the default typ set, at most HEADER_CACHE_SIZE of them.
        self._headers: dict[str, tuple[dict[str, Any], str, str]] = {}

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
            return JwsParts._make(self._parse(token, max_size, accepted_typ))
        except VerificationError:
            raise
        except _DECODE_ERRORS:
            raise MalformedTokenError("malformed", "token could not be decoded") from None

    def _parse(
        self, token: str, max_size: int, accepted_typ: frozenset[str]
    ) -> tuple[dict[str, Any], str, str, bytes, str, bytes]:
        # A plain tuple in JwsParts order: the hot path skips building the NamedTuple.
        if not isinstance(token, str):
            raise MalformedTokenError("malformed", "token must be a str")
        if len(token) > max_size:
            raise MalformedTokenError("too_large", f"token is longer than {max_size} characters")
        match = _JWS_RE.fullmatch(token)
        if match is None:
            raise _shape_error(token)
        header_segment, payload_segment, signature_segment = match.groups()
        if not (
            _canonical_tail(header_segment)
            and _canonical_tail(payload_segment)
            and _canonical_tail(signature_segment)
        ):
            raise MalformedTokenError("bad_base64", "segments must be canonical base64url")

        if accepted_typ is ACCEPTED_TYP:
            cached = self._headers.get(header_segment)
            if cached is None:
                cached = self._check_header(header_segment, accepted_typ)
                if len(self._headers) >= HEADER_CACHE_SIZE:
                    self._headers.clear()
                self._headers[header_segment] = cached
            header, alg, kid = cached
        else:
            header, alg, kid = self._check_header(header_segment, accepted_typ)
        return (
            header,
            alg,
            kid,
            token[: match.end(2)].encode("ascii"),
            payload_segment,
            _b64decode_checked(signature_segment),
        )

    def _check_header(
        self, header_segment: str, accepted_typ: frozenset[str]
    ) -> tuple[dict[str, Any], str, str]:
        header = loads_strict(_b64decode_checked(header_segment))
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
        """Check the signature with ``key`` (pinned alg), then parse the payload.

        Returns the payload as a dict whose claims are NOT validated. Authentication code must
        use :meth:`decode` (or call :func:`check_claims`); this step alone is for RFC 7009
        revocation, where a client proves it owns a token even after it expired (SPEC §3).

        Raises:
            RejectedHeaderError: ``alg_mismatch``.
            BadSignatureError: ``bad_signature``.
            MalformedTokenError: the payload is not a strict JSON object.
        """
        try:
            self._policy.check(parts.alg, key, parts.signing_input, parts.signature)
            return _claims_object(parts.payload_segment)
        except VerificationError:
            raise
        except _DECODE_ERRORS:
            raise MalformedTokenError("malformed", "token could not be decoded") from None

    def decode(
        self,
        token: str,
        keys: Mapping[str, VerificationKey],
        *,
        issuer: str,
        audience: str,
        now: float,
        leeway: float = DEFAULT_LEEWAY,
        max_size: int = DEFAULT_MAX_SIZE,
        accepted_typ: frozenset[str] = ACCEPTED_TYP,
        max_clock_skew: float = DEFAULT_MAX_CLOCK_SKEW,
    ) -> dict[str, Any]:
        """Verify an access token and return its claims. See :func:`decode_verified`."""
        _check_leeway(leeway)
        rules = Rules(issuer, audience, leeway, max_size, accepted_typ, min(leeway, max_clock_skew))
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
            _, alg, kid, signing_input, payload_segment, signature = self._parse(
                token, rules.max_size, rules.accepted_typ
            )
            key = keys.get(kid)
            if key is None:
                return kid, None
            self._policy.check(alg, key, signing_input, signature)
            claims = _claims_object(payload_segment)
            _check_claims(
                claims, rules.issuer, rules.audience, now, rules.leeway, iat_leeway=rules.iat_leeway
            )
        except VerificationError:
            raise
        except _DECODE_ERRORS:
            raise MalformedTokenError("malformed", "token could not be decoded") from None
        return kid, claims


def _claims_object(payload_segment: str) -> dict[str, Any]:
    claims = loads_strict(_b64decode_checked(payload_segment))
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
    audience: str,
    now: float,
    leeway: float = DEFAULT_LEEWAY,
    max_size: int = DEFAULT_MAX_SIZE,
    accepted_typ: frozenset[str] = ACCEPTED_TYP,
) -> dict[str, Any]:
    """Verify a JWT access token (SPEC §3, RFC 8725, RFC 9068) and return its claims.

    Args:
        token: the bearer token, a JWS compact serialization.
        keys: the verification keys by ``kid`` (for example from :func:`~.keys.parse_jwks`).
        issuer: the expected ``iss``, compared exactly.
        audience: this resource server's identifier; ``aud`` must contain it.
        now: the current time in seconds since the epoch.
        leeway: clock-skew allowance for ``exp``, ``nbf`` and ``iat``, 0 to ``MAX_LEEWAY`` s.
        max_size: tokens longer than this many characters are refused unparsed.
        accepted_typ: accepted ``typ`` values, compared case-insensitively.

    Returns:
        The claims, a fresh dict the caller may keep.

    Raises:
        VerificationError: the token is not accepted; ``reason`` says why. Nothing else is
            raised for any token value.
        ValueError: ``leeway`` is out of range (a programming error, not a token problem).
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

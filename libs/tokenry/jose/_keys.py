"""Verification keys from JWKs (RFC 7517, RFC 7518 §6), loaded once and pinned to one algorithm.

A :class:`VerificationKey` holds the ``cryptography`` public key, loaded once by pyjwt's own JWK
loader (``jwt.algorithms``), the pyjwt algorithm object, and a verification function prepared
from them (docs/design.md §7): verifying a signature never parses key material again and builds no
padding or hash objects per call. Its ``alg`` is fixed by the JWK, never by a token
(RFC 8725 §3.1). Loading is strict: the JWK must name its ``kid`` and ``alg``, the ``alg`` must
fit the key type (ES256 ↔ EC P-256, EdDSA ↔ OKP Ed25519, PS256/RS256 ↔ RSA of 2048 to 8192 bits),
``use`` (if present) must be ``sig``, and a JWK holding private members is refused: a key set
that leaks a private key is a bug to surface, not to use.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ec import ECDSA, SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.padding import MGF1, PSS, PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.hashes import SHA256
from jwt.algorithms import (
    Algorithm,
    ECAlgorithm,
    OKPAlgorithm,
    RSAAlgorithm,
    RSAPSSAlgorithm,
)

from tokenry.core.b64url import is_canonical as is_canonical_b64url
from tokenry.jose._decoder import ALGORITHMS
from tokenry.jose._json import loads_strict
from tokenry.jose.errors import VerificationError

__all__ = ["ParsedJwks", "PublicKey", "RejectedKey", "VerificationKey", "parse_jwks"]

PublicKey = EllipticCurvePublicKey | Ed25519PublicKey | RSAPublicKey

#: JWK members that only a private (or symmetric) key has: RFC 7518 §6.2.2, §6.3.2, §6.4.1,
#: RFC 8037 §2.
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
#: alg → (kty, crv or None, the public members that must be canonical base64url).
_KEY_TYPES: Final[Mapping[str, tuple[str, str | None, tuple[str, ...]]]] = {
    "ES256": ("EC", "P-256", ("x", "y")),
    "EdDSA": ("OKP", "Ed25519", ("x",)),
    "PS256": ("RSA", None, ("n", "e")),
    "RS256": ("RSA", None, ("n", "e")),
}
RSA_MIN_BITS: Final = 2048  # RFC 7518 §3.3, §3.5
RSA_MAX_BITS: Final = 8192  # bounds the cost of one verification an attacker can trigger


def _algorithm_for(alg: str) -> Algorithm:
    if alg == "ES256":
        return ECAlgorithm(ECAlgorithm.SHA256, SECP256R1)
    if alg == "EdDSA":
        return OKPAlgorithm()
    if alg == "PS256":
        return RSAPSSAlgorithm(RSAPSSAlgorithm.SHA256)
    return RSAAlgorithm(RSAAlgorithm.SHA256)


def _check_public_key(alg: str, key: Any, label: str) -> tuple[PublicKey, int]:
    """Return the key with its exact signature length, or raise ValueError."""
    if alg == "ES256":
        if not isinstance(key, EllipticCurvePublicKey) or not isinstance(key.curve, SECP256R1):
            raise ValueError(f"{label}: not an EC P-256 public key")
        return key, 64  # raw r‖s, RFC 7518 §3.4
    if alg == "EdDSA":
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{label}: not an Ed25519 public key")
        return key, 64  # RFC 8032 §5.1.6
    if not isinstance(key, RSAPublicKey):
        raise ValueError(f"{label}: not an RSA public key")
    if not RSA_MIN_BITS <= key.key_size <= RSA_MAX_BITS:
        raise ValueError(
            f"{label}: RSA key is {key.key_size} bits; {RSA_MIN_BITS} to {RSA_MAX_BITS} accepted"
        )
    return key, (key.key_size + 7) // 8  # RFC 8017 §8.2.2 step 1: exactly k octets


def _prepared_verifier(alg: str, key: PublicKey) -> Callable[[bytes, bytes], None]:
    """``verify(signature, data)`` raising on a bad signature, with its objects built once.

    The same cryptography calls pyjwt's ``Algorithm.verify`` makes, without re-creating the
    hash and padding objects and the hex round trip on every call (≈ 2.5 µs of the 1.25 x
    budget, docs/spec.md §8). The Wycheproof tests check it agrees with pyjwt on every vector.
    """
    if isinstance(key, EllipticCurvePublicKey):
        ecdsa = ECDSA(SHA256())
        verify = key.verify

        def verify_es256(signature: bytes, data: bytes) -> None:
            verify(raw_to_der(signature), data, ecdsa)

        return verify_es256
    if isinstance(key, Ed25519PublicKey):
        return key.verify
    # RFC 7518 §3.5: PSS with MGF1 and a salt as long as the hash; §3.3: PKCS #1 v1.5.
    pad = PSS(mgf=MGF1(SHA256()), salt_length=32) if alg == "PS256" else PKCS1v15()
    sha256 = SHA256()

    def verify_rsa(signature: bytes, data: bytes) -> None:
        key.verify(signature, data, pad, sha256)

    return verify_rsa


_ZERO: Final = b"\x00"
#: DER headers by length: SEQUENCE (0x30) and INTEGER (0x02), short-form lengths (X.690 §8.1.3.4;
#: r and s of P-256 are at most 33 content octets, so every length here is below 128).
_SEQUENCE: Final = tuple(bytes((0x30, n)) for n in range(71))
_INTEGER: Final = tuple(bytes((0x02, n)) for n in range(34))


def raw_to_der(signature: bytes) -> bytes:
    """The DER ``ECDSA-Sig-Value`` (RFC 3279 §2.2.3) of a 64-byte raw r‖s ES256 signature.

    RFC 7518 §3.4: the JWS form is raw r‖s (32 + 32 bytes, big-endian); cryptography takes DER.
    Each INTEGER is minimal (leading zero octets dropped, X.690 §8.3.2) and non-negative (a zero
    octet is prepended when the high bit is set; zero itself is one zero octet). Byte for byte
    what ``encode_dss_signature(int.from_bytes(r), int.from_bytes(s))`` returns (a unit test
    compares them), at a third of its cost: ≈ 0.8 µs less per ES256 first sight
    (docs/benchmarks/verifier.md). The caller has checked the length (64).
    """
    r = signature[:32].lstrip(_ZERO)
    s = signature[32:].lstrip(_ZERO)
    if not r or r[0] > 0x7F:
        r = _ZERO + r
    if not s or s[0] > 0x7F:
        s = _ZERO + s
    return _SEQUENCE[len(r) + len(s) + 4] + _INTEGER[len(r)] + r + _INTEGER[len(s)] + s


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key pinned to one JWS algorithm, ready to verify.

    Build it with :meth:`from_jwk`. Two keys are equal when kid, alg and key material are equal.
    """

    kid: str
    alg: str
    public_key: PublicKey = field(repr=False, hash=False)
    algorithm: Algorithm = field(repr=False, compare=False)  # pyjwt's, for callers that want it
    signature_size: int = field(repr=False)
    _verify: Callable[[bytes, bytes], None] = field(repr=False, compare=False)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> VerificationKey:
        """Load a public JWK (RFC 7517 §4, RFC 7518 §6).

        Raises:
            ValueError: the JWK is not a usable Tokenry verification key; the message says why
                (and never quotes key material).
        """
        if not isinstance(jwk, Mapping):
            raise ValueError("a JWK must be a JSON object")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ValueError("JWK has no kid (a non-empty string is required)")
        label = f"JWK {kid[:64]!r}"
        alg = jwk.get("alg")
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            raise ValueError(f"{label}: alg must be one of {', '.join(sorted(ALGORITHMS))}")
        private = _PRIVATE_MEMBERS.intersection(jwk)
        if private:
            raise ValueError(
                f"{label}: holds private key members ({', '.join(sorted(private))}); "
                "publish only the public key"
            )
        use = jwk.get("use", "sig")
        if use != "sig":
            raise ValueError(f"{label}: use must be 'sig'")
        key_ops = jwk.get("key_ops")
        if key_ops is not None and (
            not isinstance(key_ops, list) or "verify" not in key_ops
        ):  # RFC 7517 §4.3
            raise ValueError(f"{label}: key_ops, when present, must include 'verify'")
        kty, crv, members = _KEY_TYPES[alg]
        if jwk.get("kty") != kty:
            raise ValueError(f"{label}: alg {alg} needs kty {kty}")
        if crv is not None and jwk.get("crv") != crv:
            raise ValueError(f"{label}: alg {alg} needs crv {crv}")
        for member in members:
            value = jwk.get(member)
            if not isinstance(value, str) or not value or not is_canonical_b64url(value):
                raise ValueError(f"{label}: {member} must be unpadded base64url")

        algorithm = _algorithm_for(alg)
        try:
            # pyjwt's own JWK loaders; point-on-curve and length checks live in cryptography.
            loaded = algorithm.from_jwk(dict(jwk))
        except Exception as exc:  # InvalidKeyError, ValueError, binascii.Error, TypeError…
            raise ValueError(f"{label}: not a valid {alg} public key") from exc
        public_key, signature_size = _check_public_key(alg, loaded, label)
        try:
            algorithm.prepare_key(public_key)  # pyjwt's own type and curve checks
        except Exception as exc:
            raise ValueError(f"{label}: not a valid {alg} public key") from exc
        return cls(
            kid,
            alg,
            public_key,
            algorithm,
            signature_size,
            _prepared_verifier(alg, public_key),
        )

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        """True only if ``signature`` is this key's valid ``alg`` signature of ``signing_input``.

        The length must be exact (64-byte raw r‖s for ES256 — a DER signature is refused, RFC
        7518 §3.4). High-S ECDSA signatures are valid. Never raises: any failure inside pyjwt or
        cryptography (r = 0, s = 0, a malformed RSA value…) counts as not verified.
        """
        if len(signature) != self.signature_size:
            return False
        try:
            self._verify(signature, signing_input)
        except Exception:  # InvalidSignature, or any error: never a valid signature (fail closed)
            return False
        return True


class RejectedKey(NamedTuple):
    """A JWK that :func:`parse_jwks` skipped, and why."""

    position: int
    kid: str | None
    error: str


class ParsedJwks(NamedTuple):
    """The usable keys of a JWKS by kid, and the ones that were skipped."""

    keys: dict[str, VerificationKey]
    rejected: list[RejectedKey]


def parse_jwks(jwks: str | bytes | Mapping[str, Any]) -> ParsedJwks:
    """Load a JWK Set (RFC 7517 §5), skipping unusable keys instead of failing the whole set.

    Every key that cannot be used is reported in ``rejected`` (its position in the array, its
    kid, the reason), so a single odd key (an unknown algorithm, an encryption key) cannot take
    the verifier down. A kid that appears more than once is ambiguous, so every key carrying it
    is rejected.

    Raises:
        ValueError: the document itself is not a JWK Set (not JSON, not an object, no ``keys``
            array, duplicate JSON member names).
    """
    if isinstance(jwks, str | bytes):
        try:
            document = loads_strict(jwks)
        except VerificationError as exc:
            raise ValueError(f"JWKS is not strict JSON ({exc.description})") from None
    else:
        document = jwks
    if not isinstance(document, Mapping):
        raise ValueError("JWKS must be a JSON object")
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise ValueError("JWKS must have a 'keys' array")

    def kid_of(entry: Any) -> str | None:
        if isinstance(entry, Mapping):
            kid = entry.get("kid")
            if isinstance(kid, str):
                return kid
        return None

    counts = Counter(kid_of(entry) for entry in entries)
    keys: dict[str, VerificationKey] = {}
    rejected: list[RejectedKey] = []
    for index, entry in enumerate(entries):
        kid = kid_of(entry)
        if kid is not None and counts[kid] > 1:
            rejected.append(RejectedKey(index, kid, f"kid {kid[:64]!r} appears more than once"))
            continue
        try:
            key = VerificationKey.from_jwk(entry)
        except ValueError as exc:
            rejected.append(RejectedKey(index, kid, str(exc)))
            continue
        keys[key.kid] = key
    return ParsedJwks(keys, rejected)

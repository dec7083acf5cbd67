"""Signing keys: generation, public JWKs with RFC 7638 thumbprint kids, and JWT signing.

Keys are loaded into ``cryptography`` objects once; pyjwt is handed the key object, never a PEM
string per call (re-parsing costs milliseconds for RSA; docs/design.md §7).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from tokenry.core import b64url

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey

SUPPORTED_ALGS: Final = ("ES256", "EdDSA", "PS256", "RS256")
ACCESS_TOKEN_TYP: Final = "at+jwt"  # RFC 9068 §2.1
RSA_BITS: Final = 3072


def generate_private_key(alg: str) -> PrivateKey:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if alg in ("PS256", "RS256"):
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    raise ValueError(f"unsupported signing algorithm {alg!r}; choose one of {SUPPORTED_ALGS}")


def private_key_to_der(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_key_from_der(der: bytes) -> PrivateKey:
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    ):
        raise ValueError("unsupported private key type")
    return key


def key_matches_alg(key: PrivateKey, alg: str) -> bool:
    """Whether ``key`` is the kind of key ``alg`` signs with (RFC 7518 §3.1, RFC 8037 §3.1).

    The algorithm is pinned per key (RFC 8725 §3.1): an RSA key never signs ES256, and a P-384
    key never signs ES256 either.
    """
    if alg == "ES256":
        return isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
    if alg == "EdDSA":
        return isinstance(key, ed25519.Ed25519PrivateKey)
    if alg in ("PS256", "RS256"):
        # RFC 7518 §3.3: a key of size 2048 bits or larger MUST be used.
        return isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048
    return False


def load_signing_key(kid: str, alg: str, der: bytes) -> SigningKey:
    """A :class:`SigningKey` from PKCS#8 DER, refusing a key that does not fit ``alg``."""
    key = private_key_from_der(der)
    if not key_matches_alg(key, alg):
        raise ValueError(f"the private key of {kid} does not fit {alg}")
    return SigningKey(kid, alg, key)


def _public_members(key: PrivateKey) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        jwk: dict[str, Any] = json.loads(ECAlgorithm.to_jwk(public))
    elif isinstance(public, ed25519.Ed25519PublicKey):
        jwk = json.loads(OKPAlgorithm.to_jwk(public))
    else:
        jwk = json.loads(RSAAlgorithm.to_jwk(public))
    return jwk


# RFC 7638 §3.2: the required members of each key type, in lexicographic order.
_THUMBPRINT_MEMBERS: Final = {
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
    "RSA": ("e", "kty", "n"),
}


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url)."""
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return b64url.encode(hashlib.sha256(canonical).digest())


def public_jwk(key: PrivateKey, alg: str) -> dict[str, Any]:
    """The public JWK with ``kid`` = RFC 7638 thumbprint, ``alg`` pinned and ``use: sig``."""
    members = _public_members(key)
    jwk = {name: members[name] for name in _THUMBPRINT_MEMBERS[members["kty"]]}
    jwk.update(kid=thumbprint(jwk), alg=alg, use="sig")
    return jwk


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An active signing key, loaded once."""

    kid: str
    alg: str
    private_key: PrivateKey

    def __repr__(self) -> str:  # never print key material
        return f"SigningKey(kid={self.kid!r}, alg={self.alg!r})"

    def sign(self, claims: dict[str, Any], typ: str = ACCESS_TOKEN_TYP) -> str:
        return jwt.encode(
            claims, self.private_key, algorithm=self.alg, headers={"kid": self.kid, "typ": typ}
        )

"""Lean JWS compact signing for the issuance hot path (RFC 7515 §7.1): the protected header is
encoded once per key, the claims once per token, with one JSON encoder built once. Same output
as ``jwt.encode``, without its per-call header JSON, option handling and key preparation
(docs/spec.md §8 issuance budget). A :class:`ClaimsTemplate` goes further for claims whose
leading members repeat from token to token: their JSON and most of its base64url are made once,
only the members that change are encoded per token. No cryptography is hand-written here: ES256
is cryptography's ECDSA with SHA-256, its DER signature re-encoded as the raw r‖s JWS wants
(RFC 7518 §3.4) exactly as pyjwt does; every other algorithm is pyjwt's own ``Algorithm.sign``.
"""

from __future__ import annotations

import json
from binascii import b2a_base64
from collections.abc import Callable
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ec import ECDSA, EllipticCurvePrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256
from jwt.algorithms import get_default_algorithms

from tokenry.core.b64url import URLSAFE_TRANSLATION, encode_bytes
from tokenry.core.signing import SigningKey

_ALGORITHMS = get_default_algorithms()
_ENCODE_JSON: Final = json.JSONEncoder(separators=(",", ":")).encode
#: A JSON string literal (quotes and escapes included), the same as the encoder writes.
json_string: Final[Callable[[str], str]] = json.encoder.encode_basestring_ascii
ES256_COORDINATE = 32  # bytes of r and of s for P-256 (RFC 7518 §3.4)


#: Unpadded base64url (RFC 7515 §2), as bytes: :func:`tokenry.core.b64url.encode_bytes`.
b64url: Final = encode_bytes


def _es256(key: EllipticCurvePrivateKey, ecdsa: ECDSA) -> Callable[[bytes], bytes]:
    def sign(data: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(data, ecdsa))
        return r.to_bytes(ES256_COORDINATE, "big") + s.to_bytes(ES256_COORDINATE, "big")

    return sign


class ClaimsTemplate:
    """The fixed leading members of a claims object, encoded once: their JSON up to and with the
    comma before the members that change, base64url-encoded as far as a whole number of 3-byte
    groups reaches (base64 of a concatenation is the concatenation of the parts' base64 when the
    first is such a multiple), the last 0-2 bytes kept to go before the per-token part.

    The result is an ordinary JSON object (RFC 8259 §4: members in any order): the fixed members
    first, then the ones :meth:`JwsSigner.sign_templated` is given."""

    __slots__ = ("_head", "encoded", "tail", "timed")

    def __init__(self, fixed: dict[str, Any]) -> None:
        self._split(_ENCODE_JSON(fixed).encode()[:-1] + (b"," if fixed else b""))

    def _split(self, head: bytes) -> None:
        whole = len(head) - len(head) % 3
        self._head = head
        self.encoded = b64url(head[:whole])
        self.tail = head[whole:]
        #: Kept by ``flows.minting``: (iat, exp, this template extended with those two members),
        #: reused for every token of that second.
        self.timed: tuple[int, int, ClaimsTemplate] | None = None

    def extended(self, members: bytes) -> ClaimsTemplate:
        """This template followed by more fixed ``members``: their JSON, each followed by a
        comma (``b'"exp":1,'``)."""
        template = ClaimsTemplate.__new__(ClaimsTemplate)
        template._split(self._head + members)
        return template


class JwsSigner:
    """Signs claims with one key and one ``typ``; build one per (key, typ) and keep it."""

    __slots__ = ("_ec", "_ecdsa", "_prefix", "_sign", "kid")

    def __init__(self, key: SigningKey, typ: str) -> None:
        header = {"alg": key.alg, "kid": key.kid, "typ": typ}
        self._prefix = b64url(_ENCODE_JSON(header).encode()) + b"."
        self._ec: EllipticCurvePrivateKey | None = None
        self._ecdsa = ECDSA(SHA256())  # built once, not per signature
        if key.alg == "ES256" and isinstance(key.private_key, EllipticCurvePrivateKey):
            self._ec = key.private_key
            self._sign = _es256(key.private_key, self._ecdsa)
        else:
            algorithm = _ALGORITHMS[key.alg]
            prepared = algorithm.prepare_key(key.private_key)
            self._sign = lambda data: algorithm.sign(data, prepared)
        self.kid = key.kid

    def __repr__(self) -> str:  # never print key material
        return f"JwsSigner(kid={self.kid!r})"

    def sign(self, claims: dict[str, Any]) -> str:
        signing_input = self._prefix + b64url(_ENCODE_JSON(claims).encode())
        return (signing_input + b"." + b64url(self._sign(signing_input))).decode("ascii")

    def sign_templated(self, template: ClaimsTemplate, rest: bytes) -> str:
        """Sign the claims ``template`` + ``rest``: the JSON of the remaining members, each
        followed by a comma but the last, then the closing brace (``b'"exp":1}'``)."""
        # b64url and, for ES256, _es256 written out: two frames less per token on the issuance
        # hot path; the signature is the same cryptography call, re-encoded the same way.
        signing_input = (
            self._prefix
            + template.encoded
            + b2a_base64(template.tail + rest, newline=False)
            .translate(URLSAFE_TRANSLATION)
            .rstrip(b"=")
        )
        ec = self._ec
        if ec is None:
            signature = self._sign(signing_input)
        else:
            r, s = decode_dss_signature(ec.sign(signing_input, self._ecdsa))
            signature = r.to_bytes(ES256_COORDINATE, "big") + s.to_bytes(ES256_COORDINATE, "big")
        encoded = b2a_base64(signature, newline=False).translate(URLSAFE_TRANSLATION).rstrip(b"=")
        return (signing_input + b"." + encoded).decode("ascii")

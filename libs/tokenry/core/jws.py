"""Lean JWS compact signing for the issuance hot path (RFC 7515 §7.1), on pyjwt's own algorithm
objects: the protected header is encoded once per key, the claims once per token, and the
signature comes from pyjwt's ``Algorithm.sign`` (raw r‖s for ES256, RFC 7518 §3.4). Same output
as ``jwt.encode``, without its per-call header JSON, option handling and key preparation
(≈ half of its cost; SPEC §8 issuance budget). No cryptography is hand-written here.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from jwt.algorithms import Algorithm, get_default_algorithms

from tokenry.core.signing import SigningKey

_ALGORITHMS = get_default_algorithms()


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


class JwsSigner:
    """Signs claims with one key and one ``typ``; build one per (key, typ) and keep it."""

    __slots__ = ("_algorithm", "_key", "_prefix", "kid")

    def __init__(self, key: SigningKey, typ: str) -> None:
        header = {"alg": key.alg, "kid": key.kid, "typ": typ}
        self._prefix = b64url(json.dumps(header, separators=(",", ":")).encode()) + b"."
        self._algorithm: Algorithm = _ALGORITHMS[key.alg]
        self._key = self._algorithm.prepare_key(key.private_key)
        self.kid = key.kid

    def __repr__(self) -> str:  # never print key material
        return f"JwsSigner(kid={self.kid!r})"

    def sign(self, claims: dict[str, Any]) -> str:
        payload = json.dumps(claims, separators=(",", ":")).encode()
        signing_input = self._prefix + b64url(payload)
        signature = self._algorithm.sign(signing_input, self._key)
        return (signing_input + b"." + b64url(signature)).decode("ascii")

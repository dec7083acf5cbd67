"""private_key_jwt from the client's side, for tests (no tests here): the JWK Set a client
registers and the client assertions it signs (RFC 7523 §2.2, §3)."""

from __future__ import annotations

import json
import time
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm


def public_jwks(key: ec.EllipticCurvePrivateKey, kid: str = "k1") -> str:
    """A JWK Set (JSON) holding ``key``'s public half as an ES256 key named ``kid``."""
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=kid, alg="ES256")
    return json.dumps({"keys": [jwk]})


def sign_assertion(
    client_id: str, aud: object, key: ec.EllipticCurvePrivateKey, kid: str = "k1"
) -> str:
    """A client assertion for ``aud``: iss = sub = ``client_id``, 60 s, a fresh jti, ES256."""
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})

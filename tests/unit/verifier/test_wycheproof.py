"""Wycheproof vectors against the verifier's own signature check, ``VerificationKey.verify``.

The vectors are vendored in ``tests/vectors/wycheproof/`` (see SOURCE.md there, with the licence):
ES256 (P-256, raw r‖s, IEEE P1363), EdDSA (Ed25519), RS256 (PKCS #1 v1.5, 2048) and PS256
(PSS, 2048, MGF1-SHA-256, 32-byte salt). "valid" must verify, "invalid" must not, "acceptable"
may go either way; nothing may raise. Every key is loaded once per test group through
``VerificationKey.from_jwk``, the path a JWKS takes. Each vector is also run through pyjwt's own
algorithm object (what the key's prepared fast path replaces) and both must agree.
"""

from __future__ import annotations

import base64
import functools
import json
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from tokenry.jose import VerificationKey

# tests/unit/verifier/this file → parents[2] is tests/.
VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "wycheproof"
FILES = {
    "ecdsa_secp256r1_sha256_p1363_test.json": "ES256",
    "ed25519_test.json": "EdDSA",
    "rsa_signature_2048_sha256_test.json": "RS256",
    "rsa_pss_2048_sha256_mgf1_32_test.json": "PS256",
}


class Vector(NamedTuple):
    file: str
    group: int
    tc_id: int
    result: str
    message: bytes
    signature: bytes
    comment: str


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@functools.cache
def load(file: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / file).read_text())
    return data


def group_jwk(alg: str, group: dict[str, Any]) -> dict[str, Any]:
    if alg == "ES256":
        # Not every ECDSA group carries a JWK (edge-case keys): build it from the coordinates.
        public = group["publicKey"]
        x, y = (int(public[c], 16).to_bytes(32, "big") for c in ("wx", "wy"))
        jwk: dict[str, Any] = {"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)}
    else:
        jwk = dict(group.get("publicKeyJwk") or group["keyJwk"])
    return {**jwk, "kid": "wycheproof", "alg": alg, "use": "sig"}


@functools.cache
def group_key(file: str, group: int) -> VerificationKey:
    return VerificationKey.from_jwk(group_jwk(FILES[file], load(file)["testGroups"][group]))


def vectors() -> list[Any]:
    # A missing file fails collection (FileNotFoundError in load): never a silent skip.
    cases = []
    for file, alg in FILES.items():
        for index, group in enumerate(load(file)["testGroups"]):
            for test in group["tests"]:
                vector = Vector(
                    file,
                    index,
                    test["tcId"],
                    test["result"],
                    bytes.fromhex(test["msg"]),
                    bytes.fromhex(test["sig"]),
                    test["comment"],
                )
                cases.append(pytest.param(vector, id=f"{alg}-tc{test['tcId']}"))
    return cases


def pyjwt_verdict(key: VerificationKey, vector: Vector) -> bool:
    try:
        return key.algorithm.verify(vector.message, key.public_key, vector.signature) is True
    except Exception:
        return False


@pytest.mark.parametrize("vector", vectors())
def test_wycheproof_vector(vector: Vector) -> None:
    key = group_key(vector.file, vector.group)
    verdict = key.verify(vector.message, vector.signature)  # must not raise
    assert isinstance(verdict, bool)
    context = f"{vector.file} tcId {vector.tc_id} ({vector.comment})"
    if vector.result == "valid":
        assert verdict, f"valid signature refused: {context}"
    elif vector.result == "invalid":
        assert not verdict, f"invalid signature accepted: {context}"
    else:
        assert vector.result == "acceptable", context
    assert verdict == pyjwt_verdict(key, vector), f"differs from pyjwt: {context}"


def test_wycheproof_files_are_all_present_and_counted() -> None:
    counts = {file: load(file)["numberOfTests"] for file in FILES}
    assert counts == {
        "ecdsa_secp256r1_sha256_p1363_test.json": 262,
        "ed25519_test.json": 151,
        "rsa_signature_2048_sha256_test.json": 259,
        "rsa_pss_2048_sha256_mgf1_32_test.json": 108,
    }
    collected = sum(len(group["tests"]) for file in FILES for group in load(file)["testGroups"])
    assert collected == sum(counts.values())

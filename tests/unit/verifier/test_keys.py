"""VerificationKey.from_jwk, VerificationKey.verify and parse_jwks (RFC 7517, RFC 7518 §6)."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm, get_default_algorithms

from tokenry.jose import ParsedJwks, RejectedKey, VerificationKey, parse_jwks

EC_KEY = ec.generate_private_key(ec.SECP256R1())
P384_KEY = ec.generate_private_key(ec.SECP384R1())
ED_KEY = Ed25519PrivateKey.generate()
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SMALL_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)
MESSAGE = b"eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiJ4In0"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwk_of(private_key: Any, *, private: bool = False, **members: Any) -> dict[str, Any]:
    key = private_key if private else private_key.public_key()
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        jwk = ECAlgorithm.to_jwk(key, as_dict=True)
    elif isinstance(private_key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(key, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(key, as_dict=True)
    jwk.pop("key_ops", None)
    jwk.update(members)
    return {name: value for name, value in jwk.items() if value is not None}


GOOD = {
    "ES256": (EC_KEY, jwk_of(EC_KEY, kid="ec-1", alg="ES256", use="sig")),
    "EdDSA": (ED_KEY, jwk_of(ED_KEY, kid="ed-1", alg="EdDSA")),
    "PS256": (RSA_KEY, jwk_of(RSA_KEY, kid="ps-1", alg="PS256", use="sig")),
    "RS256": (RSA_KEY, jwk_of(RSA_KEY, kid="rs-1", alg="RS256")),
}


# --- from_jwk: what loads ------------------------------------------------------------------------


@pytest.mark.parametrize("alg", sorted(GOOD))
def test_from_jwk_loads_each_algorithm_and_verifies_pyjwt_signatures(alg: str) -> None:
    private_key, jwk = GOOD[alg]
    key = VerificationKey.from_jwk(jwk)
    assert (key.kid, key.alg) == (jwk["kid"], alg)
    signature = get_default_algorithms()[alg].sign(MESSAGE, private_key)
    assert len(signature) == key.signature_size
    assert key.verify(MESSAGE, signature)
    assert not key.verify(MESSAGE + b"x", signature)
    # The prepared pyjwt algorithm object agrees with the key's own fast path.
    assert key.algorithm.verify(MESSAGE, key.public_key, signature)


def test_signature_sizes() -> None:
    sizes = {alg: VerificationKey.from_jwk(jwk).signature_size for alg, (_, jwk) in GOOD.items()}
    assert sizes == {"ES256": 64, "EdDSA": 64, "PS256": 256, "RS256": 256}


def test_from_jwk_accepts_key_ops_with_verify() -> None:
    jwk = {**GOOD["ES256"][1], "key_ops": ["verify"]}
    assert VerificationKey.from_jwk(jwk).kid == "ec-1"


def test_from_jwk_ignores_unrelated_members() -> None:
    jwk = {**GOOD["EdDSA"][1], "x5t": "abc", "ext": True}
    assert VerificationKey.from_jwk(jwk).alg == "EdDSA"


def test_keys_compare_by_kid_alg_and_material() -> None:
    a = VerificationKey.from_jwk(GOOD["ES256"][1])
    b = VerificationKey.from_jwk(dict(GOOD["ES256"][1]))
    assert a == b
    assert hash(a) == hash(b)
    assert a != VerificationKey.from_jwk({**GOOD["ES256"][1], "kid": "ec-2"})
    other = jwk_of(ec.generate_private_key(ec.SECP256R1()), kid="ec-1", alg="ES256")
    assert a != VerificationKey.from_jwk(other)


def test_key_is_frozen_and_repr_shows_no_key_material() -> None:
    jwk = GOOD["ES256"][1]
    key = VerificationKey.from_jwk(jwk)
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.alg = "RS256"  # type: ignore[misc]
    assert "ec-1" in repr(key)
    assert jwk["x"] not in repr(key)
    assert jwk["y"] not in repr(key)


# --- from_jwk: what is refused -------------------------------------------------------------------


def refused(jwk: Any, match: str) -> ValueError:
    with pytest.raises(ValueError, match=match) as caught:
        VerificationKey.from_jwk(jwk)
    for member in ("d", "p", "q", "x", "y", "n"):
        value = jwk.get(member) if isinstance(jwk, dict) else None
        if isinstance(value, str) and len(value) > 8:
            assert value not in str(caught.value)  # never echo key material
    return caught.value


def test_refuses_missing_kid() -> None:
    refused({k: v for k, v in GOOD["ES256"][1].items() if k != "kid"}, "no kid")


@pytest.mark.parametrize("kid", ["", 7, None, ["ec-1"]])
def test_refuses_bad_kid(kid: Any) -> None:
    refused({**GOOD["ES256"][1], "kid": kid}, "no kid")


def test_refuses_missing_alg() -> None:
    refused({k: v for k, v in GOOD["ES256"][1].items() if k != "alg"}, "alg must be one of")


@pytest.mark.parametrize("alg", ["none", "HS256", "ES384", "es256", "RS512", "RSA-OAEP", 256])
def test_refuses_other_algorithms(alg: Any) -> None:
    refused({**GOOD["ES256"][1], "alg": alg}, "alg must be one of")


def test_refuses_alg_that_does_not_fit_kty() -> None:
    refused({**GOOD["RS256"][1], "alg": "ES256"}, "needs kty EC")
    refused({**GOOD["ES256"][1], "alg": "RS256"}, "needs kty RSA")
    refused({**GOOD["ES256"][1], "alg": "EdDSA"}, "needs kty OKP")


def test_refuses_p384_key_for_es256() -> None:
    refused(jwk_of(P384_KEY, kid="k", alg="ES256"), "needs crv P-256")
    # Even when the crv member lies, the coordinates give the curve away.
    refused({**jwk_of(P384_KEY, kid="k", alg="ES256"), "crv": "P-256"}, "not a valid ES256")


def test_refuses_ed448_and_x25519_for_eddsa() -> None:
    refused(jwk_of(Ed448PrivateKey.generate(), kid="k", alg="EdDSA"), "needs crv Ed25519")
    x25519 = {**GOOD["EdDSA"][1], "crv": "X25519"}
    refused(x25519, "needs crv Ed25519")


def test_refuses_rsa_key_below_2048_bits() -> None:
    refused(jwk_of(SMALL_RSA_KEY, kid="k", alg="RS256"), "1024 bits")


@pytest.mark.parametrize("use", ["enc", "", "SIG", 1])
def test_refuses_use_other_than_sig(use: Any) -> None:
    refused({**GOOD["ES256"][1], "use": use}, "use must be 'sig'")


@pytest.mark.parametrize("key_ops", [["encrypt"], ["sign"], "verify", []])
def test_refuses_key_ops_without_verify(key_ops: Any) -> None:
    refused({**GOOD["ES256"][1], "key_ops": key_ops}, "key_ops")


@pytest.mark.parametrize(("alg", "private_key"), [("ES256", EC_KEY), ("EdDSA", ED_KEY)])
def test_refuses_private_ec_and_okp_keys(alg: str, private_key: Any) -> None:
    error = refused(jwk_of(private_key, private=True, kid="k", alg=alg), "private key members")
    assert "(d)" in str(error)


def test_refuses_private_rsa_key() -> None:
    error = refused(jwk_of(RSA_KEY, private=True, kid="k", alg="RS256"), "private key members")
    assert "d, dp, dq, p, q, qi" in str(error)


def test_refuses_symmetric_key() -> None:
    refused({"kty": "oct", "k": b64(b"s" * 32), "kid": "k", "alg": "ES256"}, "private key")


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("x", None),
        ("x", 12),
        ("x", ""),
        ("y", "not base64!"),
        ("x", "padded=="),
        ("y", "AAAA+/AA"),
    ],
)
def test_refuses_bad_ec_coordinates(member: str, value: Any) -> None:
    jwk = {**GOOD["ES256"][1], member: value}
    if value is None:
        del jwk[member]
    refused(jwk, f"{member} must be unpadded base64url")


def test_refuses_noncanonical_base64url_coordinate() -> None:
    jwk = dict(GOOD["EdDSA"][1])
    x = jwk["x"]  # 32 bytes → 43 characters, the last with 2 unused bits
    assert len(x) == 43
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    refused({**jwk, "x": x[:-1] + alphabet[alphabet.index(x[-1]) + 1]}, "unpadded base64url")


def test_refuses_ec_point_not_on_curve() -> None:
    jwk = dict(GOOD["ES256"][1])
    y = base64.urlsafe_b64decode(jwk["y"] + "==")
    bent = (int.from_bytes(y, "big") ^ 1).to_bytes(32, "big")
    refused({**jwk, "y": b64(bent)}, "not a valid ES256 public key")


def test_refuses_short_ec_coordinates() -> None:
    refused({**GOOD["ES256"][1], "x": b64(b"\x01" * 31)}, "not a valid ES256 public key")


def test_refuses_wrong_length_ed25519_key() -> None:
    refused({**GOOD["EdDSA"][1], "x": b64(b"\x01" * 31)}, "not a valid EdDSA public key")


def test_refuses_rsa_exponent_one() -> None:
    refused({**GOOD["RS256"][1], "e": b64(b"\x01")}, "not a valid RS256 public key")


@pytest.mark.parametrize("jwk", [None, "{}", ["kid"], 42])
def test_refuses_non_objects(jwk: Any) -> None:
    with pytest.raises(ValueError, match="JSON object"):
        VerificationKey.from_jwk(jwk)


# --- verify never raises -------------------------------------------------------------------------


@pytest.mark.parametrize("alg", sorted(GOOD))
def test_verify_refuses_wrong_lengths_without_raising(alg: str) -> None:
    private_key, jwk = GOOD[alg]
    key = VerificationKey.from_jwk(jwk)
    signature = get_default_algorithms()[alg].sign(MESSAGE, private_key)
    for bad in (b"", signature[:-1], signature + b"\x00", b"\x00" + signature, bytes(512)):
        assert key.verify(MESSAGE, bad) is False


def test_verify_refuses_der_encoded_ecdsa() -> None:
    key = VerificationKey.from_jwk(GOOD["ES256"][1])
    der = EC_KEY.sign(MESSAGE, ec.ECDSA(hashes.SHA256()))
    assert key.verify(MESSAGE, der) is False


def test_verify_refuses_zero_and_out_of_range_ecdsa_values() -> None:
    key = VerificationKey.from_jwk(GOOD["ES256"][1])
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    for r, s in ((0, 0), (0, 1), (1, 0), (n, 1), (1, n), (2**256 - 1, 2**256 - 1)):
        assert key.verify(MESSAGE, r.to_bytes(32, "big") + s.to_bytes(32, "big")) is False


def test_verify_refuses_rsa_signature_equal_to_modulus() -> None:
    key = VerificationKey.from_jwk(GOOD["RS256"][1])
    modulus = RSA_KEY.public_key().public_numbers().n.to_bytes(256, "big")
    assert key.verify(MESSAGE, modulus) is False
    assert key.verify(MESSAGE, b"\xff" * 256) is False


@settings(max_examples=150, deadline=None)
@given(alg=st.sampled_from(sorted(GOOD)), message=st.binary(), signature=st.binary(max_size=300))
def test_verify_random_input_is_false_never_an_exception(
    alg: str, message: bytes, signature: bytes
) -> None:
    key = VerificationKey.from_jwk(GOOD[alg][1])
    assert key.verify(message, signature) is False


# --- parse_jwks ----------------------------------------------------------------------------------


def test_parse_jwks_loads_every_good_key() -> None:
    document = {"keys": [jwk for _, jwk in GOOD.values()]}
    for source in (document, json.dumps(document), json.dumps(document).encode()):
        parsed = parse_jwks(source)
        assert isinstance(parsed, ParsedJwks)
        assert sorted(parsed.keys) == ["ec-1", "ed-1", "ps-1", "rs-1"]
        assert parsed.rejected == []


def test_parse_jwks_skips_and_reports_unusable_keys() -> None:
    document = {
        "keys": [
            GOOD["ES256"][1],
            {**GOOD["EdDSA"][1], "use": "enc"},
            jwk_of(P384_KEY, kid="p384", alg="ES384"),
            {"kty": "RSA", "kid": "rsa-oaep", "alg": "RSA-OAEP-256", "n": "AQAB", "e": "AQAB"},
            "not an object",
            jwk_of(RSA_KEY, private=True, kid="leaked", alg="RS256"),
            GOOD["RS256"][1],
        ]
    }
    parsed = parse_jwks(document)
    assert sorted(parsed.keys) == ["ec-1", "rs-1"]
    assert [(r.position, r.kid) for r in parsed.rejected] == [
        (1, "ed-1"),
        (2, "p384"),
        (3, "rsa-oaep"),
        (4, None),
        (5, "leaked"),
    ]
    assert all(isinstance(r, RejectedKey) and r.error for r in parsed.rejected)
    assert "private key members" in parsed.rejected[4].error


def test_parse_jwks_rejects_every_key_sharing_a_kid() -> None:
    twin = jwk_of(ec.generate_private_key(ec.SECP256R1()), kid="ec-1", alg="ES256")
    parsed = parse_jwks({"keys": [GOOD["ES256"][1], GOOD["EdDSA"][1], twin]})
    assert list(parsed.keys) == ["ed-1"]
    assert [(r.position, r.kid) for r in parsed.rejected] == [(0, "ec-1"), (2, "ec-1")]
    assert "more than once" in parsed.rejected[0].error


def test_parse_jwks_empty_set_is_valid_and_empty() -> None:
    assert parse_jwks('{"keys": []}') == ParsedJwks({}, [])


@pytest.mark.parametrize(
    ("document", "match"),
    [
        ("not json", "not strict JSON"),
        ('{"keys": [], "keys": []}', "not strict JSON"),
        ('{"keys": [NaN]}', "not strict JSON"),
        (b"\xff\xfe", "not strict JSON"),
        ("[]", "JSON object"),
        ('{"keys": {}}', "'keys' array"),
        ("{}", "'keys' array"),
        ({"keys": "abc"}, "'keys' array"),
    ],
)
def test_parse_jwks_refuses_documents_that_are_not_a_jwk_set(document: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_jwks(document)

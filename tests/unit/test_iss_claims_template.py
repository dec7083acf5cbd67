"""Access tokens signed from a claims template (flows.minting.Minter.sign_templated_access, core.jws
.ClaimsTemplate) carry exactly the claims sign_access makes of the same token, for every shape of
the claims (one audience or several, a certificate binding, names that JSON must escape), and a
template never serves a token whose fixed members differ."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tokenry.core.jws import ClaimsTemplate, JwsSigner
from tokenry.core.signing import SigningKey
from tokenry.core.tokens import new_access_token
from tokenry.flows.minting import MAX_TEMPLATES, Minter

ISSUER = "https://issuer.test"


class _Keys:
    def __init__(self, key: SigningKey) -> None:
        self.key = key

    def current(self, use: str = "access", alg: str | None = None) -> SigningKey:
        return self.key


def _pair(
    minter: Minter, *, cnf: dict[str, str] | None = None, jti: str = "j1", **fixed: Any
) -> tuple[str, str]:
    """(templated, plain) JWTs of the same token."""
    shape: dict[str, Any] = {
        "subject": "svc",
        "client_id": "svc",
        "audiences": ("api",),
        "scopes": ("demo.read",),
        **fixed,
    }
    token = new_access_token(
        issuer=ISSUER, now=1_700_000_000.7, ttl=300, jti=jti, gid="g1", cnf=cnf, **shape
    )
    templated = minter.sign_templated_access(
        issued_at=token.issued_at,
        expires_at=token.expires_at,
        jti=jti,
        gid="g1",
        cnf=cnf,
        **shape,
    )
    return templated, minter.sign_access(token)


def _claims(token: str, key: SigningKey) -> dict[str, Any]:
    public = key.private_key.public_key()  # type: ignore[union-attr]
    decoded: dict[str, Any] = jwt.decode(
        token,
        public,
        algorithms=[key.alg],
        options={"verify_exp": False, "verify_iat": False, "verify_aud": False},
    )
    return decoded


@pytest.mark.parametrize(
    "fixed",
    [
        {},
        {"audiences": ("api", "billing", "audit")},
        {"scopes": ("a", "b.write", "c:d")},
        {"subject": 'odd "client" \\ é', "client_id": 'odd "client" \\ é'},
        {"cnf": {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}},
        {"scopes": ()},
    ],
)
@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_templated_claims_are_the_plain_claims(fixed: dict[str, Any], alg: str) -> None:
    private: Any = (
        ec.generate_private_key(ec.SECP256R1()) if alg == "ES256" else ed25519.Ed25519PrivateKey
    )
    if alg == "EdDSA":
        private = private.generate()
    key = SigningKey("k1", alg, private)
    minter = Minter(issuer=ISSUER, keys=_Keys(key))
    for jti in ("j1", "j2", 'j"3'):  # the second and third reuse the template
        templated, plain = _pair(minter, jti=jti, **fixed)
        assert _claims(templated, key) == _claims(plain, key)
        assert jwt.get_unverified_header(templated) == jwt.get_unverified_header(plain)
        assert "=" not in templated and len(templated.split(".")) == 3


def test_a_template_is_keyed_on_every_fixed_member() -> None:
    key = SigningKey("k1", "ES256", ec.generate_private_key(ec.SECP256R1()))
    minter = Minter(issuer=ISSUER, keys=_Keys(key))
    seen = set()
    for fixed in (
        {},
        {"scopes": ("demo.write",)},
        {"audiences": ("other",)},
        {"subject": "b", "client_id": "b"},
        {"cnf": {"x5t#S256": "t1"}},
        {"cnf": {"x5t#S256": "t2"}},
    ):
        templated, plain = _pair(minter, **fixed)
        claims = _claims(templated, key)
        assert claims == _claims(plain, key)
        seen.add(json.dumps(claims, sort_keys=True))
    assert len(seen) == 6


def test_a_rotated_key_signs_with_its_own_header() -> None:
    keys = _Keys(SigningKey("k1", "ES256", ec.generate_private_key(ec.SECP256R1())))
    minter = Minter(issuer=ISSUER, keys=keys)
    first, _ = _pair(minter)
    keys.key = SigningKey("k2", "ES256", ec.generate_private_key(ec.SECP256R1()))
    second, plain = _pair(minter)
    assert jwt.get_unverified_header(first)["kid"] == "k1"
    assert jwt.get_unverified_header(second)["kid"] == "k2"
    assert _claims(second, keys.key) == _claims(plain, keys.key)


def test_templates_are_bounded() -> None:
    key = SigningKey("k1", "ES256", ec.generate_private_key(ec.SECP256R1()))
    minter = Minter(issuer=ISSUER, keys=_Keys(key))
    for n in range(MAX_TEMPLATES + 5):
        minter.sign_templated_access(
            subject=f"c{n}",
            client_id=f"c{n}",
            audiences=("api",),
            scopes=(),
            issued_at=1,
            expires_at=2,
            jti="j",
            gid="g",
            cnf=None,
        )
    assert len(minter._templates) <= MAX_TEMPLATES


@pytest.mark.parametrize("length", range(8))
def test_the_template_split_is_base64_exact(length: int) -> None:
    """Whatever the fixed JSON's length modulo 3, the payload decodes to one JSON object."""
    key = SigningKey("k1", "ES256", ec.generate_private_key(ec.SECP256R1()))
    template = ClaimsTemplate({"iss": "x" * length})
    token = JwsSigner(key, "at+jwt").sign_templated(template, b'"exp":1}')
    payload = token.split(".")[1]
    assert json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))) == {
        "iss": "x" * length,
        "exp": 1,
    }

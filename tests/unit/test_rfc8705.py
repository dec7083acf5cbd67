"""RFC 8705 pure rules (issue 13 item 4): which certificate is which client (§2.1.2), the
``cnf`` a bound token carries (§3.1), what a verifier expects of it (§3.2), and the
registration rules."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tokenry.core import mtls
from tokenry.core.clients import CLIENT_CREDENTIALS, TLS_CLIENT_AUTH, Client, validate_registration
from tokenry.core.errors import InvalidClient, InvalidRequest
from tokenry.devstack.ca import CertificateAuthority, Issued
from tokenry.verifier._binding import bound_thumbprint

CA = CertificateAuthority.generate("rfc8705 test CA")
ISSUED = CA.issue("svc-a", dns=("svc-a.example",), uris=("spiffe://example.org/svc-a",))
OTHER = CA.issue("svc-b", dns=("svc-b.example",), uris=("spiffe://example.org/svc-b",))


def _pem(issued: Issued) -> bytes:
    return issued.cert_pem


def test_thumbprint_is_base64url_sha256_of_the_der() -> None:
    der = ISSUED.cert.public_bytes(Encoding.DER)
    expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    assert mtls.thumbprint_of_pem(_pem(ISSUED)) == expected


@pytest.mark.parametrize(
    "identity",
    [
        {"san_uri": "spiffe://example.org/svc-a"},
        {"subject_dn": "CN=svc-a"},
        {"san_dns": "SVC-A.example"},  # DNS names compare case-insensitively
    ],
)
def test_the_one_registered_identifier_must_be_in_the_certificate(identity: dict[str, str]) -> None:
    assert mtls.registered_identity_matches(mtls.parse_certificate(_pem(ISSUED)), **identity)
    assert not mtls.registered_identity_matches(mtls.parse_certificate(_pem(OTHER)), **identity)


def test_zero_or_two_registered_identifiers_match_nothing() -> None:
    cert = mtls.parse_certificate(_pem(ISSUED))
    assert not mtls.registered_identity_matches(cert)
    assert not mtls.registered_identity_matches(
        cert, san_uri="spiffe://example.org/svc-a", san_dns="svc-a.example"
    )


def test_a_bound_client_without_a_certificate_gets_no_token() -> None:
    token = mtls.request_certificate.set(None)
    try:
        assert mtls.confirmation(False) is None
        with pytest.raises(InvalidClient):
            mtls.confirmation(True)
    finally:
        mtls.request_certificate.reset(token)
    token = mtls.request_certificate.set(lambda: _pem(ISSUED))
    try:
        assert mtls.confirmation(True) == {"x5t#S256": mtls.thumbprint_of_pem(_pem(ISSUED))}
    finally:
        mtls.request_certificate.reset(token)


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({}, None),
        ({"cnf": {"x5t#S256": "abc"}}, "abc"),
        ({"cnf": "abc"}, ""),  # present but malformed: matches no certificate
        ({"cnf": {"jkt": "abc"}}, ""),  # another confirmation method: not checkable here
        ({"cnf": {"x5t#S256": 5}}, ""),
    ],
)
def test_what_a_verifier_expects_of_a_bound_token(
    claims: dict[str, object], expected: object
) -> None:
    assert bound_thumbprint(claims) == expected


def _client(**kwargs: object) -> Client:
    base: dict[str, object] = {
        "client_id": "svc-a",
        "secret_hash": None,
        "pepper_id": None,
        "grant_types": frozenset({CLIENT_CREDENTIALS}),
        "scopes": frozenset({"read"}),
        "audiences": ("api",),
        "auth_method": TLS_CLIENT_AUTH,
    }
    base.update(kwargs)
    return Client(**base)  # type: ignore[arg-type]


def test_registration_needs_exactly_one_identifier_for_tls_client_auth() -> None:
    validate_registration(_client(tls_client_auth_san_uri="spiffe://x/a"), registrar_is_admin=True)
    with pytest.raises(InvalidRequest):
        validate_registration(_client(), registrar_is_admin=True)
    with pytest.raises(InvalidRequest):
        validate_registration(
            _client(tls_client_auth_san_uri="spiffe://x/a", tls_client_auth_san_dns="a"),
            registrar_is_admin=True,
        )


def test_bound_clients_get_jwts_only() -> None:
    with pytest.raises(InvalidRequest):
        validate_registration(
            _client(
                tls_client_auth_san_uri="spiffe://x/a",
                certificate_bound=True,
                token_format="opaque",
            ),
            registrar_is_admin=True,
        )

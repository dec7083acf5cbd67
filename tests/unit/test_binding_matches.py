"""The bound-token check's per-certificate memo (libs/tokenry/verifier/_binding.py; RFC 8705
§3.2): a certificate proven to have a thumbprint is recognised by its bytes on later calls,
and neither the memo nor a peer address lets another certificate through."""

from __future__ import annotations

from typing import Any

import pytest

from tokenry.core import mtls
from tokenry.devstack.ca import CertificateAuthority
from tokenry.verifier import _binding
from tokenry.verifier._policy import _claims

CA = CertificateAuthority.generate("binding test CA")
A = CA.issue("svc-a", uris=("spiffe://example.org/svc-a",)).cert_pem
# Same SPIFFE ID, another key: a rotated or stolen-identity certificate is not the bound one.
B = CA.issue("svc-a", uris=("spiffe://example.org/svc-a",)).cert_pem


class Context:
    """What the check reads of a grpc servicer context: every call behind a sidecar has the
    same peer address; a fresh bytes object per call, as grpc's auth_context() gives."""

    def __init__(self, pem: bytes | None) -> None:
        self._pem = pem

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1234"

    def auth_context(self) -> dict[str, list[bytes]]:
        return {} if self._pem is None else {"x509_pem_cert": [bytes(bytearray(self._pem))]}


def _check(claims: dict[str, Any] | None, pem: bytes | None, matches: _binding.Matches) -> bool:
    token = _claims.set(claims)
    try:
        return _binding._current_call_matches(Context(pem), matches)
    finally:
        _claims.reset(token)


def bound_to(pem: bytes) -> dict[str, Any]:
    return {"sub": "svc-a", "cnf": {"x5t#S256": mtls.thumbprint_of_pem(pem)}}


def test_the_bound_certificate_passes_and_is_remembered_by_its_bytes() -> None:
    matches: _binding.Matches = {}
    assert _check(bound_to(A), A, matches)
    assert matches == {mtls.thumbprint_of_pem(A): A}
    assert _check(bound_to(A), A, matches)  # the memo's path: one bytes comparison


def test_another_certificate_behind_the_same_peer_address_is_refused_after_a_match() -> None:
    matches: _binding.Matches = {}
    assert _check(bound_to(A), A, matches)
    assert not _check(bound_to(A), B, matches)
    assert not _check(bound_to(A), None, matches)  # no certificate: no Bearer downgrade
    assert _check(bound_to(B), B, matches)
    assert not _check(bound_to(B), A, matches)


@pytest.mark.parametrize(
    "claims",
    [
        None,
        {"cnf": "x"},
        {"cnf": {"jkt": "x"}},
        {"cnf": {"x5t#S256": ""}},
        {"cnf": {"x5t#S256": 5}},
    ],
)
def test_a_confirmation_the_check_cannot_verify_is_refused(claims: dict[str, Any] | None) -> None:
    assert not _check(claims, A, {})


def test_a_poisoned_memo_entry_only_matches_those_bytes() -> None:
    # The memo maps thumbprint -> bytes; bytes differing from the entry go to the full check.
    matches: _binding.Matches = {mtls.thumbprint_of_pem(A): A}
    assert not _check(bound_to(A), B, matches)
    assert matches == {mtls.thumbprint_of_pem(A): A}


def test_the_memo_is_bounded() -> None:
    matches: _binding.Matches = {f"t{i}": b"x" for i in range(1024)}
    assert _check(bound_to(A), A, matches)
    assert matches == {mtls.thumbprint_of_pem(A): A}


def test_the_sync_path_shares_the_rule() -> None:
    matches: _binding.Matches = {}
    expected = mtls.thumbprint_of_pem(A)
    assert _binding.certificate_matches(Context(A), expected, matches)
    assert _binding.certificate_matches(Context(A), expected, matches)
    assert not _binding.certificate_matches(Context(B), expected, matches)
    assert not _binding.certificate_matches(Context(None), expected)

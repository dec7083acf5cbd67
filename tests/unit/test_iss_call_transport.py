"""servicekit.grpcmeta.caller_credentials hands the failure limiter its peer and RFC 8705 its
certificate through one per-call object (core.clientauth.request_peer, core.mtls
.request_certificate), each read only when asked, and never one for the other."""

from __future__ import annotations

import contextvars
from typing import Any

import pytest

from tokenry.core import mtls
from tokenry.core.clientauth import request_peer
from tokenry.core.errors import InvalidClient
from tokenry.devstack.ca import CertificateAuthority
from tokenry.servicekit.grpcmeta import caller_credentials

CA = CertificateAuthority.generate("iss transport test CA")
ISSUED = CA.issue("svc-a", dns=("svc-a.example",))


class _Context:
    def __init__(self, pem: bytes | None) -> None:
        self.pem = pem
        self.reads = 0

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", "Basic YTpi"),)

    def peer(self) -> str:
        return "ipv4:10.0.0.7:5123"

    def auth_context(self) -> dict[str, list[bytes]]:
        self.reads += 1
        return {"x509_pem_cert": [self.pem]} if self.pem else {}


def _in_a_call(context: _Context) -> tuple[str, dict[str, str] | None]:
    caller_credentials(context)  # type: ignore[arg-type]
    assert context.reads == 0  # nothing read until asked
    held: Any = request_peer.get()
    peer = held if isinstance(held, str) else held()
    return peer, mtls.confirmation(True)


def test_the_peer_and_the_certificate_come_from_the_call() -> None:
    context = _Context(ISSUED.cert_pem)
    peer, cnf = contextvars.copy_context().run(_in_a_call, context)
    assert peer == "10.0.0.7"
    assert cnf == {"x5t#S256": mtls.thumbprint_of_pem(ISSUED.cert_pem)}
    assert context.reads == 1


def test_no_certificate_means_no_bound_token() -> None:
    with pytest.raises(InvalidClient):
        contextvars.copy_context().run(_in_a_call, _Context(None))


def test_an_unbound_client_reads_nothing() -> None:
    context = _Context(ISSUED.cert_pem)

    def call() -> None:
        caller_credentials(context)  # type: ignore[arg-type]
        assert mtls.confirmation(False) is None

    contextvars.copy_context().run(call)
    assert context.reads == 0

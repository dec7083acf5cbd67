"""RFC 8705: mutual-TLS client authentication and certificate-bound access tokens.

- ``tls_client_auth`` (§2.1): the client's certificate chain is verified by the listener
  against its CA bundle (PKI method); the client is then the one whose *exactly one* registered
  identifier matches the certificate (§2.1.2): ``tls_client_auth_san_uri`` (e.g. a SPIFFE ID),
  ``tls_client_auth_subject_dn`` or ``tls_client_auth_san_dns``. Any certificate from the CA
  is not any client.
- Certificate-bound access tokens (§3): ``cnf: {"x5t#S256": base64url(SHA-256(DER))}`` of the
  certificate the client connected with; a resource server accepts such a token only over a
  connection presenting that certificate (§3.2).

The transport adapter puts the caller's verified certificate (PEM, or a function returning it
lazily) in :data:`request_certificate`; this module parses it only when a client or a token
needs it, caching by the certificate's bytes (never by peer address: grpc has no connection id,
and behind a sidecar every peer is 127.0.0.1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextvars import ContextVar
from typing import Final, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tokenry.core import b64url
from tokenry.core.errors import InvalidClient

__all__ = [
    "CNF_THUMBPRINT",
    "CertificateSource",
    "PeerCertificate",
    "confirmation",
    "current_certificate",
    "parse_certificate",
    "registered_identity_matches",
    "request_certificate",
    "thumbprint_of_pem",
]

CNF_THUMBPRINT: Final = "x5t#S256"
_CACHE_SIZE: Final = 1024


class CertificateSource(Protocol):
    """A transport adapter's per-call object that reads the certificate only when asked."""

    def client_certificate(self) -> bytes | None:
        """The verified client certificate of the call (PEM), or None."""
        ...


#: The caller's verified client certificate for the current request (PEM bytes, a function
#: returning them or None, or a :class:`CertificateSource`), set by the transport adapter; None
#: without mTLS.
request_certificate: ContextVar[bytes | Callable[[], bytes | None] | CertificateSource | None] = (
    ContextVar("tokenry_request_certificate", default=None)
)


class PeerCertificate:
    """What RFC 8705 needs of a certificate, computed once per distinct certificate."""

    __slots__ = ("dns", "subject", "thumbprint", "uris")

    def __init__(self, cert: x509.Certificate) -> None:
        der = cert.public_bytes(Encoding.DER)
        # RFC 8705 §3.1: base64url (no padding) of the SHA-256 of the DER certificate.
        self.thumbprint = b64url.encode(hashlib.sha256(der).digest())
        self.subject = cert.subject
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            self.uris: tuple[str, ...] = ()
            self.dns: tuple[str, ...] = ()
        else:
            self.uris = tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
            self.dns = tuple(d.lower() for d in san.get_values_for_type(x509.DNSName))


_parsed: dict[bytes, PeerCertificate] = {}


def parse_certificate(pem: bytes) -> PeerCertificate:
    """The certificate's RFC 8705 view, cached by its bytes (bounded)."""
    found = _parsed.get(pem)
    if found is None:
        found = PeerCertificate(x509.load_pem_x509_certificate(pem))
        if len(_parsed) >= _CACHE_SIZE:
            _parsed.clear()
        _parsed[pem] = found
    return found


def thumbprint_of_pem(pem: bytes) -> str:
    return parse_certificate(pem).thumbprint


def current_certificate() -> PeerCertificate | None:
    """The current request's verified client certificate, or None."""
    held = request_certificate.get()
    if held is None or isinstance(held, bytes):
        pem = held
    else:
        # A source first: it may be callable for another purpose (servicekit.grpcmeta's also
        # knows the failure limiter's peer: core.clientauth.request_peer).
        read = getattr(held, "client_certificate", None)
        pem = read() if read is not None else held()  # type: ignore[operator]
    return None if not pem else parse_certificate(pem)


def confirmation(bound: bool) -> dict[str, str] | None:
    """The ``cnf`` of a token for a client registered as certificate-bound (RFC 8705 §3.1):
    the thumbprint of the certificate of this request; None for an unbound client.

    Raises:
        InvalidClient: a bound client without a client certificate on this connection.
    """
    if not bound:
        return None
    cert = current_certificate()
    if cert is None:
        raise InvalidClient("a certificate-bound client must connect with its certificate")
    return {CNF_THUMBPRINT: cert.thumbprint}


def registered_identity_matches(
    cert: PeerCertificate, *, san_uri: str = "", subject_dn: str = "", san_dns: str = ""
) -> bool:
    """RFC 8705 §2.1.2: exactly one registered identifier, which the certificate must carry."""
    given = [v for v in (san_uri, subject_dn, san_dns) if v]
    if len(given) != 1:
        return False
    if san_uri:
        return san_uri in cert.uris
    if san_dns:
        return san_dns.lower() in cert.dns
    try:
        # RFC 4517 distinguishedNameMatch, approximated by comparing the parsed names.
        return x509.Name.from_rfc4514_string(subject_dn) == cert.subject
    except ValueError:
        return False

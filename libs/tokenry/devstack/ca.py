"""A local certificate authority for ``tokenry dev`` and the tests (docs/spec.md §2: dev mode only).

Built on ``cryptography``'s x509 API: a self-signed CA (ECDSA P-256, path length 0) that issues
leaf certificates with the names a dev stack needs (``localhost``, ``127.0.0.1``, a SPIFFE-style
URI SAN per service), for server and client use alike. Keys are written with mode 0600.

This is a development convenience, not a production CA: production certificates come from
cert-manager, SPIRE or the platform's PKI (docs/deploy.md).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificateAuthority", "DevPki", "Issued", "dev_pki", "write_private"]

DEFAULT_CA_LIFETIME = dt.timedelta(days=365)
DEFAULT_LEAF_LIFETIME = dt.timedelta(days=30)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by the owner only (0600)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its private key, PEM-encoded."""

    cert: x509.Certificate
    cert_pem: bytes
    key_pem: bytes

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    def write(self, cert_path: Path, key_path: Path) -> None:
        """Write the key (0600) first, then the certificate, each atomically."""
        write_private(key_path, self.key_pem)
        _write_public(cert_path, self.cert_pem)


class CertificateAuthority:
    """A CA key and certificate that issue leaf certificates."""

    __slots__ = ("cert", "key")

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self.key = key
        self.cert = cert

    @classmethod
    def generate(
        cls,
        name: str = "Tokenry dev CA",
        *,
        now: dt.datetime | None = None,
        lifetime: dt.timedelta = DEFAULT_CA_LIFETIME,
    ) -> CertificateAuthority:
        now = now or dt.datetime.now(dt.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> CertificateAuthority:
        """Read a CA written by :meth:`write`.

        Raises:
            ValueError: the files are not a CA certificate and its key.
        """
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not an EC private key")
        return cls(key, cert)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, cert_path: Path, key_path: Path) -> None:
        write_private(key_path, _key_pem(self.key))
        _write_public(cert_path, self.cert_pem)

    def issue(
        self,
        common_name: str,
        *,
        dns: Sequence[str] = ("localhost",),
        ips: Sequence[str] = ("127.0.0.1", "::1"),
        uris: Sequence[str] = (),
        now: dt.datetime | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        lifetime: dt.timedelta = DEFAULT_LEAF_LIFETIME,
    ) -> Issued:
        """A leaf certificate for TLS servers and clients alike.

        Args:
            common_name: the subject CN.
            dns, ips, uris: the subject alternative names (a URI SAN such as a SPIFFE ID).
            now: the issuing time (default: the system clock).
            not_before, not_after: the validity window (default ``now`` − 5 min to
                ``now`` + ``lifetime``); tests pass past windows to make expired certificates.
        """
        now = now or dt.datetime.now(dt.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        names += [x509.UniformResourceIdentifier(u) for u in uris]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(minutes=5))
            .not_valid_after(not_after or now + lifetime)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return Issued(cert, cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


@dataclass(frozen=True, slots=True)
class DevPki:
    """The dev CA's folder (``$TOKENRY_HOME/tls``): ``ca.pem`` and ``<name>.pem`` /
    ``<name>-key.pem`` for each service, the embedded NATS and each dev client."""

    folder: Path
    #: names that got a certificate and key (services, ``nats``, the dev clients)
    names: tuple[str, ...]

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    def cert(self, name: str) -> Path:
        return self.folder / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.folder / f"{name}-key.pem"


#: the trust domain of the dev certificates' SPIFFE-style URI SANs
DEV_TRUST_DOMAIN = "tokenry.dev"


def dev_pki(folder: Path, names: Sequence[str], *, now: dt.datetime | None = None) -> DevPki:
    """Make (or reuse) the dev CA in ``folder`` and issue a fresh certificate to each name.

    The CA is kept across runs while it has more than a week to live, so a CLI, an example or
    a browser that trusts ``ca.pem`` keeps working; leaf certificates are re-issued each start.
    Each leaf carries ``localhost``, ``127.0.0.1``, ``::1`` and
    ``spiffe://tokenry.dev/<name>``. Keys are written 0600, the folder is 0700.
    """
    now = now or dt.datetime.now(dt.UTC)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    pki = DevPki(folder, tuple(names))
    ca_key = folder / "ca-key.pem"
    try:
        ca = CertificateAuthority.load(pki.ca, ca_key)
        if ca.cert.not_valid_after_utc - now < dt.timedelta(days=7):
            raise ValueError("the dev CA expires soon")
    except (OSError, ValueError):
        ca = CertificateAuthority.generate("Tokenry dev CA", now=now)
        ca.write(pki.ca, ca_key)
    for name in names:
        issued = ca.issue(name, uris=(f"spiffe://{DEV_TRUST_DOMAIN}/{name}",), now=now)
        issued.write(pki.cert(name), pki.key(name))
    return pki

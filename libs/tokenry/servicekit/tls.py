"""TLS on every listener (docs/spec.md §3 "Transport"; issue 13 item 1).

What the services' listeners do with ``TOKENRY_TLS_*``:

* ``TOKENRY_TLS_CERT`` / ``TOKENRY_TLS_KEY`` (paths, PEM) turn TLS on for the gRPC listener;
  ``TOKENRY_TLS_CA`` is the bundle client certificates are verified against, and
  ``TOKENRY_TLS_CLIENT_AUTH=1`` requires one (mTLS). grpc Python either verifies the client's
  chain or requests none: there is no "optional client certificate" on one port.
* The files reload without a restart: grpc calls :class:`CertificateReloader` before every TLS
  handshake, and it re-reads the files when their inode, size or mtime changed (cert-manager and
  SPIRE replace them; a Kubernetes secret volume swaps a symlink). A half-written pair (key and
  certificate that do not match) is not taken: the old pair stays until both files agree.
* TLS never re-checks a certificate on an open connection (TLS 1.3 does not renegotiate), so a
  connection would outlive a rotated or expired certificate. Every server sets
  ``grpc.max_connection_age_ms`` (``TOKENRY_MAX_CONNECTION_AGE``, default 1 h, capped at the
  server certificate's lifetime): the client reconnects and hands over its current certificate,
  and a client whose certificate has expired is refused at that handshake.
* TLS 1.2 is the minimum: grpc core's default for server credentials (TLS 1.0 and 1.1 are
  refused; tests/integration/test_tls_listener.py proves it).
* Outside dev mode, a listener on a non-loopback address without TLS refuses to start unless
  ``TOKENRY_TLS_TERMINATED=1`` declares that TLS terminates in front (a sidecar or proxy), and a
  non-loopback ``TOKENRY_DATABASE_URL`` must say ``sslmode=verify-full``.

Servicers read the caller's verified certificate with :func:`peer_certificate` (RFC 8705
client authentication and certificate-bound tokens build on it).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, urlsplit

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tokenry.servicekit import variables as v
from tokenry.tls import ClientTls, read_pem

if TYPE_CHECKING:
    from tokenry.servicekit.config import Reader

__all__ = [
    "DEFAULT_MAX_CONNECTION_AGE",
    "CertificateReloader",
    "KeyPair",
    "ServerTls",
    "Transport",
    "add_listener",
    "check_database_url",
    "check_listener",
    "is_loopback",
    "peer_certificate",
    "peer_certificate_pem",
    "read_transport",
    "server_credentials",
    "server_options",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTION_AGE = v.DEFAULT_MAX_CONNECTION_AGE
#: in-flight calls finish within this after the server's GOAWAY at the maximum age
DEFAULT_MAX_CONNECTION_AGE_GRACE = 30.0


@dataclass(frozen=True, slots=True)
class ServerTls:
    """A listener's certificate files.

    Attributes:
        cert: certificate chain, leaf first (PEM).
        key: the leaf's private key (PEM).
        ca: bundle that client certificates must chain to (PEM); None: no client certificates.
        client_auth: refuse a client without a certificate from ``ca`` (mTLS).
    """

    cert: Path
    key: Path
    ca: Path | None = None
    client_auth: bool = False


@dataclass(frozen=True, slots=True)
class Transport:
    """How a service's listener and its own outgoing connections are secured.

    Attributes:
        server: the listener's TLS; None: plaintext.
        terminated_in_front: TLS is declared to terminate before this listener.
        max_connection_age: seconds before a connection is sent GOAWAY (and re-handshakes).
        max_connection_age_grace: seconds in-flight calls get after that GOAWAY.
        nats: TLS towards NATS; None: whatever the URL gives (plaintext for ``nats://``).
    """

    server: ServerTls | None = None
    terminated_in_front: bool = False
    max_connection_age: float = DEFAULT_MAX_CONNECTION_AGE
    max_connection_age_grace: float = DEFAULT_MAX_CONNECTION_AGE_GRACE
    nats: ClientTls | None = field(default=None)

    def nats_context(self) -> ssl.SSLContext | None:
        """The ``ssl.SSLContext`` for :func:`tokenry.bus.nats_conn.connect`, if any."""
        return None if self.nats is None else self.nats.ssl_context()


PLAINTEXT = Transport()


# --- certificate material ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A loaded, consistent certificate chain + key (+ client CA bundle)."""

    chain: bytes
    key: bytes
    ca: bytes | None
    leaf: x509.Certificate

    @classmethod
    def load(cls, files: ServerTls) -> KeyPair:
        """Read and check the files: the key must be the leaf certificate's.

        Raises:
            ValueError: a file is unreadable or malformed, or the key is not the certificate's.
        """
        chain = read_pem(files.cert, "certificate")
        key = read_pem(files.key, "private key")
        ca = read_pem(files.ca, "CA bundle") if files.ca is not None else None
        try:
            certs = x509.load_pem_x509_certificates(chain)
            private = serialization.load_pem_private_key(key, password=None)
            if ca is not None:
                x509.load_pem_x509_certificates(ca)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"bad TLS material in {files.cert.parent}: {exc}") from None
        fmt = serialization.PublicFormat.SubjectPublicKeyInfo
        der = serialization.Encoding.DER
        if private.public_key().public_bytes(der, fmt) != certs[0].public_key().public_bytes(
            der, fmt
        ):
            raise ValueError(f"the private key {files.key} is not the key of {files.cert}")
        return cls(chain, key, ca, certs[0])

    @property
    def lifetime(self) -> float:
        """Seconds from the leaf's notBefore to its notAfter."""
        return (self.leaf.not_valid_after_utc - self.leaf.not_valid_before_utc).total_seconds()

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self.key, self.chain)], root_certificates=self.ca
        )


def _signature(paths: Sequence[Path]) -> tuple[tuple[int, int, int, int], ...]:
    out = []
    for path in paths:
        try:
            st = os.stat(path)  # follows symlinks: a swapped ..data link is a change
        except OSError:
            out.append((0, 0, 0, 0))
            continue
        out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


class CertificateReloader:
    """grpc's ``certificate_configuration_fetcher``: called before every TLS handshake.

    Returns a new configuration when the files changed and form a consistent pair, else None
    (grpc keeps the current one). A few ``stat`` calls per new connection; connections are
    long-lived, so this is not on any per-call path.
    """

    __slots__ = ("_files", "_paths", "_signature", "current")

    def __init__(self, files: ServerTls, current: KeyPair) -> None:
        self._files = files
        self._paths = [p for p in (files.cert, files.key, files.ca) if p is not None]
        self._signature = _signature(self._paths)
        self.current = current

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        try:
            signature = _signature(self._paths)
            if signature == self._signature:
                return None
            try:
                pair = KeyPair.load(self._files)
            except ValueError as exc:
                # Mid-rotation (one file replaced, not yet the other): keep serving the old
                # pair and look again at the next handshake.
                log.warning("TLS files changed but not usable yet, keeping the old ones: %s", exc)
                return None
            self._signature = signature
            self.current = pair
            log.info("TLS certificate reloaded: serial %x", pair.leaf.serial_number)
            return pair.configuration()
        except Exception:  # never let an exception escape into grpc's handshake thread
            log.exception("TLS certificate reload failed")
            return None


def server_credentials(files: ServerTls) -> tuple[grpc.ServerCredentials, CertificateReloader]:
    """Reloading server credentials over ``files``.

    Raises:
        ValueError: the files are unusable now.
    """
    pair = KeyPair.load(files)
    reloader = CertificateReloader(files, pair)
    # grpc documents None as "no change"; its type stub leaves it out.
    fetcher = cast("Callable[[], grpc.ServerCertificateConfiguration]", reloader)
    creds = grpc.dynamic_ssl_server_credentials(
        pair.configuration(), fetcher, require_client_authentication=files.client_auth
    )
    return creds, reloader


def server_options(transport: Transport) -> list[tuple[str, int]]:
    """The channel arguments a server needs for ``transport`` (maximum connection age)."""
    return [
        ("grpc.max_connection_age_ms", max(1, round(transport.max_connection_age * 1000))),
        (
            "grpc.max_connection_age_grace_ms",
            max(1, round(transport.max_connection_age_grace * 1000)),
        ),
    ]


def add_listener(server: grpc.aio.Server, host: str, port: int, transport: Transport) -> int:
    """Bind ``host:port`` with TLS when ``transport.server`` is set; returns the bound port.

    Raises:
        ValueError: the TLS files are unusable.
    """
    addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if transport.server is None:
        return server.add_insecure_port(addr)
    creds, _ = server_credentials(transport.server)
    return server.add_secure_port(addr, creds)


# --- the caller's certificate -----------------------------------------------------------------


def peer_certificate_pem(context: Any) -> bytes | None:
    """The PEM of the caller's verified client certificate (mTLS), or None.

    ``context`` is a ``grpc.ServicerContext`` or ``grpc.aio.ServicerContext``; grpc only puts
    a certificate there after verifying its chain against the listener's CA bundle.
    """
    values = context.auth_context().get("x509_pem_cert")
    return bytes(values[0]) if values else None


def peer_certificate(context: Any) -> x509.Certificate | None:
    """The caller's verified client certificate (mTLS), parsed; None without one."""
    pem = peer_certificate_pem(context)
    return None if pem is None else x509.load_pem_x509_certificate(pem)


# --- configuration and start-up policy --------------------------------------------------------


def _path(reader: Reader, var: v.Var[str]) -> Path | None:
    text = reader.get(var)
    return Path(text) if text else None


def read_transport(reader: Reader) -> Transport:
    """``TOKENRY_TLS_*``, ``TOKENRY_NATS_TLS_*`` and ``TOKENRY_MAX_CONNECTION_AGE``; every
    problem goes to ``reader``."""
    cert, key, ca = _path(reader, v.TLS_CERT), _path(reader, v.TLS_KEY), _path(reader, v.TLS_CA)
    client_auth = reader.get(v.TLS_CLIENT_AUTH)
    age = reader.get(v.MAX_CONNECTION_AGE)
    server: ServerTls | None = None
    if (cert is None) != (key is None):
        reader.problem(f"{v.TLS_CERT.name} and {v.TLS_KEY.name} go together: set both or neither")
    elif cert is not None and key is not None:
        server = ServerTls(cert, key, ca, client_auth)
        try:
            pair = KeyPair.load(server)
        except ValueError as exc:
            reader.problem(f"{v.TLS_CERT.name}/{v.TLS_KEY.name}: {exc}")
        else:
            if pair.lifetime < age:
                # A connection must not outlive the shortest certificate lifetime.
                age = max(1.0, pair.lifetime)
    if ca is not None and server is None:
        try:
            read_pem(ca, "CA bundle")
        except ValueError as exc:
            reader.problem(f"{v.TLS_CA.name}: {exc}")
    if client_auth and (server is None or ca is None):
        reader.problem(
            f"{v.TLS_CLIENT_AUTH.name}=1 needs {v.TLS_CERT.name}, {v.TLS_KEY.name} and"
            f" {v.TLS_CA.name} (the bundle client certificates are checked against)"
        )
    return Transport(
        server=server,
        terminated_in_front=reader.get(v.TLS_TERMINATED),
        max_connection_age=age,
        nats=_nats_tls(reader, ca),
    )


def _nats_tls(reader: Reader, default_ca: Path | None) -> ClientTls | None:
    ca = _path(reader, v.NATS_TLS_CA)
    cert, key = _path(reader, v.NATS_TLS_CERT), _path(reader, v.NATS_TLS_KEY)
    url = reader.env.get(v.NATS_URL.name, "")
    if ca is None and cert is None and key is None and not url.startswith("tls://"):
        return None
    if (cert is None) != (key is None):
        reader.problem(
            f"{v.NATS_TLS_CERT.name} and {v.NATS_TLS_KEY.name} go together: set both or neither"
        )
        return None
    tls = ClientTls(ca or default_ca, cert, key)
    try:
        tls.ssl_context()
    except ValueError as exc:
        name = v.NATS_TLS_CA.name if ca is not None else v.NATS_TLS_CERT.name
        reader.problem(f"{name}: {exc}")
        return None
    return tls


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP; a wildcard (``0.0.0.0``, ``::``) is not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_listener(
    reader: Reader, transport: Transport, host: str, port: int, var_name: str, *, dev: bool
) -> None:
    """Outside dev mode, plaintext on a non-loopback address is a configuration error unless
    TLS is declared to terminate in front (docs/spec.md §3)."""
    if dev or transport.server is not None or transport.terminated_in_front:
        return
    if is_loopback(host):
        return
    reader.problem(
        f"refusing to listen on {host}:{port} ({var_name}) without TLS: set {v.TLS_CERT.name}"
        f" and {v.TLS_KEY.name}, or {v.TLS_TERMINATED.name}=1 if TLS terminates in front"
    )


def _database_hosts(url: str) -> tuple[list[str], dict[str, list[str]]]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    hosts: list[str] = []
    netloc = parts.netloc.rpartition("@")[2]
    for item in netloc.split(","):
        host = item.strip()
        if host.startswith("["):
            host = host[1 : host.find("]")]
        elif host.count(":") == 1:
            host = host.partition(":")[0]
        if host:
            hosts.append(host)
    for value in query.get("host", []):
        hosts.extend(h for h in value.split(",") if h)
    return hosts, query


def check_database_url(reader: Reader, url: str, *, dev: bool) -> None:
    """Outside dev mode a database reached over the network must be TLS with the server's
    certificate and name verified: ``sslmode=verify-full`` (libpq's only mode that stops a
    man in the middle). Unix sockets and loopback are exempt."""
    if dev or not url:
        return
    hosts, query = _database_hosts(url)
    local = all(h.startswith("/") or is_loopback(h) for h in hosts) if hosts else True
    if local:
        return
    if query.get("sslmode", [""])[-1] != "verify-full":
        reader.problem(
            f"{v.DATABASE_URL.name} points at a non-loopback host without sslmode=verify-full:"
            " add ?sslmode=verify-full (and sslrootcert=… for a private CA)"
        )

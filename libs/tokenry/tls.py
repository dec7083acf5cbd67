"""TLS material from files, for the caller's side: gRPC channel credentials, NATS ssl contexts.

The caller side of docs/spec.md §3 "Transport": a CLI, a verifier or a service that dials another
one names the CA bundle it trusts and, for mutual TLS, its own certificate and key, each as a path
(the same ``TOKENRY_TLS_CA`` / ``TOKENRY_TLS_CERT`` / ``TOKENRY_TLS_KEY`` the services read for
their listeners). The server side (listeners, reload, maximum connection age) is
:mod:`tokenry.servicekit.tls`.

Files are read when credentials are built: a channel from :meth:`ClientTls.aio_channel` keeps
the certificate it connected with (grpc Python has no reloading channel credentials). A
long-lived channel that must follow a rotation by cert-manager or SPIRE is
:meth:`ClientTls.reloading_channel` (:mod:`tokenry.tls_reload`).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from tokenry.tls_reload import ReloadingChannel

__all__ = ["ClientTls", "read_pem"]


def read_pem(path: Path, what: str) -> bytes:
    """The bytes of a PEM file.

    Raises:
        ValueError: the file cannot be read or holds no PEM block (the message names ``what``
            and the path, never the content).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise ValueError(f"the {what} {path} holds no PEM data")
    return data


@dataclass(frozen=True, slots=True)
class ClientTls:
    """What a caller trusts and, for mTLS, who it is.

    Attributes:
        ca: CA bundle (PEM) the server's certificate must chain to; None: the system's roots.
        cert: the caller's certificate chain (PEM), presented when the server asks (mTLS).
        key: the private key of ``cert`` (PEM).
        server_name: the name checked against the server's certificate instead of the host
            dialled (``grpc.ssl_target_name_override``); None: the host.
        check_interval: seconds between two looks at the files by a
            :meth:`reloading_channel` (a few ``stat`` calls each).
    """

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    server_name: str | None = None
    check_interval: float = 5.0

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs its key, and a key its certificate")
        if not self.check_interval > 0:
            raise ValueError("check_interval must be a positive number of seconds")

    @classmethod
    def from_env(cls, env: Mapping[str, str], prefix: str = "TOKENRY_TLS") -> ClientTls | None:
        """``<prefix>_CA``, ``<prefix>_CERT`` and ``<prefix>_KEY`` as paths; None when the CA
        is unset (no TLS asked for)."""
        ca = env.get(f"{prefix}_CA", "").strip()
        if not ca:
            return None
        cert = env.get(f"{prefix}_CERT", "").strip()
        key = env.get(f"{prefix}_KEY", "").strip()
        return cls(Path(ca), Path(cert) if cert else None, Path(key) if key else None)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """``grpc.ssl_channel_credentials`` over these files (read now).

        Raises:
            ValueError: a file cannot be read.
        """
        return grpc.ssl_channel_credentials(
            root_certificates=read_pem(self.ca, "CA bundle") if self.ca else None,
            private_key=read_pem(self.key, "private key") if self.key else None,
            certificate_chain=read_pem(self.cert, "certificate") if self.cert else None,
        )

    def channel_options(self) -> list[tuple[str, str]]:
        if self.server_name is None:
            return []
        return [("grpc.ssl_target_name_override", self.server_name)]

    def ssl_context(self) -> ssl.SSLContext:
        """A client ``ssl.SSLContext`` (TLS 1.2 minimum, hostname checked), e.g. for NATS.

        Raises:
            ValueError: a file cannot be read or does not hold what it should.
        """
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            if self.ca is not None:
                ctx.load_verify_locations(cadata=read_pem(self.ca, "CA bundle").decode())
            if self.cert is not None and self.key is not None:
                read_pem(self.cert, "certificate")
                read_pem(self.key, "private key")
                ctx.load_cert_chain(self.cert, self.key)
        except ssl.SSLError as exc:
            raise ValueError(f"bad TLS material: {exc.reason or exc}") from None
        return ctx

    def secure_channel(
        self, target: str, *, options: list[tuple[str, object]] | None = None
    ) -> grpc.Channel:
        """A synchronous channel to ``target`` over these credentials."""
        return grpc.secure_channel(
            target,
            self.channel_credentials(),
            options=[*(options or []), *self.channel_options()],
        )

    def aio_channel(
        self,
        target: str,
        *,
        options: list[tuple[str, object]] | None = None,
        interceptors: list[grpc.aio.ClientInterceptor] | None = None,
    ) -> grpc.aio.Channel:
        """A ``grpc.aio`` channel to ``target`` over these credentials."""
        return grpc.aio.secure_channel(
            target,
            self.channel_credentials(),
            options=[*(options or []), *self.channel_options()],
            interceptors=interceptors,
        )

    def reloading_channel(
        self,
        target: str,
        *,
        options: list[tuple[str, Any]] | None = None,
        interceptors: list[grpc.aio.ClientInterceptor] | None = None,
        grace: float | None = None,
    ) -> ReloadingChannel:
        """A ``grpc.aio`` channel to ``target`` that takes up new files after a rotation: at
        most every :attr:`check_interval` seconds it looks at them, and moves new calls to a
        channel over the new certificate, giving the old one's calls ``grace`` seconds
        (default 60). See :mod:`tokenry.tls_reload`.

        Raises:
            ValueError: the files are not usable now.
        """
        # Imported here: tokenry.tls_reload builds on this module.
        from tokenry.tls_reload import DEFAULT_GRACE, ReloadingChannel

        return ReloadingChannel(
            target,
            self,
            options=options,
            interceptors=interceptors,
            grace=DEFAULT_GRACE if grace is None else grace,
        )

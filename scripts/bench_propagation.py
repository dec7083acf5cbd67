"""Benchmark of revocation propagation (docs/spec.md §8): Revoke acknowledged → applied by all of 1,
10 and 100 verifiers; revocation throughput; cold sync time and memory of a verifier loading
100,000 and 1,000,000 revocations.

Setup: embedded PostgreSQL and NATS in a temporary folder; the revocation service (which runs
the outbox relay, the one event publisher) as its own process, pinned with ``taskset`` to
core 0 when ``--pin``; verifier processes (1 × 1, 2 × 5, 4 × 25 — each verifier a full
``start_verifier`` with its own NATS connection and ordered consumer, bootstrapped from a
ListRevocations snapshot) unpinned. No key rotator: the verifiers get a fixed JWKS (keys play
no part in propagation), so the revocation service's relay is the only publisher.

Propagation: the driver (this process) sends one Revoke at a time with a pause between, and
notes when each was acknowledged. Every verifier stamps the moment its contiguous applied seq
reaches each event's seq (``RevocationState.on_advance``, ``time.monotonic()``, one clock for
every process on the host). The latency of a revocation is the slowest verifier's stamp minus
the acknowledgement; it can be negative when every verifier applied the event before the
Revoke answer reached the caller. p50/p95/p99/max over ``--revocations`` (≥ 200).

Throughput: ``c`` concurrent admin Revoke calls for a few seconds, nothing else running.

Floor (same run, same topology, interleaved with the Tokenry rounds): a bare JetStream
publish (the same envelope, ``Nats-Msg-Id``, awaited PubAck) from this process to 100 bare
ordered consumers (4 processes × 25, each with its own NATS connection) that decode each event,
apply it to a dict and stamp the time. Its latency runs from the publish call to the slowest
consumer's stamp. Target (docs/spec.md §8): Tokenry's p99 (100 verifiers) ≤ 1.2 × the floor's p99.
Both are split per stage (stored in JetStream, first consumer applied, first → slowest, the
widest spread inside one process and across processes), with the consumer processes' CPU and
their full garbage collections. ``--proof-floor-topologies``: a second floor whose consumers
also do a verifier's mandatory minimum (seq contiguity, a head question per heartbeat).

Throughput: ``c`` concurrent admin Revoke calls for a few seconds, nothing else running.

Cold sync: N rows inserted straight into PostgreSQL, then a fresh verifier process times a
full ``start_verifier`` (NATS connect, snapshot over gRPC in batches of 5,000, JWKS, subscribe)
and, in a second pass under tracemalloc, the memory the loaded revocation set keeps.

Heal (last, it restarts NATS): verifiers (default 4 in 2 processes) are current; nats-server
is stopped; ``--heal-revocations`` Revokes are acknowledged while it is down (16 in flight); the
outage lasts ``--heal-down`` seconds in all (longer if queueing took longer). Then nats-server
starts on the same store and port. Heal time: from the moment it accepts a TCP connection
(polled every 2 ms from here) until every verifier has applied the last queued revocation and
is current (``RevocationState.wait_current``, stamped by the verifier). Drain rate: the backlog
over the JetStream store times of its first and last message. Targets: heal ≤ 2 s, drain ≥
5,000 events/s. Heal floor (same run, right after, ``--no-heal-floor`` to skip): the same
topology of bare ordered consumers (the propagation floor's, each decoding every event into a
dict) on the relay's own stream, the same outage and backlog. They connect when nats-server
accepts (polled every 2 ms) and consume from the outage's start time; their heal is from the
same accept until every consumer has the last queued revocation (there is nothing to prove).

Run: ``.venv/bin/python scripts/bench_propagation.py [--quick] [--pin]``; every volume is an
option (``--help``), e.g. a cheap validation run::

    scripts/bench_propagation.py --quick --heal-down 6 --heal-budget 3 --heal-revocations 2000

Writes propagation.json (raw samples) and propagation.png under docs/benchmarks/
(``propagation-quick.*`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
from benchkit import new_pepper, register, service_env, stop_stack, write_results

from tokenry.bus.codec import Subjects
from tokenry.core.clients import ADMIN_SCOPE, secret_client
from tokenry.core.revocations import RevocationKind
from tokenry.core.signing import generate_private_key, public_jwk
from tokenry.devstack import EmbeddedNats, EmbeddedPostgres
from tokenry.devstack.ports import free_tcp_port
from tokenry.v1 import revocation_pb2, revocation_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "bench-admin"
PREFIX = "tokenry"
STREAM = "TOKENRY_EVENTS"
TOPOLOGIES = ((1, 1), (2, 5), (4, 25))  # (processes, verifiers per process)
FLOOR_PREFIX = "floor"
FLOOR_STREAM = "FLOOR_EVENTS"


# --- child: a verifier process -------------------------------------------------------------------


class StaticJwks:
    def __init__(self, text: str) -> None:
        self._text = text

    async def fetch(self) -> tuple[str, int]:
        return self._text, 0


def _gc_recorder() -> list[list[float]]:
    """Records every collection of generation 1 or 2 from now on: [start (monotonic), seconds,
    generation] (a pause of the whole process's event loop, every consumer in it waiting).

    It first runs one full collection, in the Tokenry and the floor children alike: starting
    25 consumers leaves a debt of young objects, and the first full collection after it came
    inside the measured seconds in all 4 processes at once (same work, same counts): 150 ms
    stalls on the shared core, by luck in whichever kind allocated a little faster
    (docs/benchmarks/propagation.md, fan-out). A long-running process pays that debt once."""
    gc.collect()
    pauses: list[list[float]] = []
    began = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.monotonic()
        elif info["generation"] >= 1:
            pauses.append([began[0], time.monotonic() - began[0], info["generation"]])

    gc.callbacks.append(on_gc)
    return pauses


async def _start(args: argparse.Namespace, jwks: str, **kwargs: Any) -> Any:
    from tokenry.verifier import start_verifier

    return await start_verifier(
        **kwargs,
        issuer="https://issuer.bench",
        audience="bench",
        nats_url=args.nats_url,
        subjects=Subjects(PREFIX),
        stream=STREAM,
        revocation_addr=args.revocation_addr,
        jwks_source=StaticJwks(jwks),
    )


async def verifier_process(args: argparse.Namespace) -> None:
    """``--verifiers N``: run N verifiers, say READY, stamp applies, dump them on DONE <seq>."""
    jwks = await asyncio.to_thread(Path(args.jwks_file).read_text)
    runtimes = []
    stamps: list[dict[int, float]] = []
    for _ in range(args.verifiers):
        runtime = await _start(args, jwks)
        mine: dict[int, float] = {}
        last = [runtime.state.applied_seq]

        def on_advance(seq: int, mine: dict[int, float] = mine, last: list[int] = last) -> None:
            now = time.monotonic()
            for s in range(last[0] + 1, seq + 1):
                mine[s] = now
            last[0] = seq

        runtime.state.on_advance = on_advance
        runtimes.append(runtime)
        stamps.append(mine)
    for mine in stamps:
        mine.clear()  # only what arrives from here on (not the bootstrap snapshot's seqs)
    pauses = _gc_recorder()
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    target = int(line.split()[1])
    await asyncio.wait_for(
        asyncio.gather(*(r.state.wait_for_seq(target) for r in runtimes)), timeout=120
    )
    print(json.dumps([{str(k): v for k, v in s.items()} for s in stamps]), flush=True)
    print(json.dumps(pauses), flush=True)
    for runtime in runtimes:
        await runtime.close()


async def floor_process(args: argparse.Namespace) -> None:
    """``--floor N``: N bare ordered consumers, each on its own connection, each decoding every
    event into a dict and stamping it; say READY, dump the stamps on DONE <seq> (or, on
    WATCH <seq>, only when each consumer applied ``seq``).

    ``--floor-proof``: the mandatory minimum of a verifier instead (the second floor): each
    consumer also checks that the outbox seqs are contiguous, and proves it is current the
    way docs/spec.md §4.4 requires: on each relay heartbeat (its own core-NATS subscription)
    it asks the revocation service for the head over its own gRPC channel, single-flight,
    after a random 0..0.25 s (as the verifier does, ``FeedSettings.prove_jitter``)."""
    import random

    import nats
    from nats.js.api import DeliverPolicy

    from tokenry.bus import codec
    from tokenry.bus.consumer import IDLE_HEARTBEAT

    conns = []
    channels: list[grpc.aio.Channel] = []
    stamps: list[dict[int, float]] = []
    rng = random.Random()  # jitter, not security
    for _ in range(args.floor):
        nc = await nats.connect(args.nats_url)
        applied: dict[str, int] = {}
        mine: dict[int, float] = {}
        contiguous = [0, 0]  # [highest contiguous seq, holes seen]

        async def on_msg(
            msg: Any,
            applied: dict[str, int] = applied,
            mine: dict[int, float] = mine,
            contiguous: list[int] = contiguous,
        ) -> None:
            event = codec.decode(msg.data)
            if event.revocation is not None:
                applied[event.revocation.value] = event.revocation.expires_at
            if args.floor_proof:
                if contiguous[0] and event.seq != contiguous[0] + 1:
                    contiguous[1] += 1
                contiguous[0] = max(contiguous[0], event.seq)
            mine[event.seq] = time.monotonic()

        await nc.jetstream().subscribe(
            Subjects(args.floor_prefix).events,
            cb=on_msg,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
            idle_heartbeat=IDLE_HEARTBEAT,
        )
        if args.floor_proof:
            channel = grpc.aio.insecure_channel(args.revocation_addr)
            channels.append(channel)
            stub = revocation_pb2_grpc.RevocationStub(channel)
            asking: list[asyncio.Task[None]] = []
            heads: list[tuple[int, float]] = []

            async def ask(stub: Any = stub, heads: list[tuple[int, float]] = heads) -> None:
                await asyncio.sleep(rng.uniform(0.0, 0.25))
                asked_at = time.monotonic()
                reply = await stub.GetHead(revocation_pb2.GetHeadRequest(), timeout=5)
                heads.append((reply.seq, asked_at))

            async def on_beat(
                msg: Any, asking: list[asyncio.Task[None]] = asking, ask: Any = ask
            ) -> None:
                codec.decode_heartbeat(msg.data)
                if not asking or asking[-1].done():
                    asking[:] = [asyncio.create_task(ask())]

            await nc.subscribe(Subjects(PREFIX).heartbeat, cb=on_beat)
        conns.append(nc)
        stamps.append(mine)
    pauses = _gc_recorder()
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    command, target = line.split()[0], int(line.split()[1])
    deadline = time.monotonic() + 600
    while not all(target in mine for mine in stamps):
        if time.monotonic() > deadline:
            raise TimeoutError("floor consumers did not see every event")
        await asyncio.sleep(0.002)
    if command == "WATCH":  # the heal floor: when each had the head (nothing to prove)
        result: list[Any] = [
            {"applied": m[target], "current": m[target], "went_stale": None} for m in stamps
        ]
    else:
        result = [{str(k): v for k, v in s.items()} for s in stamps]
    print(json.dumps(result), flush=True)
    if command != "WATCH":
        print(json.dumps(pauses), flush=True)
    for nc in conns:
        await nc.close()
    for channel in channels:
        await channel.close()


async def heal_floor_process(args: argparse.Namespace) -> None:
    """``--heal-floor-child N``: the heal floor. On WATCH <seq> <wall time>, N bare consumers
    (the propagation floor's: own connection, decode, apply to a dict) connect as soon as
    nats-server accepts (polled every 2 ms), each makes an ordered consumer from that time on
    (the backlog is published after the restart; by time, not seq, since a restarted
    nats-server may renumber an unsynced tail) and stamps when it has ``seq``.

    They hold no connection through the outage: nats-py's ordered consumer, left open,
    queues a new consumer every second of it, all created when NATS returns (with 100
    consumers that storm hit nats-server's consumer limit for minutes; the verifier drops its
    consumer on disconnect for the same reason). A floor is the best a bare consumer can do."""
    import datetime

    import nats
    from nats.js.api import ConsumerConfig, DeliverPolicy

    from tokenry.bus import codec
    from tokenry.bus.consumer import IDLE_HEARTBEAT

    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    target, since = int(line.split()[1]), float(line.split()[2])
    start = datetime.datetime.fromtimestamp(since, datetime.UTC)

    async def consume() -> tuple[Any, dict[str, Any]]:
        applied: dict[str, int] = {}
        done = asyncio.Event()
        stamp: dict[str, Any] = {"went_stale": None}

        last = [0, time.monotonic()]  # stream seq seen, when

        async def on_msg(msg: Any) -> None:
            event = codec.decode(msg.data)
            if event.revocation is not None:
                applied[event.revocation.value] = event.revocation.expires_at
            last[:] = [int(msg.reply.split(".")[5]), time.monotonic()]
            if event.seq == target:
                stamp["applied"] = stamp["current"] = time.monotonic()
                done.set()

        while True:
            try:
                nc = await nats.connect(args.nats_url, connect_timeout=1, max_reconnect_attempts=0)
                break
            except Exception:
                await asyncio.sleep(0.002)

        async def subscribe() -> Any:
            while True:
                config = (
                    ConsumerConfig(opt_start_seq=int(last[0]) + 1)
                    if last[0]
                    else ConsumerConfig(opt_start_time=start)
                )
                policy = DeliverPolicy.BY_START_SEQUENCE if last[0] else DeliverPolicy.BY_START_TIME
                try:
                    return await nc.jetstream().subscribe(
                        Subjects(PREFIX).events,
                        cb=on_msg,
                        ordered_consumer=True,
                        deliver_policy=policy,
                        config=config,
                        idle_heartbeat=IDLE_HEARTBEAT,
                    )
                except Exception:  # JetStream still recovering, or an API timeout: again
                    await asyncio.sleep(0.01)

        sub = await subscribe()
        # nats-py drops an ordered consumer whose re-creation failed (an API timeout while
        # NATS is busy) and delivers nothing more: resubscribe after the last stream seq seen
        # when nothing came for 3 s, as the verifier does (FeedSettings.behind_grace).
        deadline = time.monotonic() + 600
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=0.5)
            if time.monotonic() > deadline:
                raise TimeoutError("a heal-floor consumer never got the head")
            if not done.is_set() and time.monotonic() - last[1] > 3.0:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
                last[1] = time.monotonic()
                stamp["resubscribed"] = stamp.get("resubscribed", 0) + 1
                sub = await subscribe()
        return nc, stamp

    done = await asyncio.gather(*(consume() for _ in range(args.heal_floor_child)))
    print(json.dumps([stamp for _, stamp in done]), flush=True)
    for nc, _ in done:
        await nc.close()


async def heal_process(args: argparse.Namespace) -> None:
    """``--heal-child N``: N verifiers; READY once current; on WATCH <seq>, stamp when each has
    applied ``seq`` and when it is current again, and dump the stamps."""
    jwks = await asyncio.to_thread(Path(args.jwks_file).read_text)
    runtimes = [
        await _start(args, jwks, staleness_budget=args.heal_budget) for _ in range(args.heal_child)
    ]
    for runtime in runtimes:
        await asyncio.wait_for(runtime.state.wait_current(), timeout=60)
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    target = int(line.split()[1])

    async def watch(runtime: Any) -> dict[str, Any]:
        stale_seen = runtime.state.is_stale()

        async def note_stale() -> None:
            nonlocal stale_seen
            while not stale_seen:
                stale_seen = runtime.state.is_stale()
                await asyncio.sleep(0.05)

        noting = asyncio.create_task(note_stale())
        await runtime.state.wait_for_seq(target)
        applied = time.monotonic()
        await runtime.state.wait_current()
        current = time.monotonic()
        noting.cancel()
        return {"applied": applied, "current": current, "went_stale": stale_seen}

    results = await asyncio.wait_for(asyncio.gather(*(watch(r) for r in runtimes)), timeout=600)
    print(json.dumps(results), flush=True)
    for runtime in runtimes:
        await runtime.close()


async def cold_sync_process(args: argparse.Namespace) -> None:
    """``--cold-sync``: time a full start_verifier, then measure the kept memory."""
    from tokenry.verifier._snapshot import GrpcSnapshotSource

    jwks = await asyncio.to_thread(Path(args.jwks_file).read_text)
    started = time.perf_counter()
    runtime = await _start(args, jwks)
    took = time.perf_counter() - started
    count = runtime.state.revocations.counts()[RevocationKind.JTI]
    await runtime.close()
    del runtime
    gc.collect()
    async with grpc.aio.insecure_channel(args.revocation_addr) as channel:
        source = GrpcSnapshotSource(channel)
        started = time.perf_counter()
        snap = await source.snapshot()
        snapshot_only = time.perf_counter() - started
        del snap
        gc.collect()
        tracemalloc.start()
        snap = await source.snapshot()
        gc.collect()
        kept, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    result = {
        "entries": count,
        "start_verifier_s": took,
        "snapshot_s": snapshot_only,
        "kept_bytes": kept,
        "peak_bytes": peak,
        "bytes_per_entry": kept / max(1, len(snap.revocations)),
    }
    print(json.dumps(result), flush=True)


# --- the stack -----------------------------------------------------------------------------------


@dataclass
class Stack:
    env: dict[str, str]
    pg: EmbeddedPostgres
    nats: EmbeddedNats
    revocation_addr: str
    admin_secret: str
    jwks_file: Path
    pin: list[str]


def _pin_tree(pid: int, core: int) -> None:
    """Pin a process and its children to ``core`` (new children inherit it). With ``--pin``
    PostgreSQL joins the revocation service on core 0: its commit, NOTIFY and the relay's
    marking of published rows come with every Revoke and never with a floor publish, and
    left unpinned they ran on the verifiers' core during Tokenry's fan-out only (in a
    deployment the database is not on the verifiers' hosts)."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                pids.append(int(stat.parent.name))
    for p in pids:
        subprocess.run(
            ["taskset", "-a", "-cp", str(core), str(p)], check=False, capture_output=True
        )


def _wait_serving(addr: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"service exited with {proc.returncode}")
            with contextlib.suppress(grpc.RpcError):
                resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            time.sleep(0.1)
    raise TimeoutError(f"{addr} not serving")


@contextlib.contextmanager
def stack(pin: bool) -> Iterator[Stack]:
    tmp = Path(tempfile.mkdtemp(prefix="tokenry-bench-"))
    pg = EmbeddedPostgres(tmp / "pg", fsync=False)
    nats = EmbeddedNats(tmp / "nats")
    proc: subprocess.Popen[bytes] | None = None
    try:
        pg.start()
        nats.start()
        pepper_text, pepper = new_pepper()
        admin_secret = secrets.token_urlsafe(32)
        admin = secret_client(
            ADMIN, admin_secret, pepper, scopes={ADMIN_SCOPE}, audiences=("tokenry",)
        )
        asyncio.run(register(pg.dsn(), [admin]))
        key = generate_private_key("ES256")
        jwks_file = tmp / "jwks.json"
        jwks_file.write_text(json.dumps({"keys": [public_jwk(key, "ES256")]}))
        addr = f"127.0.0.1:{free_tcp_port()}"
        extra = {"TOKENRY_REVOCATION_LISTEN": addr, "TOKENRY_SWEEP_INTERVAL": "86400"}
        env = service_env(pg.dsn(), nats.url, pepper_text, extra)
        taskset = ["taskset", "-c", "0"] if pin and shutil.which("taskset") else []
        if taskset and pg.pid is not None:
            _pin_tree(pg.pid, 0)
        proc = subprocess.Popen(
            [*taskset, sys.executable, "-m", "tokenry.services.revocation"], env=env
        )
        _wait_serving(addr, proc)
        verifier_pin = ["taskset", "-c", "1"] if taskset else []
        yield Stack(env, pg, nats, addr, admin_secret, jwks_file, verifier_pin)
    finally:
        stop_stack([] if proc is None else [proc], nats, pg, tmp)


def _child_args(s: Stack) -> list[str]:
    return [
        "--nats-url",
        s.nats.url,
        "--revocation-addr",
        s.revocation_addr,
        "--jwks-file",
        str(s.jwks_file),
    ]


def _metadata(s: Stack) -> tuple[tuple[str, str], ...]:
    raw = f"{ADMIN}:{s.admin_secret}".encode()
    return (("authorization", "Basic " + base64.b64encode(raw).decode()),)


# --- measurements --------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def propagation(
    s: Stack, processes: int, per_process: int, count: int, pause: float
) -> dict[str, Any]:
    children = []
    for _ in range(processes):
        child = await asyncio.create_subprocess_exec(
            *s.pin,
            sys.executable,
            __file__,
            "--verifiers",
            str(per_process),
            *_child_args(s),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=s.env,
            limit=1 << 26,  # the stamps come back as one JSON line
        )
        children.append(child)
    for child in children:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), timeout=180)
        if line.strip() != b"READY":
            raise RuntimeError(f"verifier process failed to start: {line!r}")
    sent: list[tuple[int, float, float]] = []  # (seq, sent, acknowledged)
    beats = await _heartbeat_times(s)
    async with grpc.aio.insecure_channel(s.revocation_addr) as channel:
        stub = revocation_pb2_grpc.RevocationStub(channel)
        metadata = _metadata(s)
        # A fresh jti per round: revoking one again is a no-op that answers the first seq
        # (docs/events.md, "One revocation, one event"), which no verifier would stamp anew.
        run_id = uuid.uuid4().hex[:8]
        for i in range(count + 20):
            request = revocation_pb2.RevokeRequest(jti=f"p{processes}x{per_process}-{run_id}-{i}")
            t0 = time.monotonic()
            resp = await stub.Revoke(request, metadata=metadata, timeout=10)
            t1 = time.monotonic()
            if i == 19:
                cpu0, wall0 = _cpu_s(children), time.monotonic()
            if i >= 20:  # the first 20 warm everything up
                sent.append((resp.seq, t0, t1))
            await asyncio.sleep(pause)
    cpu_s, wall_s = _cpu_s(children) - cpu0, time.monotonic() - wall0
    heartbeats = await beats.close()
    target = sent[-1][0]
    stamps: list[dict[str, float]] = []
    gc_pauses: list[list[list[float]]] = []  # per process: [start, seconds, generation]
    for child in children:
        assert child.stdin is not None
        child.stdin.write(f"DONE {target}\n".encode())
        await child.stdin.drain()
    for child in children:
        assert child.stdout is not None
        stamps += json.loads(await asyncio.wait_for(child.stdout.readline(), timeout=180))
        gc_pauses.append(json.loads(await asyncio.wait_for(child.stdout.readline(), timeout=60)))
        await child.wait()
    after_ack, after_send = [], []
    for seq, t0, t1 in sent:
        slowest = max(v[str(seq)] for v in stamps)
        after_ack.append((slowest - t1) * 1000)
        after_send.append((slowest - t0) * 1000)
    stages = await _stages(s, sent, stamps, per_process=per_process)
    return {
        "stages_ms": stages,
        "children_cpu_s": cpu_s,
        "children_wall_s": wall_s,
        "loadavg_after": os.getloadavg(),
        "heartbeats_at": heartbeats,
        "gc_pauses": gc_pauses,
        "acked_at": [t1 for _, _, t1 in sent],
        "kind": "tokenry",
        "verifiers": processes * per_process,
        "processes": processes,
        "per_process": per_process,
        "revocations": len(sent),
        "pause_s": pause,
        "ack_to_all_applied_ms": after_ack,
        "send_to_all_applied_ms": after_send,
        "rpc_ms": [(t1 - t0) * 1000 for _, t0, t1 in sent],
    }


async def _stages(
    s: Stack,
    sent: list[tuple[int, float, float]],
    stamps: list[dict[str, float]],
    *,
    stream: str = STREAM,
    per_process: int = 1,
) -> dict[str, list[float]]:
    """Per revocation, where the time goes: acknowledged (the floor: the publish call) ->
    stored in JetStream (the publish; the store time is nats-server's wall clock, this
    machine's) -> applied by the first verifier -> applied by the slowest. Monotonic stamps are
    moved onto the wall clock by one offset (one machine, one CLOCK_MONOTONIC).

    ``first_to_last`` splits into the widest spread inside one process (``in_process``: its
    consumers taking turns on one event loop) and the spread of the processes' first stamps
    (``across_processes``: NATS writing to the connections, the processes taking turns on the
    core). ``stamps`` lists each process's consumers together, ``per_process`` each."""
    import nats

    from tokenry.bus import codec

    offset = time.time() - time.monotonic()
    stored: dict[int, float] = {}
    nc = await nats.connect(s.nats.url)
    try:
        js = nc.jetstream()
        last = int((await js.stream_info(stream)).state.last_seq)
        for stream_seq in range(last, max(0, last - len(sent) - 40), -1):
            msg = await js.get_msg(stream, stream_seq)
            if msg.data is not None and msg.time is not None:
                stored[codec.decode(msg.data).seq] = msg.time.timestamp()
    finally:
        await nc.close()
    names = ("ack_to_stored", "stored_to_first", "first_to_last", "in_process", "across_processes")
    out: dict[str, list[float]] = {name: [] for name in names}
    for seq, _t0, t1 in sent:
        if seq not in stored:
            continue
        applied = [v[str(seq)] + offset for v in stamps]
        groups = [applied[i : i + per_process] for i in range(0, len(applied), per_process)]
        out["ack_to_stored"].append((stored[seq] - (t1 + offset)) * 1000)
        out["stored_to_first"].append((min(applied) - stored[seq]) * 1000)
        out["first_to_last"].append((max(applied) - min(applied)) * 1000)
        out["in_process"].append(max(max(g) - min(g) for g in groups) * 1000)
        firsts = [min(g) for g in groups]
        out["across_processes"].append((max(firsts) - min(firsts)) * 1000)
    return out


class _Beats:
    def __init__(self, nc: Any, times: list[float]) -> None:
        self._nc = nc
        self.times = times

    async def close(self) -> list[float]:
        await self._nc.close()
        return self.times


async def _heartbeat_times(s: Stack) -> _Beats:
    """Notes when each relay heartbeat reaches this process (each one sets every verifier
    asking the revocation service for the head: where the fan-out tail lines up with them)."""
    import nats

    times: list[float] = []

    async def on_beat(_msg: Any) -> None:
        times.append(time.monotonic())

    nc = await nats.connect(s.nats.url)
    await nc.subscribe(Subjects(PREFIX).heartbeat, cb=on_beat)
    return _Beats(nc, times)


def _cpu_s(children: list[asyncio.subprocess.Process]) -> float:
    """User + system CPU seconds the children have used so far (Linux /proc; 0 elsewhere)."""
    total = 0
    for child in children:
        try:
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


async def _spawn(s: Stack, *mode: str) -> asyncio.subprocess.Process:
    child = await asyncio.create_subprocess_exec(
        *s.pin,
        sys.executable,
        __file__,
        *mode,
        *_child_args(s),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=s.env,
        limit=1 << 26,  # the stamps come back as one JSON line
    )
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), timeout=180)
    if line.strip() != b"READY":
        raise RuntimeError(f"child {mode} failed to start: {line!r}")
    return child


async def _tell(children: list[asyncio.subprocess.Process], line: str) -> None:
    for child in children:
        assert child.stdin is not None
        child.stdin.write(f"{line}\n".encode())
        await child.stdin.drain()


async def _collect(
    children: list[asyncio.subprocess.Process],
    wait: float = 180,
    gc_pauses: list[Any] | None = None,
) -> list[Any]:
    out: list[Any] = []
    for child in children:
        assert child.stdout is not None
        out += json.loads(await asyncio.wait_for(child.stdout.readline(), timeout=wait))
        if gc_pauses is not None:  # a second line: the child's collections (_gc_recorder)
            gc_pauses.append(json.loads(await asyncio.wait_for(child.stdout.readline(), wait)))
        await child.wait()
    return out


async def floor(
    s: Stack, processes: int, per_process: int, count: int, pause: float, *, proof: bool = False
) -> dict[str, Any]:
    """The same-run floor: bare JetStream publish → bare ordered consumers, same topology;
    ``proof``: the second floor, consumers doing a verifier's mandatory minimum
    (``--floor-proof``)."""
    import nats

    from tokenry.bus import codec
    from tokenry.bus.nats_conn import StreamSettings, ensure_stream
    from tokenry.core.revocations import Revocation

    subjects = Subjects(FLOOR_PREFIX)
    nc = await nats.connect(s.nats.url)
    js = nc.jetstream()
    await ensure_stream(js, subjects, StreamSettings(name=FLOOR_STREAM, max_age=3600))
    mode = ("--floor", str(per_process), *(("--floor-proof",) if proof else ()))
    children = [await _spawn(s, *mode) for _ in range(processes)]
    base = int((await js.stream_info(FLOOR_STREAM)).state.last_seq) + 1
    sent: list[tuple[int, float, float]] = []
    for i in range(count + 20):
        now = int(time.time())
        rev = Revocation(RevocationKind.JTI, f"floor-{base + i}", 0, now + 600)
        event = codec.revocation_event(subjects, rev, now, actor="bench")
        payload = codec.stamp_seq(event.payload, base + i)
        t0 = time.monotonic()
        await js.publish(
            event.subject, payload, timeout=10, headers={"Nats-Msg-Id": str(event.event_id)}
        )
        t1 = time.monotonic()
        if i == 19:
            cpu0, wall0 = _cpu_s(children), time.monotonic()
        if i >= 20:
            sent.append((base + i, t0, t1))
        await asyncio.sleep(pause)
    cpu_s, wall_s = _cpu_s(children) - cpu0, time.monotonic() - wall0
    await nc.close()
    await _tell(children, f"DONE {sent[-1][0]}")
    gc_pauses: list[Any] = []  # per process: [start, seconds, generation]
    stamps = await _collect(children, gc_pauses=gc_pauses)
    called = [(seq, t0, t0) for seq, t0, _ in sent]  # from the publish call, as the latency
    stages = await _stages(s, called, stamps, stream=FLOOR_STREAM, per_process=per_process)
    after_send, after_ack = [], []
    for seq, t0, t1 in sent:
        slowest = max(v[str(seq)] for v in stamps)
        after_send.append((slowest - t0) * 1000)
        after_ack.append((slowest - t1) * 1000)
    return {
        # ack_to_stored runs from the publish call here (the floor's "acknowledged" moment)
        "stages_ms": stages,
        "children_cpu_s": cpu_s,
        "children_wall_s": wall_s,
        "loadavg_after": os.getloadavg(),
        "gc_pauses": gc_pauses,
        "kind": "floor_proof" if proof else "floor",
        "verifiers": processes * per_process,
        "processes": processes,
        "per_process": per_process,
        "revocations": len(sent),
        "pause_s": pause,
        # the floor's "acknowledged" moment is the publish call: Revoke is acknowledged
        # before the relay publishes
        "ack_to_all_applied_ms": after_send,
        "send_to_all_applied_ms": after_send,
        "puback_to_all_applied_ms": after_ack,
        "rpc_ms": [(t1 - t0) * 1000 for _, t0, t1 in sent],
    }


async def _revoke_many(s: Stack, n: int, concurrency: int, tag: str) -> int:
    """``n`` acknowledged revocations, ``concurrency`` in flight; returns the highest seq."""
    channels = [grpc.aio.insecure_channel(s.revocation_addr) for _ in range(4)]
    metadata = _metadata(s)
    next_index = 0
    head = 0

    async def worker(index: int) -> None:
        nonlocal next_index, head
        stub = revocation_pb2_grpc.RevocationStub(channels[index % len(channels)])
        while next_index < n:
            i = next_index
            next_index += 1
            resp = await stub.Revoke(
                revocation_pb2.RevokeRequest(jti=f"{tag}-{i}"), metadata=metadata, timeout=30
            )
            head = max(head, resp.seq)

    try:
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    finally:
        for channel in channels:
            await channel.close()
    return head


async def _accepting(host: str, port: int, within: float = 120) -> tuple[float, float]:
    """(monotonic, wall) time of the first TCP connection nats-server greets with INFO."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.002)
            continue
        at = (time.monotonic(), time.time())
        try:
            greeting = await asyncio.wait_for(reader.read(5), timeout=5)
        finally:
            writer.close()
        if greeting.startswith(b"INFO"):
            return at
        await asyncio.sleep(0.002)
    raise TimeoutError("nats-server did not come back")


async def heal(
    s: Stack, processes: int, per_process: int, args: argparse.Namespace, *, floor: bool = False
) -> dict[str, Any]:
    """One heal run; ``floor``: bare ordered consumers on the relay's own stream instead of
    verifiers (the heal floor: the same backlog, outage, publisher and clock, nothing to prove)."""
    import nats

    from tokenry.bus import codec

    mode = (
        ("--heal-floor-child", str(per_process))
        if floor
        else ("--heal-child", str(per_process), "--heal-budget", str(args.heal_budget))
    )
    children = [await _spawn(s, *mode) for _ in range(processes)]
    loadavg = os.getloadavg()
    nc = await nats.connect(s.nats.url)
    before = int((await nc.jetstream().stream_info(STREAM)).state.last_seq)
    await nc.close()
    down_at, down_wall = time.monotonic(), time.time()
    await asyncio.to_thread(s.nats.stop)
    # Fresh jtis per run: a jti revoked again answers its first seq and publishes nothing.
    tag = f"heal-{'floor' if floor else 'tokenry'}-{processes}x{per_process}-{time.time():.0f}"
    target = await _revoke_many(s, args.heal_revocations, 16, tag)
    queued_s = time.monotonic() - down_at
    await asyncio.sleep(max(0.0, down_at + args.heal_down - time.monotonic()))
    await _tell(children, f"WATCH {target} {down_wall}")
    starting = asyncio.create_task(asyncio.to_thread(s.nats.start))
    (accepted, accepted_wall) = await _accepting(s.nats.host, s.nats.port)
    await starting
    outage_s = accepted - down_at
    stamps = await _collect(children, wait=600)
    nc = await nats.connect(s.nats.url)
    try:
        js = nc.jetstream()
        # The backlog is the stream's last messages (the relay publishes it after the restart;
        # heartbeats are not in the stream). Not ``before + 1``: a restarted nats-server may
        # have lost the unsynced tail of an earlier run, and numbered this backlog from lower.
        end = int((await js.stream_info(STREAM)).state.last_seq)
        first = await js.get_msg(STREAM, end - args.heal_revocations + 1)
        last = await js.get_msg(STREAM, end)
        assert first.data is not None
        assert last.data is not None
        assert first.time is not None
        assert last.time is not None
        first_seq, last_seq = codec.decode(first.data).seq, codec.decode(last.data).seq
        first_at, last_at = first.time.timestamp(), last.time.timestamp()
    finally:
        await nc.close()
    drain_s = last_at - first_at
    return {
        "kind": "floor" if floor else "tokenry",
        "loadavg_before": loadavg,
        "verifiers": processes * per_process,
        "processes": processes,
        "per_process": per_process,
        "revocations": args.heal_revocations,
        "staleness_budget_s": args.heal_budget,
        "outage_s": outage_s,
        "queue_s": queued_s,
        "target_seq": target,
        "stream_seqs": [before, end],
        "backlog_outbox_seqs": [first_seq, last_seq],
        "heal_s": max(v["current"] for v in stamps) - accepted,
        "all_applied_s": max(v["applied"] for v in stamps) - accepted,
        "per_verifier_current_s": [v["current"] - accepted for v in stamps],
        "went_stale": None if floor else sum(bool(v["went_stale"]) for v in stamps),
        "first_published_after_accept_s": first_at - accepted_wall,
        "drain_s": drain_s,
        "drain_events_per_s": (args.heal_revocations - 1) / drain_s if drain_s > 0 else None,
    }


async def throughput(s: Stack, concurrency: int, seconds: float) -> dict[str, Any]:
    channels = [grpc.aio.insecure_channel(s.revocation_addr) for _ in range(4)]
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds
    metadata = _metadata(s)

    async def worker(index: int) -> None:
        stub = revocation_pb2_grpc.RevocationStub(channels[index % len(channels)])
        n = 0
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            await stub.Revoke(
                revocation_pb2.RevokeRequest(jti=f"t{index}-{n}"), metadata=metadata, timeout=10
            )
            latencies.append((time.perf_counter() - t0) * 1000)
            n += 1

    started = time.monotonic()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    elapsed = time.monotonic() - started
    for channel in channels:
        await channel.close()
    return {
        "concurrency": concurrency,
        "revocations_per_s": len(latencies) / elapsed,
        "p50_ms": _pct(latencies, 0.5),
        "p99_ms": _pct(latencies, 0.99),
        "calls": len(latencies),
    }


async def _fill(dsn: str, n: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DELETE FROM revocations")
        # jti-like values: 22 base64url characters, like Tokenry's own (128 random bits)
        await conn.execute(
            "INSERT INTO revocations (kind, value, not_before, expires_at, reason, actor, seq)"
            " SELECT 'jti', translate(encode(substr(sha256(('b' || i)::bytea), 1, 16), 'base64'),"
            " '+/=', '-_'), 0, extract(epoch FROM now())::bigint + 3600 + (i % 3600), '',"
            " 'bench', 0 FROM generate_series(1, $1) AS i",
            n,
        )
    finally:
        await conn.close()


async def cold_sync(s: Stack, n: int) -> dict[str, Any]:
    started = time.perf_counter()
    await _fill(s.pg.dsn(), n)
    fill = time.perf_counter() - started
    child = await asyncio.create_subprocess_exec(
        *s.pin,
        sys.executable,
        __file__,
        "--cold-sync",
        *_child_args(s),
        stdout=asyncio.subprocess.PIPE,
        env=s.env,
    )
    out, _ = await asyncio.wait_for(child.communicate(), timeout=600)
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    result["rows"] = n
    result["fill_s"] = fill
    return result


def _series(results: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(kind, processes, per process) of every measured series, in first-seen order."""
    seen: list[tuple[str, int, int]] = []
    for r in results["propagation"]:
        key = (r.get("kind", "tokenry"), r["processes"], r["per_process"])
        if key not in seen:
            seen.append(key)
    return seen


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per series: percentiles over every sample of every round, and the median across
    rounds of each round's p99 (the machine is noisy: one round can catch another job)."""
    rows = []
    for kind, processes, per_process in _series(results):
        runs = [
            r
            for r in results["propagation"]
            if (r.get("kind", "tokenry"), r["processes"], r["per_process"])
            == (kind, processes, per_process)
        ]
        ack = [v for r in runs for v in r["ack_to_all_applied_ms"]]
        sent = [v for r in runs for v in r["send_to_all_applied_ms"]]
        rows.append(
            {
                "kind": kind,
                "verifiers": processes * per_process,
                "topology": f"{processes} × {per_process}",
                "rounds": len(runs),
                "n": len(ack),
                "p50": _pct(ack, 0.5),
                "p95": _pct(ack, 0.95),
                "p99": _pct(ack, 0.99),
                "max": max(ack),
                "round_p99s": [_pct(r["ack_to_all_applied_ms"], 0.99) for r in runs],
                "median_round_p99": statistics.median(
                    _pct(r["ack_to_all_applied_ms"], 0.99) for r in runs
                ),
                "send_p50": _pct(sent, 0.5),
                "send_p99": _pct(sent, 0.99),
                "rpc_p50": statistics.median(v for r in runs for v in r["rpc_ms"]),
            }
        )
    return rows


def floor_ratio(rows: list[dict[str, Any]], kind: str = "floor") -> dict[str, Any] | None:
    """Tokenry's p99 over the floor's, same topology (target ≤ 1.2, docs/spec.md §8);
    ``kind="floor_proof"``: over the second floor's (a verifier's mandatory minimum)."""
    floors = {(r["verifiers"], r["topology"]): r for r in rows if r["kind"] == kind}
    for r in rows:
        f = floors.get((r["verifiers"], r["topology"]))
        if r["kind"] == "tokenry" and f is not None:
            return {
                "verifiers": r["verifiers"],
                "tokenry_p99": r["p99"],
                "floor_p99": f["p99"],
                "ratio_p99": r["p99"] / f["p99"],
                "ratio_median_round_p99": r["median_round_p99"] / f["median_round_p99"],
                "target": 1.2,
            }
    return None


def print_tables(rows: list[dict[str, Any]], results: dict[str, Any]) -> None:
    print(
        "\n| what | verifiers | processes × each | n (rounds) | p50 ms | p95 ms | p99 ms |"
        " max ms | p99 of each round ms | send→applied p50 / p99 ms | Revoke / publish p50 ms |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|")
    for r in rows:
        rounds = ", ".join(f"{v:.1f}" for v in r["round_p99s"])
        what = {"floor": "floor (bare JetStream)", "floor_proof": "floor + proof (minimum)"}.get(
            r["kind"], "Tokenry"
        )
        print(
            f"| {what} | {r['verifiers']} | {r['topology']} | {r['n']} ({r['rounds']}) |"
            f" {r['p50']:.2f} |"
            f" {r['p95']:.2f} | {r['p99']:.2f} | {r['max']:.2f} | {rounds} |"
            f" {r['send_p50']:.2f} / {r['send_p99']:.2f} | {r['rpc_p50']:.2f} |"
        )
    for kind in ("tokenry", "floor", "floor_proof"):
        staged = [
            r
            for r in results.get("propagation", [])
            if r.get("stages_ms") and r.get("kind", "tokenry") == kind
        ]
        if not staged:
            continue
        print(f"\n| {kind} stage (per revocation) | p50 ms | p95 ms | p99 ms | max ms |")
        print("|---|---:|---:|---:|---:|")
        for name in staged[0]["stages_ms"]:
            values = [v for r in staged for v in r["stages_ms"].get(name, ())]
            if values:
                print(
                    f"| {name} | {_pct(values, 0.5):.2f} | {_pct(values, 0.95):.2f} |"
                    f" {_pct(values, 0.99):.2f} | {max(values):.2f} |"
                )
        pauses = [p for r in staged for proc in r.get("gc_pauses", ()) for p in proc]
        for gen in (1, 2):
            ms = [1000 * p[1] for p in pauses if p[2] == gen]
            if ms:
                print(
                    f"{kind}: generation-{gen} collections in the consumer processes: {len(ms)},"
                    f" total {sum(ms):.1f} ms, longest {max(ms):.2f} ms"
                )
        cpu = [r for r in staged if r.get("children_cpu_s") is not None]
        if cpu:
            per_event = [
                1e6 * r["children_cpu_s"] / (r["revocations"] * r["verifiers"]) for r in cpu
            ]
            busy = [r["children_cpu_s"] / r["children_wall_s"] for r in cpu]
            print(
                f"{kind}: consumer processes' CPU per event per consumer (µs), each round:"
                f" {', '.join(f'{v:.0f}' for v in per_event)};"
                f" their CPU / wall: {', '.join(f'{v:.2f}' for v in busy)}"
            )
    ratio = results.get("floor_ratio")
    if ratio:
        print(
            f"\nTokenry p99 / floor p99 ({ratio['verifiers']} verifiers):"
            f" {ratio['ratio_p99']:.2f}"
            f" (median of round p99s: {ratio['ratio_median_round_p99']:.2f});"
            f" target ≤ {ratio['target']}"
        )
    proof = results.get("proof_floor_ratio")
    if proof:
        print(
            f"Tokenry p99 / floor + proof p99 ({proof['verifiers']} verifiers):"
            f" {proof['ratio_p99']:.2f}"
            f" (median of round p99s: {proof['ratio_median_round_p99']:.2f})"
        )
    if results.get("heal"):
        print(
            "\n| heal: what | verifiers | processes × each | queued | outage s |"
            " staleness budget s | went stale | first publish after accept s | drain s |"
            " drain events/s | all applied s | every verifier current s (target 2) | load before |"
        )
        print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for h in results["heal"]:
            what = "floor (bare consumers)" if h.get("kind") == "floor" else "Tokenry"
            load = " / ".join(f"{x:.1f}" for x in h.get("loadavg_before", ()))
            print(
                f"| {what} | {h['verifiers']} | {h['processes']} × {h['per_process']} |"
                f" {h['revocations']:,} | {h['outage_s']:.1f} | {h['staleness_budget_s']:g} |"
                f" {h['went_stale']} | {h['first_published_after_accept_s']:.3f} |"
                f" {h['drain_s']:.3f} | {h['drain_events_per_s']:,.0f} |"
                f" {h['all_applied_s']:.3f} | {h['heal_s']:.3f} | {load} |"
            )
        for r in results.get("heal_ratio", []):
            print(
                f"\nTokenry heal / floor heal ({r['verifiers']}): {r['ratio']:.2f}"
                f" ({r['tokenry_heal_s']:.3f} s / {r['floor_heal_s']:.3f} s;"
                f" all applied / floor: {r['ratio_applied']:.2f})"
            )
    t = results.get("throughput")
    if t:
        print(
            f"\nthroughput: {t['revocations_per_s']:.0f} revocations/s at c={t['concurrency']}"
            f" (RPC p50 {t['p50_ms']:.2f} ms, p99 {t['p99_ms']:.2f} ms, {t['calls']} calls)"
        )
    if not results.get("cold_sync"):
        return
    print("\n| revocations | start_verifier s | snapshot s | kept bytes/entry | peak MB |")
    print("|---:|---:|---:|---:|---:|")
    for c in results["cold_sync"]:
        print(
            f"| {c['entries']:,} | {c['start_verifier_s']:.2f} | {c['snapshot_s']:.2f} |"
            f" {c['bytes_per_entry']:.0f} | {c['peak_bytes'] / 1e6:.0f} |"
        )


def plot(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(16, 4))
    for kind, processes, per_process in _series(results):
        values = sorted(
            v
            for r in results["propagation"]
            if (r.get("kind", "tokenry"), r["processes"], r["per_process"])
            == (kind, processes, per_process)
            for v in r["ack_to_all_applied_ms"]
        )
        ys = [i / max(1, len(values) - 1) for i in range(len(values))]
        label = f"{processes * per_process} verifiers ({processes} × {per_process})"
        if kind == "floor":
            left.plot(values, ys, "k--", label=f"floor: bare JetStream → {label}")
        elif kind == "floor_proof":
            left.plot(values, ys, "k:", label=f"floor + proof (minimum) → {label}")
        else:
            left.plot(values, ys, label=label)
    ratio = results.get("floor_ratio")
    if ratio:
        left.axvline(
            1.2 * ratio["floor_p99"], color="red", linestyle="--", label="target p99: 1.2 × floor"
        )
    left.set_xlabel("Revoke acknowledged → applied by all (ms)")
    left.set_ylabel("fraction of revocations")
    left.set_title("propagation (CDF)")
    left.legend(fontsize="small")
    sizes = [c["entries"] for c in results.get("cold_sync", [])]
    if sizes:
        middle.bar([f"{n:,}" for n in sizes], [c["start_verifier_s"] for c in results["cold_sync"]])
        middle.axhline(10, color="red", linestyle="--", label="target 10 s for 1 M")
        middle.legend()
    middle.set_ylabel("cold start_verifier (s)")
    middle.set_title("cold sync")
    heals = results.get("heal", [])
    if heals:
        names = [
            f"{'floor ' if h.get('kind') == 'floor' else ''}{h['verifiers']}"
            f" ({h['processes']}×{h['per_process']})"
            for h in heals
        ]
        right.bar(names, [h["heal_s"] for h in heals])
        for i, h in enumerate(heals):
            right.annotate(
                f"drain {h['drain_events_per_s']:,.0f}/s",
                (i, h["heal_s"]),
                ha="center",
                va="bottom",
                fontsize="small",
            )
        right.axhline(2, color="red", linestyle="--", label="target 2 s")
        right.legend()
        right.set_xlabel(
            f"verifiers; {heals[0]['revocations']:,} queued, NATS down {heals[0]['outage_s']:.0f} s"
        )
    right.set_ylabel("NATS accepting → every verifier current (s)")
    right.set_title("heal")
    fig.tight_layout()
    fig.savefig(path)
    return True


def _topologies(text: str) -> list[tuple[int, int]]:
    """``"4x25,2x2"`` → [(4, 25), (2, 2)]; empty → none."""
    out = []
    for part in filter(None, text.split(",")):
        processes, per_process = part.lower().split("x")
        out.append((int(processes), int(per_process)))
    return out


async def run(args: argparse.Namespace, s: Stack) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_at_start": os.getloadavg(),
        },
        "pinned": bool(s.pin),
        "args": {k: v for k, v in vars(args).items() if isinstance(v, int | float | str | list)},
        "propagation": [],
    }
    series = [("tokenry", p, n) for p, n in args.topologies]
    series += [("floor", p, n) for p, n in args.floor_topologies]
    series += [("floor_proof", p, n) for p, n in args.proof_floor_topologies]
    for round_ in range(args.rounds):
        shift = round_ % max(1, len(series))
        for kind, processes, per_process in series[shift:] + series[:shift]:  # interleaved
            if kind == "tokenry":
                run_ = await propagation(s, processes, per_process, args.revocations, args.pause)
            else:
                run_ = await floor(
                    s,
                    processes,
                    per_process,
                    args.revocations,
                    args.pause,
                    proof=kind == "floor_proof",
                )
            run_["round"] = round_
            results["propagation"].append(run_)
            print(f"round {round_}: {kind} {processes * per_process} done", file=sys.stderr)
    if args.seconds > 0:
        results["throughput"] = await throughput(s, 16, args.seconds)
    results["cold_sync"] = [await cold_sync(s, n) for n in args.cold]
    results["heal"] = []
    for processes, per_process in args.heal_topologies:  # last: it restarts NATS
        for kind in ("tokenry", "floor") if args.heal_floor else ("tokenry",):
            h = await heal(s, processes, per_process, args, floor=kind == "floor")
            results["heal"].append(h)
            print(
                f"heal {kind} {processes}x{per_process}: every one current {h['heal_s']:.3f} s"
                f" after accept (all applied {h['all_applied_s']:.3f} s,"
                f" drain {h['drain_s']:.3f} s,"
                f" load before {h['loadavg_before'][0]:.1f})",
                file=sys.stderr,
            )
    results["heal_ratio"] = heal_ratio(results["heal"])
    return results


def heal_ratio(heals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tokenry's heal over the same run's heal floor, per topology (every verifier current /
    every bare consumer has the head, both from nats-server accepting)."""
    floors = {(h["processes"], h["per_process"]): h for h in heals if h.get("kind") == "floor"}
    out = []
    for h in heals:
        f = floors.get((h["processes"], h["per_process"]))
        if h.get("kind", "tokenry") == "tokenry" and f is not None and f["heal_s"] > 0:
            out.append(
                {
                    "verifiers": h["verifiers"],
                    "tokenry_heal_s": h["heal_s"],
                    "tokenry_all_applied_s": h["all_applied_s"],
                    "floor_heal_s": f["heal_s"],
                    "ratio": h["heal_s"] / f["heal_s"],
                    "ratio_applied": h["all_applied_s"] / f["heal_s"],
                }
            )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run (small numbers)")
    parser.add_argument("--pin", action="store_true", help="pin the service to core 0")
    parser.add_argument("--revocations", type=int, default=250, help="measured per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per topology")
    parser.add_argument("--pause", type=float, default=0.02, help="seconds between revocations")
    parser.add_argument(
        "--topologies", default="1x1,2x5,4x25", help="verifier processes × verifiers each"
    )
    parser.add_argument(
        "--floor-topologies", default="4x25", help="bare-consumer floor topologies ('' for none)"
    )
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="throughput run length (0: skip)"
    )
    parser.add_argument(
        "--cold", default="100000,1000000", help="cold-sync sizes, comma-separated ('' for none)"
    )
    parser.add_argument(
        "--heal-topologies", default="2x2", help="heal run(s): processes × verifiers ('' for none)"
    )
    parser.add_argument("--heal-down", type=float, default=30.0, help="NATS outage (s)")
    parser.add_argument(
        "--heal-revocations", type=int, default=10_000, help="acknowledged while NATS is down"
    )
    parser.add_argument(
        "--heal-budget", type=float, default=30.0, help="the heal verifiers' staleness budget (s)"
    )
    parser.add_argument(
        "--heal-floor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after each heal run, the same with bare ordered consumers (the heal floor)",
    )
    parser.add_argument(
        "--proof-floor-topologies",
        default="",
        help="second floor: consumers doing a verifier's mandatory minimum (contiguity check,"
        " a head question per heartbeat); '' for none",
    )
    parser.add_argument("--floor-proof", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--floor-prefix", default=FLOOR_PREFIX, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument("--verifiers", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--floor", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--heal-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--heal-floor-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--cold-sync", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--nats-url", help=argparse.SUPPRESS)
    parser.add_argument("--revocation-addr", help=argparse.SUPPRESS)
    parser.add_argument("--jwks-file", help=argparse.SUPPRESS)
    parser.add_argument("--replot", type=Path, help="redo the table and plot from a JSON file")
    args = parser.parse_args()
    if args.replot is not None:
        results = json.loads(args.replot.read_text())
        print_tables(summarize(results), results)
        plot(results, args.replot.with_suffix(".png"))
        return 0
    if args.verifiers:
        asyncio.run(verifier_process(args))
        return 0
    if args.floor:
        asyncio.run(floor_process(args))
        return 0
    if args.heal_child:
        asyncio.run(heal_process(args))
        return 0
    if args.heal_floor_child:
        asyncio.run(heal_floor_process(args))
        return 0
    if args.cold_sync:
        asyncio.run(cold_sync_process(args))
        return 0
    args.cold = [int(n) for n in filter(None, args.cold.split(","))]
    if args.quick:
        args.revocations, args.rounds, args.seconds, args.cold = 30, 1, 1.0, [10_000]
    args.topologies = _topologies(args.topologies)
    args.floor_topologies = _topologies(args.floor_topologies)
    args.proof_floor_topologies = _topologies(args.proof_floor_topologies)
    args.heal_topologies = _topologies(args.heal_topologies)
    with stack(args.pin) as s:
        results = asyncio.run(run(args, s))
    rows = summarize(results)
    results["summary"] = rows
    results["floor_ratio"] = floor_ratio(rows)
    results["proof_floor_ratio"] = floor_ratio(rows, "floor_proof")
    print_tables(rows, results)
    name = "propagation-quick" if args.quick else "propagation"
    write_results(args.out, name, results, lambda png: plot(results, png))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What the fault scenarios share: verifier processes and their probes, process faults on the
embedded servers, JetStream purge and store wipe, acknowledged revocations on one clock.

Every stamp is ``time.monotonic()`` (CLOCK_MONOTONIC: one clock for all processes here).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
import nats
import psutil
from history import OK, REVOKED, History, state_digest
from verifier_child import LINE_LIMIT, ChildConfig, outcome_of

from tokenry.devstack import EmbeddedNats, EmbeddedPostgres
from tokenry.servicekit.config import Settings
from tokenry.v1 import revocation_pb2, revocation_pb2_grpc
from tokenry.verifier import VerifierRuntime

HERE = Path(__file__).resolve().parent
#: a short staleness budget for the quick tier (docs/spec.md §4.4 default: 30 s, used by `make chaos`)
QUICK_BUDGET = 3.0
#: fast recovery knobs for verifiers under test (as pipeline_support.FAST_SYNC)
FAST_SYNC = {"gap_grace": 0.3, "behind_grace": 1.0, "snapshot_jitter": 0.2, "check_interval": 0.1}


def now() -> float:
    return time.monotonic()


# --- verifiers -----------------------------------------------------------------------------------


class Probed(Protocol):
    """Something that answers probes: a verifier process, or verifiers in this process."""

    name: str

    async def probe(self, tokens: list[str]) -> list[tuple[str, int, str, float]]: ...


def child_env() -> dict[str, str]:
    """The verifier processes' environment. ``TOKENRY_FAULTS_VERIFIER_PATH`` (a folder holding
    another checkout's ``tokenry`` package) runs only the verifiers on that code, the services
    on this one: how a scenario is shown to fail at an older commit (docs/faults.md)."""
    env = {**os.environ, "TOKENRY_LOG_LEVEL": "INFO"}
    if other := os.environ.get("TOKENRY_FAULTS_VERIFIER_PATH"):
        env["PYTHONPATH"] = other
    return env


class VerifierProcess:
    """``verifier_child.py`` running N verifiers; probes over its stdin/stdout."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log
        self.ready_at: float | None = None
        self._ready = asyncio.Event()
        self._calls: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next = 0
        self._reader = asyncio.create_task(self._read())
        self.paused = False
        #: probe from a thread in the child, continuously, instead of on each request
        self.watch = False
        self._watching = False

    @classmethod
    async def spawn(
        cls,
        name: str,
        settings: Settings,
        *,
        revocation_addr: str,
        count: int = 2,
        nats_url: str | None = None,
        budget: float = QUICK_BUDGET,
        log_dir: Path,
        sync: dict[str, float] | None = None,
        clock_offset: float = 0.0,
        grpc_default_backoff: bool = False,
    ) -> VerifierProcess:
        cfg = ChildConfig(
            names=[f"{name}.{i}" for i in range(count)],
            issuer=settings.issuer_url,
            audience="demo-api",
            nats_url=nats_url or settings.nats_url,
            prefix=settings.subjects.prefix,
            stream=settings.stream.name,
            revocation_addr=revocation_addr,
            database_url=settings.database_url,
            budget=budget,
            sync=sync or FAST_SYNC,
            clock_offset=clock_offset,
            grpc_default_backoff=grpc_default_backoff,
        )
        log = log_dir / f"verifier-{name}.log"
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(HERE / "verifier_child.py"),
                json.dumps(asdict(cfg)),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=child_env(),
                start_new_session=True,
                limit=LINE_LIMIT,
            )
        return cls(name, proc, log)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            msg = json.loads(line)
            if msg.get("event") == "ready":
                self.ready_at = msg["t"]
                self._ready.set()
            elif (fut := self._calls.pop(msg.get("id", -1), None)) is not None and not fut.done():
                fut.set_result(msg)
        for fut in self._calls.values():
            if not fut.done():
                fut.set_exception(ConnectionError(f"verifier process {self.name} exited"))
        self._calls.clear()

    async def wait_ready(self, timeout: float = 60) -> float:
        """Wait until every verifier in it has started; returns the seconds waited."""
        started = now()
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"verifier process {self.name} not ready; see {self.log}") from None
        return now() - started

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        if self.proc.returncode is not None:
            raise ConnectionError(f"verifier process {self.name} exited")
        self._next += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._calls[self._next] = fut
        self.proc.stdin.write(json.dumps({"id": self._next, "op": op, **args}).encode() + b"\n")
        answer = await fut
        if "error" in answer:
            raise RuntimeError(f"{self.name}: {answer['error']}")
        return answer

    async def probe(self, tokens: list[str]) -> list[tuple[str, int, str, float]]:
        if self.watch:
            # Probed from a thread in the child (see verifier_child.Watcher); the tokens are
            # fixed when the watch starts.
            if not self._watching:
                await self.call("watch", tokens=tokens)
                self._watching = True
            answer = await self.call("drain")
        else:
            answer = await self.call("probe", tokens=tokens)
        return [tuple(r) for r in answer["results"]]  # type: ignore[misc]

    async def status(self) -> dict[str, dict[str, Any]]:
        return (await self.call("status"))["verifiers"]  # type: ignore[no-any-return]

    async def digests(self) -> dict[str, tuple[str, int]]:
        return {k: (v[0], v[1]) for k, v in (await self.call("digest"))["digests"].items()}

    # --- process faults -----------------------------------------------------------------------

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()
        self._reader.cancel()

    async def close(self) -> None:
        if self.proc.returncode is None:
            if self.paused:
                self.resume()
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                await self.kill()
        self._reader.cancel()


@dataclass
class InProcess:
    """Verifiers running in the test's own process (for reading their state directly)."""

    name: str
    runtimes: list[VerifierRuntime]
    #: date each answer by its end (see ``verifier_child.outcome_of``)
    by_end: bool = False

    async def probe(self, tokens: list[str]) -> list[tuple[str, int, str, float]]:
        results = []
        for k, rt in enumerate(self.runtimes):
            for i, token in enumerate(tokens):
                outcome, t = await outcome_of(rt.verifier, token, by_end=self.by_end)
                results.append((f"{self.name}.{k}", i, outcome, t))
        return results


# --- probing -------------------------------------------------------------------------------------


@dataclass
class Tokens:
    """The tokens a run probes: token string → jti, plus which are controls."""

    jtis: dict[str, str] = field(default_factory=dict)

    def add(self, token: str, jti: str) -> None:
        self.jtis[token] = jti


class Prober:
    """Probes every token on every target, over and over, into a :class:`History`.

    One loop per target, each with one probe in flight: a paused process holds its own loop
    only, and the answer it gives after SIGCONT carries the time it was decided.
    """

    def __init__(
        self, history: History, tokens: Tokens, targets: list[Probed], interval: float = 0.02
    ) -> None:
        self.history = history
        self.tokens = tokens
        self.targets = list(targets)
        self.interval = interval
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.rounds = 0
        self.failure: BaseException | None = None

    def start(self) -> Prober:
        for target in self.targets:
            self._start(target)
        return self

    def add(self, target: Probed) -> None:
        self.targets.append(target)
        self._start(target)

    def replace(self, target: Probed) -> None:
        """Probe ``target`` instead of the one of the same name (a restarted process)."""
        old = self._tasks.pop(target.name, None)
        if old is not None:
            old.cancel()
        self.targets = [t for t in self.targets if t.name != target.name] + [target]
        self._start(target)

    def _start(self, target: Probed) -> None:
        self._tasks[target.name] = asyncio.create_task(self._loop(target))

    async def _loop(self, target: Probed) -> None:
        while True:
            try:
                await self.round(target)
            except (ConnectionError, RuntimeError):
                await asyncio.sleep(0.1)  # a killed or restarting process
            except Exception as exc:
                self.failure = exc  # raised by stop(): a broken prober must not pass a run
                raise
            await asyncio.sleep(self.interval)

    async def round(self, target: Probed) -> None:
        tokens = list(self.tokens.jtis)
        for verifier, i, outcome, t in await target.probe(tokens):
            self.history.probe(verifier, t, self.tokens.jtis[tokens[i]], outcome)
        self.rounds += 1

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        failure, self.failure = self.failure, None
        if failure is not None:
            raise AssertionError(f"the prober failed: {failure!r}") from failure

    async def final_round(self) -> None:
        """One more probe of everything by every target (the ``lost`` rule reads it)."""
        for target in self.targets:
            await asyncio.wait_for(self.round(target), 30)


async def wait_for(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float, what: str
) -> float:
    """Poll until ``predicate`` holds; returns the seconds it took (printed by the callers)."""
    started = now()
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return now() - started
        if now() - started > timeout:
            raise TimeoutError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.05)


def latest(history: History) -> dict[str, dict[str, int]]:
    """Per verifier: how many tokens its latest probe answered with each outcome, split by
    revoked / control (for messages when a run does not settle)."""
    seen: dict[tuple[str, str], str] = {}
    for p in history.probes:
        seen[(p.verifier, p.jti)] = p.outcome
    out: dict[str, dict[str, int]] = {}
    for (verifier, jti), outcome in seen.items():
        kind = "revoked" if jti in history.acks else "control" if jti in history.controls else "x"
        key = f"{kind}:{outcome}"
        out.setdefault(verifier, {})[key] = out.setdefault(verifier, {}).get(key, 0) + 1
    return out


def settled(history: History, tokens: Tokens, verifiers: set[str], since: float) -> bool:
    """Every verifier's latest probe (answered after ``since``) refuses every acked token as
    revoked and accepts every control: the run can end."""
    want = {
        jti: REVOKED if jti in history.acks else OK
        for jti in tokens.jtis.values()
        if jti in history.acks or jti in history.controls
    }
    missing = {(v, jti) for v in verifiers for jti in want}
    for p in reversed(history.probes):
        if p.at < since:
            break
        key = (p.verifier, p.jti)
        if key in missing:
            if p.outcome != want[p.jti]:
                return False
            missing.discard(key)
            if not missing:
                return True
    return not missing


# --- revocations ---------------------------------------------------------------------------------


class Revoker:
    """Revokes by jti at a revocation service and records each acknowledgement."""

    def __init__(self, history: History, secrets: dict[str, str], addr: str) -> None:
        from pipeline_support import basic

        self.history = history
        self._auth = [("authorization", basic("admin", secrets["admin"]))]
        self._channel = grpc.aio.insecure_channel(addr)
        self.addr = addr
        self.top = 0

    async def revoke(self, jti: str, *, timeout: float = 10, request_id: str = "") -> int:
        return int((await self.answer(jti, timeout=timeout, request_id=request_id)).seq)

    async def answer(
        self, jti: str, *, timeout: float = 10, request_id: str = ""
    ) -> revocation_pb2.RevokeResponse:
        """The whole answer (a retry with the same ``request_id`` must get the same bytes)."""
        stub = revocation_pb2_grpc.RevocationStub(self._channel)
        resp = await stub.Revoke(
            revocation_pb2.RevokeRequest(jti=jti, request_id=request_id),
            metadata=self._auth,
            timeout=timeout,
        )
        self.history.ack(jti, now())
        self.top = max(self.top, resp.seq)
        return resp

    async def revoke_subject(self, subject: str, jtis: list[str]) -> int:
        """Revoke every token of ``subject`` issued before now; each of ``jtis`` (tokens of
        that subject minted before this call) counts as acknowledged with it."""
        stub = revocation_pb2_grpc.RevocationStub(self._channel)
        resp = await stub.Revoke(
            revocation_pb2.RevokeRequest(subject=subject), metadata=self._auth, timeout=10
        )
        acked = now()
        for jti in jtis:
            self.history.ack(jti, acked)
        self.top = max(self.top, resp.seq)
        return int(resp.seq)

    async def until_acked(
        self, jti: str, *, request_id: str = "", deadline: float = 60
    ) -> revocation_pb2.RevokeResponse:
        """Retry (the same request) until acknowledged: UNAVAILABLE or a deadline while a
        dependency is down."""
        give_up = now() + deadline
        while True:
            try:
                return await self.answer(jti, timeout=5, request_id=request_id)
            except grpc.aio.AioRpcError as exc:
                retryable = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                if exc.code() not in retryable or now() > give_up:
                    raise
                await asyncio.sleep(0.2)

    async def close(self) -> None:
        await self._channel.close()


# --- process and storage faults --------------------------------------------------------------


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def pause_tree(pid: int) -> None:
    """SIGSTOP a server and every process it started (PostgreSQL's backends)."""
    for p in _tree(pid):
        with contextlib.suppress(psutil.Error):
            p.suspend()


def resume_tree(pid: int) -> None:
    for p in _tree(pid):
        with contextlib.suppress(psutil.Error):
            p.resume()


async def kill9(server: EmbeddedNats | EmbeddedPostgres) -> None:
    await asyncio.to_thread(server.kill)


async def restart(server: EmbeddedNats | EmbeddedPostgres) -> None:
    await asyncio.to_thread(server.start)


async def wipe_jetstream(server: EmbeddedNats) -> None:
    """JetStream store loss: kill -9 the server, delete its store directory, start it empty."""
    await asyncio.to_thread(server.kill)
    await asyncio.to_thread(shutil.rmtree, server.store_dir, True)
    await asyncio.to_thread(server.start)


async def purge_stream(nats_url: str, stream: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().purge_stream(stream)
    finally:
        await nc.close()


async def stream_revocations(nats_url: str, stream: str) -> list[tuple[int, str]]:
    """Every revocation event the stream holds, in stream order: (outbox seq, value)."""
    from tokenry.bus import codec

    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for stream_seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await js.get_msg(stream, stream_seq)
            except nats.js.errors.NotFoundError:
                continue  # deleted
            assert msg.data is not None
            with contextlib.suppress(Exception):  # ballast, key events: not revocations
                event = codec.decode(msg.data)
                if event.revocation is not None:
                    out.append((event.seq, event.revocation.value))
        return out
    finally:
        await nc.close()


async def stream_seqs(nats_url: str, stream: str) -> list[int]:
    """The outbox seq of every event in the stream, in stream order."""
    from tokenry.bus import codec

    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for stream_seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, stream_seq)
            assert msg.data is not None
            out.append(codec.decode(msg.data).seq)
        return out
    finally:
        await nc.close()


async def replay_outbox(pool: Any) -> str:
    """The state digest of every revocation event in the outbox applied in seq order to an
    empty state: the replay-from-zero oracle a verifier's state must equal."""
    from tokenry.bus import codec
    from tokenry.core.revocations import RevocationSet

    revs = RevocationSet()
    for row in await pool.fetch("SELECT seq, payload FROM outbox ORDER BY seq"):
        event = codec.decode(codec.stamp_seq(row["payload"], row["seq"]))
        if event.revocation is not None:
            revs.apply(event.revocation)
    return state_digest(revs.entries())


async def assert_replays(procs: list[VerifierProcess], pool: Any) -> None:
    """Every verifier's revocation state hashes equal to the replay of the outbox from zero."""
    expected = await replay_outbox(pool)
    for proc in procs:
        for name, (digest, count) in (await proc.digests()).items():
            assert digest == expected, f"{name} ({count} revocations) differs from the replay"


async def assert_exact(
    targets: list[VerifierProcess | InProcess], pool: Any, timeout: float = 30
) -> None:
    """The oracle, at the end of a run: once every verifier has applied every committed seq,
    its revocation state hashes equal to the replay of the whole outbox from zero."""
    top = int(await pool.fetchval("SELECT coalesce(max(seq), 0) FROM outbox"))

    async def at_top() -> bool:
        for t in targets:
            if isinstance(t, InProcess):
                if any(rt.state.applied_seq < top for rt in t.runtimes):
                    return False
            elif any(v["applied_seq"] < top for v in (await t.status()).values()):
                return False
        return True

    await wait_for(at_top, timeout, f"every verifier at seq {top}")
    expected = await replay_outbox(pool)
    for t in targets:
        if isinstance(t, InProcess):
            digests = {
                f"{t.name}.{k}": (state_digest(rt.state.revocations.entries()), 0)
                for k, rt in enumerate(t.runtimes)
            }
        else:
            digests = await t.digests()
        for name, (digest, _count) in digests.items():
            assert digest == expected, f"{name} differs from the replay of the outbox from zero"
    print(f"every verifier equals the replay from zero (seq {top})")


# --- runs -----------------------------------------------------------------------------------


async def mint_tokens(
    pool: Any, settings: Settings, n: int, **claims: Any
) -> tuple[Tokens, list[str]]:
    """``n`` tokens signed with the active key (``pipeline_support.mint``), and their jtis."""
    from pipeline_support import mint

    tokens = Tokens()
    jtis = []
    for _ in range(n):
        token, body = await mint(pool, settings, **claims)
        tokens.add(token, body["jti"])
        jtis.append(body["jti"])
    return tokens, jtis


async def settle(
    history: History,
    tokens: Tokens,
    since: float,
    timeout: float,
    what: str,
    *,
    strict: bool = True,
) -> float:
    """Wait until every verifier refuses every acked token and accepts every control.

    ``strict=False``: on timeout print and go on, so that the run completes and the history
    checker says what went wrong."""
    try:
        took = await wait_for(
            lambda: settled(history, tokens, history.verifiers(), since), timeout, what
        )
    except TimeoutError as exc:
        if not strict:
            print(f"{exc}; latest answers: {latest(history)}")
            return timeout
        raise TimeoutError(f"{exc}; latest answers: {latest(history)}") from None
    print(f"{what}: {took:.2f}s")
    return took


async def finish(prober: Prober, history: History) -> None:
    """Stop probing, take the final round (the ``lost`` rule reads it), print the figures."""
    from history import measure

    await prober.stop()
    await prober.final_round()
    print(measure(history).describe())

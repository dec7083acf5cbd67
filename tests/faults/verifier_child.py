"""A verifier process for the fault suite: N verifiers (``start_verifier``) in one process,
answering probes on stdin/stdout, one JSON object per line.

Run as ``python verifier_child.py '<config json>'`` (see :class:`ChildConfig`). It answers
probes from the moment it starts: until every verifier is started, a probe answers
``unavailable`` (the application would have no verifier yet). Requests and answers::

    {"id": 1, "op": "probe", "tokens": [...]} → {"id": 1, "results": [[verifier, i, outcome, t]]}
    {"id": 2, "op": "status"}                  → {"id": 2, "verifiers": {name: {...}}}
    {"id": 3, "op": "digest"}                  → {"id": 3, "digests": {name: [digest, count]}}
    {"id": 4, "op": "watch", "tokens": [...]}  → {"id": 4, "results": []}
    {"id": 5, "op": "drain"}                   → {"id": 5, "results": [[verifier, i, outcome, t]]}

``watch`` starts a thread that verifies every token on every verifier over and over with
``verify_blocking`` (as a sync gRPC server's handler threads do), concurrently with the
verifiers' event loop; ``drain`` returns what it saw since the last drain, run-length
encoded: the first and the last probe of each run of equal answers, so every accept is
kept with its latest time.
    (unasked, once)                            → {"event": "ready", "t": t}

``t`` is ``time.monotonic()`` right after the verifier answered: CLOCK_MONOTONIC is one clock
for every process on the machine, so the test compares it with its own stamps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from history import OK, REVOKED, UNAVAILABLE, state_digest

from tokenry.bus.codec import Subjects

# Only the package's public names: the verifier's modules are being reshaped.
from tokenry.verifier import (
    VerificationError,
    Verifier,
    VerifierRuntime,
    VerifierUnavailableError,
    start_verifier,
)

try:
    from tokenry.verifier import FeedSettings as SyncSettings
except ImportError:  # before the consolidation (2909f40, to show the suite fails there)
    from tokenry.verifier.sync import SyncSettings  # type: ignore[no-redef]

LINE_LIMIT = 64 * 1024 * 1024  # a probe of hundreds of tokens is one long line


@dataclass(frozen=True)
class ChildConfig:
    names: list[str]
    issuer: str
    audience: str
    nats_url: str
    prefix: str
    stream: str
    revocation_addr: str
    database_url: str  # the JWKS straight from PostgreSQL (no key rotator, no second relay)
    budget: float
    sync: dict[str, float]
    #: this process's wall clock runs this many seconds off (clock skew); monotonic untouched
    clock_offset: float = 0.0
    #: the verifiers' gRPC channels reconnect with gRPC's default backoff (negative control)
    grpc_default_backoff: bool = False


class OffsetClock:
    """The system wall clock ``offset`` seconds off; the monotonic clock untouched."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset

    def monotonic(self) -> float:
        return time.monotonic()


#: a verification that took longer than this may have been stopped (SIGSTOP) half-way
SLOW = 0.2


def stamp(started: float) -> float:
    """When an answer was decided: its end, unless the call took so long that the process
    may have been stopped in between; then its start, the earliest it can have been decided
    (an accept decided before a SIGSTOP must not be dated after the SIGCONT)."""
    ended = time.monotonic()
    return ended if ended - started <= SLOW else started


async def outcome_of(verifier: Verifier, token: str, *, by_end: bool = False) -> tuple[str, float]:
    """What ``verifier`` answers for ``token`` now, and the monotonic time it answered.

    ``by_end``: date it by its end even when it took long (nothing here is paused; a call
    that waited on I/O, e.g. a JWKS refresh, decided when it returned)."""
    started = time.monotonic()
    try:
        await verifier.verify(token)
        outcome = OK
    except VerificationError as exc:
        outcome = classify(exc)
    return outcome, time.monotonic() if by_end else stamp(started)


def classify(exc: VerificationError) -> str:
    if isinstance(exc, VerifierUnavailableError):
        return UNAVAILABLE
    return REVOKED if exc.reason == "revoked" else f"error:{exc.reason}"


class StoreJwks:
    """The JWKS from PostgreSQL, as the key rotator's GetJwks serves it."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._keys: Any = None

    async def fetch(self) -> tuple[str, int]:
        if self._keys is None:
            import asyncpg

            from tokenry.store.keys import KeyStore

            self._keys = KeyStore(await asyncpg.create_pool(self._dsn, min_size=1, max_size=2))
        jwks, seq = await self._keys.published()
        return json.dumps({"keys": jwks}), seq


class Watcher:
    """Probes from a thread, as fast as the GIL allows (see the module docstring)."""

    def __init__(self, runtimes: dict[str, VerifierRuntime], tokens: list[str]) -> None:
        self._runtimes = runtimes
        self._tokens = tokens
        self._runs: dict[tuple[str, int], list[Any]] = {}  # key -> [outcome, first, last]
        self._out: list[list[Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, rt in list(self._runtimes.items()):
                for i, token in enumerate(self._tokens):
                    started = time.monotonic()
                    outcome = blocking_outcome(rt.verifier, token)
                    t = stamp(started)
                    with self._lock:
                        run = self._runs.get((name, i))
                        if run is None or run[0] != outcome:
                            if run is not None and run[2] != run[1]:
                                self._out.append([name, i, run[0], run[2]])
                            self._out.append([name, i, outcome, t])
                            self._runs[(name, i)] = [outcome, t, t]
                        else:
                            run[2] = t
            time.sleep(0.0005)

    def drain(self) -> list[list[Any]]:
        with self._lock:
            out, self._out = self._out, []
            for (name, i), run in self._runs.items():
                if run[2] != run[1]:
                    out.append([name, i, run[0], run[2]])  # the latest probe of a run
                    run[1] = run[2]
        return out

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def blocking_outcome(verifier: Verifier, token: str) -> str:
    try:
        verifier.verify_blocking(token, timeout=5)
        return OK
    except VerificationError as exc:
        return classify(exc)


def feed_counts(rt: VerifierRuntime) -> dict[str, int]:
    """Snapshots taken and stream resumes, where the runtime exposes them (informative)."""
    feed = getattr(rt, "subscriber", None) or getattr(rt, "feed", None)
    return {
        "snapshots": getattr(feed, "snapshots_taken", -1),
        "resumes": getattr(feed, "resumes", -1),
    }


def channel_options(grpc_default_backoff: bool) -> dict[str, Any]:
    """start_verifier's keyword for gRPC's own reconnect backoff (1 s, x1.6 per failure, up to
    120 s) instead of its 0.1-2 s: the negative control of test_faults_source.py. Versions
    without the ``channel_options`` parameter (2909f40) used gRPC's defaults anyway."""
    if not grpc_default_backoff:
        return {}
    if "channel_options" not in inspect.signature(start_verifier).parameters:
        return {}
    return {"channel_options": ()}


def sync_settings(values: dict[str, float]) -> SyncSettings:
    """The feed settings, without knobs this version of the verifier does not have (the
    suite also runs at 2909f40)."""
    known = {f.name for f in dataclasses.fields(SyncSettings)}
    return SyncSettings(**{k: v for k, v in values.items() if k in known})  # type: ignore[arg-type]


def write(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main(cfg: ChildConfig) -> None:
    runtimes: dict[str, VerifierRuntime] = {}
    jwks = StoreJwks(cfg.database_url)

    async def start(name: str) -> None:
        runtimes[name] = await start_verifier(
            issuer=cfg.issuer,
            audience=cfg.audience,
            nats_url=cfg.nats_url,
            subjects=Subjects(cfg.prefix),
            stream=cfg.stream,
            revocation_addr=cfg.revocation_addr,
            staleness_budget=cfg.budget,
            sync=sync_settings(cfg.sync),
            jwks_source=jwks,
            clock=OffsetClock(cfg.clock_offset) if cfg.clock_offset else None,
            **channel_options(cfg.grpc_default_backoff),
        )

    async def started() -> None:
        await asyncio.gather(*(start(name) for name in cfg.names))
        write({"event": "ready", "t": time.monotonic()})

    watcher: list[Watcher] = []

    async def handle(req: dict[str, Any]) -> dict[str, Any]:
        op = req["op"]
        if op == "watch":
            await booting
            watcher.append(Watcher(runtimes, req["tokens"]))
            return {"results": []}
        if op == "drain":
            return {"results": watcher[0].drain()}
        if op == "probe":
            results = []
            for name in cfg.names:
                rt = runtimes.get(name)
                for i, token in enumerate(req["tokens"]):
                    if rt is None:
                        results.append([name, i, UNAVAILABLE, time.monotonic()])
                    else:
                        outcome, t = await outcome_of(rt.verifier, token)
                        results.append([name, i, outcome, t])
            return {"results": results}
        if op == "status":
            return {
                "verifiers": {
                    name: {
                        "applied_seq": rt.state.applied_seq,
                        "head_seq": rt.state.head_seq,
                        "stale": rt.state.is_stale(),
                        "proof_age": rt.state.proof_age(),
                        "nats": getattr(rt, "nats_connected", None),
                        **feed_counts(rt),
                    }
                    for name, rt in runtimes.items()
                }
            }
        if op == "digest":
            return {
                "digests": {
                    name: [state_digest(rt.state.revocations.entries()), len(rt.state.revocations)]
                    for name, rt in runtimes.items()
                }
            }
        raise ValueError(f"unknown op {op!r}")

    booting = asyncio.create_task(started())
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            req = json.loads(line)
            try:
                answer = await handle(req)
            except Exception as exc:  # report, keep serving
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            write({"id": req["id"], **answer})
    finally:
        for w in watcher:
            w.stop()
        booting.cancel()
        for rt in runtimes.values():
            await rt.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    asyncio.run(main(ChildConfig(**json.loads(sys.argv[1]))))

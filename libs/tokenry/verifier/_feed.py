"""Keeps a verifier's revocation state in step with PostgreSQL (docs/spec.md §4.3,
docs/design.md §4).

Bootstrap: read the stream's last seq L, *then* the snapshots (revocations from
``ListRevocations``, current to outbox seq W; the JWKS, current to a seq ≥ W), start this
instance's own ordered consumer at stream seq L + 1 and drop events whose outbox seq ≤ W.
Every event committed after the snapshot was published after L was read, so nothing falls
between the two; events that are in both are dropped or harmlessly re-applied.

Then every event is applied as it arrives (applying is commutative), and a watchdog looks for
trouble:

- a hole in the outbox seqs that lasts (``gap_grace``), heartbeats announcing a head seq we do
  not reach (``behind_grace``), or a NATS reconnect → resume from the stream just after the
  last contiguously applied event;
- the stream no longer holds that point (purged or aged out), looks reset (its sequence went
  backwards, or it was deleted and made again), or resuming did not help ``max_resumes``
  times → a fresh snapshot, after a random delay (``snapshot_jitter``) so a fleet does not
  stampede the revocation service.

Proof of currency (docs/spec.md §4.4): each heartbeat triggers one question to the revocation
service (``GetHead``, single-flight), dated by this verifier's monotonic clock before it asks; the
watchdog asks too when no heartbeat came for ``prove_interval``. See
:mod:`tokenry.verifier._state`. There is no snapshot-less mode: the stream is an accelerator, not
the record (JetStream can lose acknowledged writes), so a verifier that could not repair a loss
from PostgreSQL would accept revoked tokens without knowing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from tokenry.bus import codec
from tokenry.bus.consumer import EventStream, StreamPosition, Subscription
from tokenry.core.backoff import Backoff, BackoffPolicy
from tokenry.core.clock import Clock, SystemClock
from tokenry.jose import JwksCache
from tokenry.verifier._snapshot import (
    FeedError,
    SnapshotSource,
)
from tokenry.verifier._state import RevocationState

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """How the event feed keeps the revocation state current (``start_verifier(sync=...)``)."""

    #: a hole in the outbox seqs lasting this long is a loss: resume from the stream
    gap_grace: float = 0.5
    #: heartbeats announcing a head we have not applied for this long: resume from the stream
    behind_grace: float = 3.0
    #: how often the watchdog looks
    check_interval: float = 0.25
    #: a new snapshot waits a random 0..jitter seconds first (not the bootstrap one)
    snapshot_jitter: float = 2.0
    #: stream resumes that did not help before a snapshot is taken instead
    max_resumes: int = 2
    #: cap of the retry backoff while the stream, the snapshot or the JWKS is unreachable
    retry_max: float = 5.0
    #: ask for the head on our own when no heartbeat triggered a question for this long
    prove_interval: float = 2.0
    #: how long one head question may take (its answer dates from when it was asked anyway)
    prove_timeout: float = 5.0
    #: a heartbeat's question waits a random 0..jitter seconds first, unless the state is
    #: stale: every verifier gets the same heartbeat at once, and their questions together
    #: stall the revocation service and, 25 to a process, the events behind them
    #: (docs/benchmarks/propagation.md, fan-out). The proof is dated when it asks.
    prove_jitter: float = 0.25


#: The old name ("sync" means synchronous gRPC in this package); kept for one release.
SyncSettings = FeedSettings


class KeysUnavailable(FeedError):
    """The JWKS could not be fetched at a seq covering the revocation snapshot."""


class EventSubscriber:
    """Feeds a :class:`RevocationState` and a :class:`JwksCache` from the event stream."""

    def __init__(
        self,
        *,
        events: EventStream,
        state: RevocationState,
        jwks: JwksCache,
        snapshots: SnapshotSource,
        clock: Clock | None = None,
        settings: SyncSettings | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._events = events
        self._state = state
        self._jwks = jwks
        self._snapshots = snapshots
        self._clock = clock or SystemClock()
        self._settings = settings or SyncSettings()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._sub: Subscription | None = None
        self._hb_sub: Subscription | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # A reconnect is owed to the watchdog; _nap is what it sleeps on (woken by a kick).
        self._kicked = False
        self._nap: asyncio.Future[None] | None = None
        # Outbox seqs up to _cut are covered by the snapshot: their events are dropped.
        self._cut = 0
        # Stream seq of the last event known contiguous: resuming starts right after it.
        self._contig_stream = 0
        # Stream seqs of events applied above a hole (outbox seq -> stream seq).
        self._ahead_pos: dict[int, int] = {}
        self._created: object = None
        self._proving: asyncio.Task[None] | None = None
        self._asked_at = float("-inf")  # monotonic time of the last head question
        self._gap_since: float | None = None
        self._last_recovery = float("-inf")
        self._failed_resumes = 0
        #: full syncs done (the bootstrap is the first); resumes from the stream
        self.snapshots_taken = 0
        self.resumes = 0
        #: called with each applied event's occurred_at (VerifierMetrics: propagation lag)
        self.on_applied: Callable[[float], None] | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self, stop: asyncio.Event | None = None) -> None:
        """Subscribe to heartbeats, bootstrap (retrying until it works), start the watchdog."""
        self._hb_sub = await self._events.subscribe_heartbeats(self._on_heartbeat)
        backoff = Backoff(
            BackoffPolicy(min(0.1, self._settings.retry_max), self._settings.retry_max)
        )
        while True:
            try:
                await self._full_sync()
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if stop is not None and stop.is_set():
                    return
                log.info("verifier bootstrap not possible yet (%s); retrying", _name(exc))
                await asyncio.sleep(backoff.next_delay())
        self._watchdog = asyncio.create_task(self._watch(), name="verifier-sync-watchdog")

    def notify_reconnected(self) -> None:
        """The NATS connection came back: check the stream and resume (called by the runtime)."""
        self._kicked = True
        if self._nap is not None and not self._nap.done():
            self._nap.set_result(None)

    def notify_disconnected(self) -> None:
        """The NATS connection dropped: drop the event subscription now (called by the runtime).

        Left open, nats-py's ordered consumer misses two idle heartbeats every second of the
        outage and each time queues a new consumer (UNSUB, SUB, a create request) in its
        reconnect buffer: 30 creations per verifier after a 30 s outage, all sent when NATS
        returns, each a consumer replaying the backlog, while the server is busiest
        (docs/benchmarks/propagation.md, heal). The reconnect resumes from the stream just
        after the last contiguous event instead, as it always did.
        """
        if self._sub is not None:
            self._spawn(self._unsubscribe())

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        await self._unsubscribe()
        if self._hb_sub is not None:
            await self._hb_sub.close()
        if self._proving is not None:
            self._proving.cancel()
        for task in list(self._tasks):
            task.cancel()

    # --- delivery (hot path) ------------------------------------------------------------------

    def _on_event(self, stream_seq: int, data: bytes) -> None:
        try:
            event = codec.decode(data)
        except codec.UndecodableEvent:
            log.warning("ignored an undecodable message at stream seq %d", stream_seq)
            return
        seq = event.seq
        if seq <= self._cut:
            self._contig_stream = max(self._contig_stream, stream_seq)
            return
        if event.key is not None:
            self._on_key(event.key)
        state = self._state
        state.apply(seq, event.revocation)
        if self.on_applied is not None:
            self.on_applied(event.occurred_at)
        if seq <= state.applied_seq:
            self._contig_stream = max(self._contig_stream, stream_seq)
            if self._ahead_pos:
                self._settle_ahead()
        else:
            self._ahead_pos[seq] = stream_seq

    def _settle_ahead(self) -> None:
        applied = self._state.applied_seq
        for seq in [s for s in self._ahead_pos if s <= applied]:
            self._contig_stream = max(self._contig_stream, self._ahead_pos.pop(seq))

    def _on_heartbeat(self, data: bytes) -> None:
        try:
            head, _sent_at = codec.decode_heartbeat(data)
        except codec.UndecodableEvent:
            return
        # A heartbeat may have waited in a buffer for as long as the outage lasted, and its
        # sent_at is another machine's clock: it proves nothing, it only prompts a question.
        state = self._state
        state.announce(head)
        self._ask_head(spread=not state.is_stale())

    # --- proof of currency --------------------------------------------------------------------

    def _ask_head(self, *, spread: bool = False) -> None:
        """Start one head question unless one is in flight or waiting (a burst of buffered
        heartbeats after a pause or a reconnect asks once); ``spread``: after a random
        0..``prove_jitter`` s, so that a fleet prompted by one heartbeat does not ask at once."""
        if self._proving is None or self._proving.done():
            jitter = self._settings.prove_jitter
            delay = self._rng.uniform(0.0, jitter) if spread and jitter > 0 else 0.0
            self._proving = asyncio.create_task(self._prove(delay), name="verifier-prove")

    async def _prove(self, delay: float = 0.0) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        # Read the clock before asking: the answer covers every commit before this moment.
        asked_at = self._clock.monotonic()
        self._asked_at = asked_at
        try:
            head = await asyncio.wait_for(
                self._snapshots.head(), timeout=self._settings.prove_timeout
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("verifier sync: head question failed (%s)", _name(exc))
            return
        self._state.prove(head, asked_at)

    def _on_key(self, hint: codec.KeyHint) -> None:
        if hint.state == "revoked":
            self._jwks.revoke(hint.kid)  # rejected at once; no fetch needed
            return
        # Refetch off the event path so revocations behind this event are not held up.
        self._spawn(self._jwks.refresh(force=True))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- full sync ----------------------------------------------------------------------------

    async def _full_sync(self) -> None:
        """(Re)start from snapshots."""
        await self._unsubscribe()
        pos = await self._events.position()
        if pos is None:
            raise StreamMissing("the event stream does not exist (yet)")
        self._ahead_pos.clear()
        requested = self._clock.monotonic()
        snap = await self._snapshots.snapshot()
        await self._refresh_keys(snap.seq)
        log.info("revocation snapshot: %d entries, current to seq %d", snap.count, snap.seq)
        # From here on nothing awaits until the swap is done, so no event slips in between.
        self._created = pos.created
        self.snapshots_taken += 1
        self._failed_resumes = 0
        self._gap_since = None
        self._last_recovery = self._clock.monotonic()
        self._cut = snap.seq
        self._contig_stream = pos.last_seq
        self._state.replace(snap.revocations, snap.seq, proven_at=requested)
        self._sub = await self._events.subscribe(pos.last_seq + 1, self._on_event)

    async def _refresh_keys(self, seq: int) -> None:
        """Fetch the JWKS until it is current to ``seq`` or later (a source without seqs, 0,
        is taken as it is)."""
        backoff = Backoff(BackoffPolicy(0.1, 1.6))  # 0.1 s doubling, five tries
        for _ in range(5):
            await self._jwks.refresh(force=True)
            if self._jwks.loaded and (self._jwks.seq >= seq or self._jwks.seq == 0):
                return
            await asyncio.sleep(backoff.next_delay())
        raise KeysUnavailable(f"no JWKS current to seq {seq}")

    async def _unsubscribe(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.close()

    # --- watchdog -----------------------------------------------------------------------------

    async def _watch(self) -> None:
        s = self._settings
        # After a failure: from twice the check interval (at least 0.25 s), doubling to
        # retry_max, each delay drawn in [d/2, d].
        first = min(max(2 * s.check_interval, 0.25), s.retry_max)
        backoff = Backoff(BackoffPolicy(first, s.retry_max, jitter=0.5), self._rng)
        delay = s.check_interval
        reconnect_owed = False
        failing = False
        while True:
            if failing:
                # Back off for real: waiting on the kick would return at once while a
                # reconnect is owed (a hot loop of stream-info requests when the stream is
                # gone, issue 11 finding 4).
                await asyncio.sleep(delay)
            elif not self._kicked:
                await self._sleep_unless_kicked(delay)
            if self._kicked:
                self._kicked = False
                reconnect_owed = True
            try:
                await self.check(reconnected=reconnect_owed)
                reconnect_owed = failing = False
                delay = s.check_interval
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("verifier sync: %s; retrying", _name(exc))
                failing = True
                delay = backoff.next_delay()

    async def _sleep_unless_kicked(self, delay: float) -> None:
        """``delay`` seconds, or until :meth:`notify_reconnected`. One future and one timer:
        ``wait_for(Event.wait())`` made a task, a waiter and a timeout per tick, and a process
        of 25 verifiers ticks 100 times a second (docs/benchmarks/propagation.md, fan-out)."""
        loop = asyncio.get_running_loop()
        nap = self._nap = loop.create_future()
        timer = loop.call_later(delay, _wake, nap)
        try:
            await nap
        finally:
            timer.cancel()
            self._nap = None

    async def check(self, *, reconnected: bool = False) -> None:
        """One watchdog round: look for a gap, a lag or a reconnect, and recover from it."""
        kicked = reconnected
        s = self._settings
        state = self._state
        now = self._clock.monotonic()
        if now - self._asked_at >= s.prove_interval:
            # No heartbeat prompted a question lately (relay down, NATS down, a lost
            # heartbeat): ask anyway. If nothing was committed meanwhile, the state is current.
            self._ask_head()
        if state.has_gap:
            if self._gap_since is None:
                self._gap_since = now
        else:
            self._gap_since = None
        settled = now - self._last_recovery
        reason: str | None = None
        if kicked:
            reason = "reconnect"
        elif self._gap_since is not None and min(now - self._gap_since, settled) >= s.gap_grace:
            reason = "gap"
        elif min(state.behind_for(), settled) >= s.behind_grace:
            reason = "behind"
        if reason is None:
            if not state.has_gap and state.behind_for() == 0.0:
                self._failed_resumes = 0
            return
        await self._recover(reason)

    async def _recover(self, reason: str) -> None:
        # Read our position before asking the stream for its own: events applied while the
        # question is in flight advance _contig_stream past what the answer saw, which looked
        # like a stream gone backwards and sent a fleet to take snapshots after every NATS
        # restart (issue 11).
        contig = self._contig_stream
        pos = await self._events.position()
        if pos is None:
            raise StreamMissing("the event stream is gone")
        why = self._needs_snapshot(pos, contig)
        if (
            why is None
            and reason != "reconnect"
            and self._failed_resumes >= self._settings.max_resumes
        ):
            why = f"{self._failed_resumes} resumes from the stream did not close the {reason}"
        if why is not None:
            await self._resnapshot(why)
            return
        if reason != "reconnect":
            self._failed_resumes += 1
        start = self._contig_stream + 1
        log.info("verifier sync: %s; resuming from stream seq %d", reason, start)
        await self._unsubscribe()
        self._ahead_pos.clear()
        self._sub = await self._events.subscribe(start, self._on_event)
        self.resumes += 1
        self._last_recovery = self._clock.monotonic()

    def _needs_snapshot(self, pos: StreamPosition, contig: int) -> str | None:
        """Why resuming from stream seq ``contig`` + 1 (our position when ``pos`` was asked
        for) cannot work, or None when it can."""
        if self._created is not None and pos.created is not None and pos.created != self._created:
            return "the stream was deleted and made again"
        if pos.last_seq < contig:
            return "the stream's sequence went backwards"
        if pos.lost_after(contig):
            return f"the stream no longer holds seq {contig + 1}"
        return None

    async def _resnapshot(self, why: str) -> None:
        delay = self._rng.uniform(0.0, self._settings.snapshot_jitter)
        log.warning("verifier sync: %s; new snapshot in %.2fs", why, delay)
        await asyncio.sleep(delay)
        await self._full_sync()


class StreamMissing(FeedError):
    """The event stream does not exist (yet): the publisher creates it when it starts."""


def _wake(nap: asyncio.Future[None]) -> None:
    if not nap.done():
        nap.set_result(None)


def _name(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

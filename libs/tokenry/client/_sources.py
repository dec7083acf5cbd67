"""Token sources: a cached access token for every call, refreshed before it expires.

::

    source = TokenSource(IssuerTokenFetcher(issuer_channel, ClientSecretBasic(ID, SECRET),
                                            scope="demo.read", audience=["demo-api"]))
    source = SyncTokenSource(SyncIssuerTokenFetcher(grpc.insecure_channel(ISSUER), auth, ...))

Both flavours run one sans-I/O :class:`~tokenry.client._refresh.RefreshMachine`: after
``refresh_ratio`` of its lifetime one caller refreshes while the others keep using the current
token; past ``usable_until`` (``expires_in`` minus a margin for clock skew and transit) callers
wait for the refresh. There is never more than one fetch in flight (a task in asyncio, a lock
for threads). A failed *early* refresh is logged and retried with backoff while the current
token is still usable; a failed fetch a caller waits for raises the fetcher's error (the
issuer's ``grpc.RpcError``, whose ``OAuthError`` detail says why, e.g. ``invalid_client``).
"""

from __future__ import annotations

import asyncio
import logging
import threading

from tokenry.client._fetchers import SyncTokenFetcher, TokenFetcher
from tokenry.client._refresh import Held, RefreshMachine, RefreshPolicy, Step
from tokenry.core.clock import Clock, SystemClock

__all__ = ["SyncTokenSource", "TokenSource"]

log = logging.getLogger(__name__)


def _log_early_failure(exc: BaseException) -> None:
    log.warning("early token refresh failed (%s); using the current token", type(exc).__name__)


class TokenSource:
    """A cached access token for asyncio code; one refresh in flight at most."""

    def __init__(
        self,
        fetcher: TokenFetcher,
        *,
        policy: RefreshPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._fetcher = fetcher
        self._machine = RefreshMachine(policy)
        self._clock = clock or SystemClock()
        self._inflight: asyncio.Task[Held] | None = None

    @property
    def fetches(self) -> int:
        """Fetches started."""
        return self._machine.fetches

    async def token(self) -> str:
        """A usable access token: the cached one, or a fresh one when it is (nearly) expired."""
        machine = self._machine
        held = machine.held
        step = machine.step(held, self._clock.monotonic())
        if held is not None and step is not Step.FETCH:
            if step is Step.REFRESH_EARLY:
                self._start().add_done_callback(self._early_refresh_done)
            return held.value
        task = self._inflight or self._start()
        return (await asyncio.shield(task)).value

    def invalidate(self, token: str) -> None:
        """The server refused ``token``: the next :meth:`token` call fetches a new one.

        A no-op if another caller already replaced it, so a burst of refusals causes one fetch.
        """
        self._machine.invalidate(token)

    def _start(self) -> asyncio.Task[Held]:
        # Marked in flight before the task first runs, so no other caller starts a second one.
        started = self._machine.fetch_started(self._clock.monotonic())
        task = asyncio.create_task(self._fetch(started))
        self._inflight = task
        return task

    async def _fetch(self, started: float) -> Held:
        machine = self._machine
        try:
            issued = await self._fetcher.fetch()
        except BaseException:
            machine.fetch_failed(self._clock.monotonic())
            raise
        finally:
            if self._inflight is asyncio.current_task():
                self._inflight = None
        return machine.fetched(issued, started)

    @staticmethod
    def _early_refresh_done(task: asyncio.Task[Held]) -> None:
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                _log_early_failure(exc)


class SyncTokenSource:
    """A cached access token for threads; one refresh in flight at most."""

    def __init__(
        self,
        fetcher: SyncTokenFetcher,
        *,
        policy: RefreshPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._fetcher = fetcher
        self._machine = RefreshMachine(policy)
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()

    @property
    def fetches(self) -> int:
        """Fetches started."""
        return self._machine.fetches

    def token(self) -> str:
        """A usable access token; blocks only when there is none (or it is nearly expired)."""
        machine = self._machine
        held = machine.held
        step = machine.step(held, self._clock.monotonic())
        if held is not None and step is not Step.FETCH:
            # One thread refreshes early; the others keep using the current token.
            if step is Step.REFRESH_EARLY and self._lock.acquire(blocking=False):
                try:
                    if machine.held is held:
                        return self._fetch_locked().value
                except Exception as exc:
                    _log_early_failure(exc)
                finally:
                    self._lock.release()
            current = machine.held
            return current.value if current is not None else held.value
        with self._lock:
            held = machine.held
            if held is not None and self._clock.monotonic() < held.usable_until:
                return held.value  # another thread refreshed while this one waited
            return self._fetch_locked().value

    def invalidate(self, token: str) -> None:
        """The server refused ``token``: the next :meth:`token` call fetches a new one."""
        with self._lock:
            self._machine.invalidate(token)

    def _fetch_locked(self) -> Held:
        machine = self._machine
        started = machine.fetch_started(self._clock.monotonic())
        try:
            issued = self._fetcher.fetch()
        except BaseException:
            machine.fetch_failed(self._clock.monotonic())
            raise
        return machine.fetched(issued, started)

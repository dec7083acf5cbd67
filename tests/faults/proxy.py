"""A TCP fault proxy, pure asyncio (the adversity proxy of asyncpg's tests, with more faults).

Clients connect to ``127.0.0.1:proxy.port``; each connection is forwarded to the target, a TCP
``(host, port)`` or a Unix socket path (the embedded PostgreSQL listens on a Unix socket only).
Faults apply to every connection, present and future, until :meth:`FaultProxy.heal`:

- :meth:`~FaultProxy.blackhole`: nothing is forwarded in either direction and nothing is
  closed (no FIN, no RST), like a partition that drops packets. Bytes already read are held
  and delivered after the heal, as TCP retransmission would; new connections are accepted
  but never reach the target.
- :meth:`~FaultProxy.reset`: every open connection is closed with an RST (SO_LINGER 0); with
  ``refuse=True`` new connections are reset too until the heal.
  :meth:`~FaultProxy.heal_after_next_refusal` heals right after the next refused connection
  (so a client's next attempt comes after exactly one more of its reconnect backoffs);
  ``refused`` records when each connection was refused.
- :meth:`~FaultProxy.latency`: each chunk is delivered ``seconds`` after it was read, in order.
- :meth:`~FaultProxy.cut_after_commit`: PostgreSQL only, once: the first connection that sends
  ``marker`` and then a COMMIT has the COMMIT forwarded and PostgreSQL's answer dropped, and
  is reset: the transaction committed and the client never learns it.
- :meth:`~FaultProxy.hold_after`: once: the first connection that sends ``marker`` has that
  chunk forwarded, then nothing more either way (a client stopped inside a transaction);
  when either side closes, the other is closed (PostgreSQL rolls back).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

Target = tuple[str, int] | str

_CHUNK = 65536


@dataclass(eq=False)
class _Link:
    """One proxied connection: the client side and the target side."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    marked: bool = False  # sent the commit-cut marker
    committing: bool = False  # then sent COMMIT: drop whatever comes back
    held: bool = False  # hold_after matched: forward nothing more

    def writers(self) -> Iterator[asyncio.StreamWriter]:
        yield self.client
        if self.upstream is not None:
            yield self.upstream


def rst(writer: asyncio.StreamWriter) -> None:
    """Close a connection with an RST instead of a FIN (SO_LINGER on, timeout 0)."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """A forwarder whose links can be blackholed, reset or slowed down, then healed."""

    def __init__(self, target: Target) -> None:
        self._target = target
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._refuse = False
        self._delay = 0.0
        self._commit_marker: bytes | None = None
        self._hold_marker: bytes | None = None
        #: set when hold_after has matched a connection
        self.holding = asyncio.Event()
        #: set when cut_after_commit has cut a connection
        self.commit_cut = asyncio.Event()
        self.port = 0
        #: connections accepted so far (tests of the proxy and of reconnects)
        self.accepted = 0
        #: monotonic times of the connections reset on arrival (a client's reconnect attempts)
        self.refused: list[float] = []
        self._heal_on_refusal = False
        #: set by the heal that heal_after_next_refusal armed; ``healed_at`` says when
        self.healed = asyncio.Event()
        self.healed_at: float | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def nats_url(self) -> str:
        return f"nats://{self.addr}"

    def pg_dsn(self, database: str) -> str:
        """An asyncpg URL for ``database`` through the proxy (trust auth, as on the socket)."""
        return f"postgresql://postgres@{self.addr}/{database}"

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        self.heal()
        for link in list(self._links):
            self._drop(link, reset=False)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # --- faults -------------------------------------------------------------------------------

    def blackhole(self) -> None:
        self._flowing.clear()

    def reset(self, *, refuse: bool = False) -> None:
        self._refuse = refuse
        for link in list(self._links):
            self._drop(link, reset=True)

    def heal_after_next_refusal(self) -> None:
        """Refuse the next connection as well, then heal: a client in reconnect backoff only
        comes back after its next backoff delay (the delay under test), never by chance right
        after the heal. Without ``reset(refuse=True)`` in force this heals at once."""
        self.healed.clear()
        if not self._refuse:
            self._healed_now()
            return
        self._heal_on_refusal = True

    def _healed_now(self) -> None:
        self.heal()
        self.healed_at = time.monotonic()
        self.healed.set()

    def latency(self, seconds: float) -> None:
        self._delay = seconds

    def cut_after_commit(self, marker: bytes) -> None:
        """Arm the one-shot commit cut (see the module docstring)."""
        self.commit_cut.clear()
        self._commit_marker = marker

    def hold_after(self, marker: bytes) -> None:
        """Arm the one-shot hold (see the module docstring)."""
        self.holding.clear()
        self._hold_marker = marker

    def heal(self) -> None:
        self._heal_on_refusal = False
        self._refuse = False
        self._delay = 0.0
        self._flowing.set()

    @property
    def open_links(self) -> int:
        return len(self._links)

    # --- forwarding ---------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._refuse:
            self.refused.append(time.monotonic())
            rst(writer)
            if self._heal_on_refusal:
                self._healed_now()
            return
        link = _Link(writer)
        self._links.add(link)
        try:
            await self._flowing.wait()  # blackholed: accepted, never connected onwards
            if isinstance(self._target, str):
                up_reader, up_writer = await asyncio.open_unix_connection(self._target)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            self._drop(link, reset=True)
            return
        if link not in self._links:  # reset while connecting
            rst(up_writer)
            return
        link.upstream = up_writer
        link.tasks = [
            asyncio.create_task(self._pipe(link, reader, up_writer, upstream=True)),
            asyncio.create_task(self._pipe(link, up_reader, writer, upstream=False)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        self._drop(link, reset=False)

    async def _pipe(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        upstream: bool,
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue()

        async def read() -> None:
            while True:
                await self._flowing.wait()
                try:
                    data: bytes | None = await reader.read(_CHUNK)
                except OSError:
                    data = None  # reset by the peer: reset the other side too
                await queue.put((time.monotonic(), data))
                if not data:
                    return

        reading = asyncio.create_task(read())
        try:
            while True:
                read_at, data = await queue.get()
                if self._delay:
                    await asyncio.sleep(max(0.0, read_at + self._delay - time.monotonic()))
                await self._flowing.wait()  # hold what was read until the heal
                if data is None:
                    self._drop(link, reset=True)
                    return
                if link.held:
                    if not data:
                        self._drop(link, reset=False)
                        return
                    continue
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                if upstream and (marker := self._commit_marker) is not None:
                    link.marked = link.marked or marker in data
                    if link.marked and b"COMMIT" in data:
                        self._commit_marker = None
                        link.committing = True
                elif not upstream and link.committing:
                    self._drop(link, reset=True)  # the answer to COMMIT: never delivered
                    self.commit_cut.set()
                    return
                writer.write(data)
                await writer.drain()
                if upstream and (hold := self._hold_marker) is not None and hold in data:
                    self._hold_marker = None
                    link.held = True
                    self.holding.set()
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reading

    def _drop(self, link: _Link, *, reset: bool) -> None:
        if link not in self._links:
            return
        self._links.discard(link)
        for task in link.tasks:
            task.cancel()
        for writer in link.writers():
            if reset:
                rst(writer)
            else:
                writer.close()

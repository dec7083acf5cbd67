"""The fault proxy itself, at the socket level, against a local echo server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from proxy import FaultProxy


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def echo_proxy(unix: Path | None = None) -> AsyncIterator[FaultProxy]:
    if unix is None:
        server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        target: tuple[str, int] | str = ("127.0.0.1", server.sockets[0].getsockname()[1])
    else:
        server = await asyncio.start_unix_server(_echo, str(unix))
        target = str(unix)
    proxy = await FaultProxy(target).start()
    try:
        yield proxy
    finally:
        await proxy.close()
        server.close()


async def _connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def test_forwards_both_ways_to_tcp_and_unix_targets(tmp_path: Path) -> None:
    for unix in (None, tmp_path / "echo.sock"):
        async with echo_proxy(unix) as proxy:
            reader, writer = await _connect(proxy)
            writer.write(b"hello")
            assert await asyncio.wait_for(reader.readexactly(5), 5) == b"hello"
            writer.close()


async def test_blackhole_holds_bytes_without_closing_then_heals() -> None:
    async with echo_proxy() as proxy:
        reader, writer = await _connect(proxy)
        writer.write(b"one")
        assert await asyncio.wait_for(reader.readexactly(3), 5) == b"one"
        proxy.blackhole()
        writer.write(b"two")
        await writer.drain()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(3), 0.5)
        assert not reader.at_eof()  # no FIN, no RST: the peer cannot tell
        # A new connection is accepted but reaches nothing.
        reader2, writer2 = await _connect(proxy)
        writer2.write(b"new")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader2.readexactly(3), 0.5)
        proxy.heal()
        assert await asyncio.wait_for(reader.readexactly(3), 5) == b"two"
        assert await asyncio.wait_for(reader2.readexactly(3), 5) == b"new"
        writer.close()
        writer2.close()


async def test_reset_sends_rst_and_refuses_until_healed() -> None:
    async with echo_proxy() as proxy:
        reader, writer = await _connect(proxy)
        writer.write(b"x")
        await asyncio.wait_for(reader.readexactly(1), 5)
        proxy.reset(refuse=True)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(1), 5)
        reader, writer = await _connect(proxy)
        writer.write(b"y")
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), 5)
        proxy.heal()
        reader, writer = await _connect(proxy)
        writer.write(b"z")
        assert await asyncio.wait_for(reader.readexactly(1), 5) == b"z"
        writer.close()


async def test_latency_delays_each_chunk_in_order() -> None:
    async with echo_proxy() as proxy:
        reader, writer = await _connect(proxy)
        proxy.latency(0.2)
        started = time.monotonic()
        for chunk in (b"a", b"b", b"c"):
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.01)
        assert await asyncio.wait_for(reader.readexactly(3), 5) == b"abc"
        elapsed = time.monotonic() - started
        print(f"\nround trip through 2 × 0.2 s of latency: {elapsed:.3f}s")
        assert elapsed >= 0.4  # each direction delays: a lower bound, not a performance claim
        proxy.heal()
        writer.write(b"d")
        assert await asyncio.wait_for(reader.readexactly(1), 5) == b"d"
        writer.close()

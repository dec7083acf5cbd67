"""The entry point every service's ``__main__`` calls.

``--workers N`` (or ``TOKENRY_WORKERS``) runs N processes that share the port (SO_REUSEPORT is
set on every server), one event loop each, to use every core: the supervisor re-executes the
same module for workers 2..N (a fresh interpreter, never a fork of a process that already holds
gRPC or asyncio state) and forwards SIGTERM/SIGINT to them. SO_REUSEPORT spreads connections,
not requests: clients need several connections to use several workers.

``TOKENRY_EVENT_LOOP=uvloop`` runs the service on uvloop instead of asyncio's own loop: the
same code, 7–10 % more calls per core (docs/benchmarks); the default is ``asyncio``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from tokenry.servicekit import config
from tokenry.servicekit import logging as jsonlog
from tokenry.servicekit.server import Service, run

Build = Callable[[config.Settings, str, int], Service]
WORKER_ENV = "TOKENRY_WORKER_INDEX"
EVENT_LOOPS = ("asyncio", "uvloop")


def _event_loop() -> str:
    chosen = os.environ.get("TOKENRY_EVENT_LOOP", "") or "asyncio"
    if chosen not in EVENT_LOOPS:
        raise config.ConfigError(f"TOKENRY_EVENT_LOOP must be one of {', '.join(EVENT_LOOPS)}")
    if chosen == "uvloop":
        try:
            import uvloop  # noqa: F401 - only when asked for
        except ImportError:
            raise config.ConfigError(
                "TOKENRY_EVENT_LOOP=uvloop but uvloop is not installed"
            ) from None
    return chosen


def _run(main: Coroutine[Any, Any, None], loop: str) -> None:
    if loop == "uvloop":
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)


def _parse_args(name: str, argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m tokenry.services.{name}",
        description=f"Tokenry {name} (configured by TOKENRY_* environment variables)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("TOKENRY_WORKERS", "1") or 1),
        help="processes sharing the port (default 1)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= 64:
        parser.error("--workers must be between 1 and 64")
    return int(args.workers)


def _spawn_workers(name: str, count: int) -> list[subprocess.Popen[bytes]]:
    children = []
    for index in range(1, count):
        env = {**os.environ, WORKER_ENV: str(index), "TOKENRY_WORKERS": "1"}
        cmd = [sys.executable, "-m", f"tokenry.services.{name}"]
        children.append(subprocess.Popen(cmd, env=env))  # noqa: S603 - our own module
    return children


def main(
    name: str,
    build: Build,
    service_names: Sequence[str],
    *,
    need_kek: bool = False,
    argv: Sequence[str] | None = None,
) -> None:
    workers = _parse_args(name, argv)
    try:
        settings = config.load(need_kek=need_kek)
        host, port = config.listen_addr(name)
        loop = _event_loop()
    except config.ConfigError as exc:
        print(f"tokenry-{name}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    jsonlog.configure(name, settings.log_level)
    if settings.dev and WORKER_ENV not in os.environ:
        print(
            f"tokenry-{name}: DEV MODE — human-chosen secrets and plaintext loopback accepted",
            file=sys.stderr,
        )
    children = _spawn_workers(name, workers) if workers > 1 else []

    async def serve() -> None:
        service = build(settings, host, port)
        await run(service, service_names=service_names)

    try:
        _run(serve(), loop)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()

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
from typing import Any, NoReturn

from tokenry.servicekit import config, tls
from tokenry.servicekit import logging as jsonlog
from tokenry.servicekit import telemetry as otel
from tokenry.servicekit import variables as v
from tokenry.servicekit.server import Service, run

Build = Callable[[config.Settings, str, int], Service]
#: a service's own settings, read after the shared ones into the same reader (so every bad
#: value of every kind is reported at once)
Options = Callable[[config.Reader, config.Settings], object]
WORKER_ENV = "TOKENRY_WORKER_INDEX"
EVENT_LOOPS = v.EVENT_LOOPS


def _event_loop(reader: config.Reader) -> str:
    chosen = reader.get(v.EVENT_LOOP)
    if chosen == "uvloop":
        try:
            import uvloop  # noqa: F401 - only when asked for
        except ImportError:
            reader.problem("TOKENRY_EVENT_LOOP=uvloop but uvloop is not installed")
    return chosen


def _telemetry_settings(reader: config.Reader, name: str) -> otel.TelemetrySettings | None:
    """The OTEL_* variables and TOKENRY_METRICS_LISTEN, checked with the rest."""
    try:
        return otel.read_settings(
            name,
            worker=int(os.environ.get(WORKER_ENV, "0") or 0),
            metrics_listen=reader.get(v.METRICS_LISTEN),
        )
    except otel.TelemetryError as exc:
        reader.problem(str(exc))
        return None


def _start_telemetry(name: str, settings: otel.TelemetrySettings | None) -> otel.Telemetry:
    assert settings is not None  # a bad value stopped main() before this
    try:
        return otel.configure(settings)
    except OSError:
        where = settings.metrics_listen or ("", 0)
        print(
            f"tokenry-{name}: configuration error: cannot serve metrics on "
            f"{where[0]}:{where[1]} (in use?); set {v.METRICS_LISTEN.name}",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


def _run(main: Coroutine[Any, Any, None], loop: str) -> None:
    if loop == "uvloop":
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)


class _CannotListen(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, exit code 2 (docs/spec.md §6)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parse_args(name: str, argv: Sequence[str] | None) -> int | None:
    parser = _Parser(
        prog=f"python -m tokenry.services.{name}",
        description=f"Tokenry {name}, configured by TOKENRY_* environment variables "
        "(docs/operations.md lists them all). Exit codes: 0 stopped cleanly, 2 configuration "
        "error.",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="processes sharing the port, 1-64 (default: TOKENRY_WORKERS or 1)",
    )
    args = parser.parse_args(argv)
    if args.workers is not None and not 1 <= args.workers <= 64:
        parser.error("--workers must be between 1 and 64")
    return None if args.workers is None else int(args.workers)


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
    options: Options | None = None,
    argv: Sequence[str] | None = None,
) -> None:
    """Read and check the whole configuration, then run the service (and its workers).

    Every bad value is printed at once, one line each, and the process exits 2 before
    anything starts.
    """
    workers_flag = _parse_args(name, argv)
    reader = config.Reader()
    settings = config.read(reader, need_kek=need_kek)
    host, port = config.read_listen(reader, name)
    tls.check_listener(reader, settings.tls, host, port, v.LISTEN[name].name, dev=settings.dev)
    tls.check_database_url(reader, settings.database_url, dev=settings.dev)
    workers = reader.get(v.WORKERS) if workers_flag is None else workers_flag
    loop = _event_loop(reader)
    telemetry_settings = _telemetry_settings(reader, name)
    if options is not None:
        options(reader, settings)
    if reader.problems:
        for problem in reader.problems:
            print(f"tokenry-{name}: configuration error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    # With --workers every line says which process wrote it (0 = the supervisor's own).
    index = os.environ.get(WORKER_ENV)
    worker = int(index) if index else (0 if workers > 1 else None)
    jsonlog.configure(name, settings.log_level, worker=worker)
    if settings.dev and WORKER_ENV not in os.environ:
        print(
            f"tokenry-{name}: DEV MODE — human-chosen secrets accepted"
            + ("" if settings.tls.server else "; PLAINTEXT listener (no TLS)"),
            file=sys.stderr,
        )
    children = _spawn_workers(name, workers) if workers > 1 else []
    # The SDK is set up here, in each process (workers re-run main), never inherited.
    telemetry = _start_telemetry(name, telemetry_settings)

    async def serve() -> None:
        try:
            service = build(settings, host, port)
        except RuntimeError as exc:  # grpc's only signal that the port is taken
            if "Failed to bind" not in str(exc):
                raise
            raise _CannotListen from None
        await run(service, service_names=service_names)

    try:
        _run(serve(), loop)
    except _CannotListen:
        print(
            f"tokenry-{name}: configuration error: cannot listen on {host}:{port} (in use?);"
            f" set {v.LISTEN[name].name}",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        pass
    finally:
        telemetry.shutdown()  # flush spans and metrics (docs/design.md §2)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()

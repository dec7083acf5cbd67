"""What the benchmark scripts share (no benchmark here): a pepper and the clients of a fresh
database, stopping what a run started, and writing its results where the docs/benchmarks pages
read them.

Tokenry is imported only inside the functions that need it: a script's in-run ceilings (the
bare echo servers) import this module too and must stay as lean as they are."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from tokenry.core.client_secrets import Pepper
    from tokenry.core.clients import Client


class _Server(Protocol):
    def stop(self) -> None: ...


def new_pepper() -> tuple[str, Pepper]:
    """A random pepper: its text (for ``TOKENRY_SECRET_PEPPER``) and the :class:`Pepper` the
    services make of it."""
    from tokenry.core.client_secrets import Pepper, pepper_id

    text = secrets.token_urlsafe(32)
    return text, Pepper(pepper_id(text.encode()), text.encode())


async def register(dsn: str, clients: Iterable[Client]) -> None:
    """Migrate the database at ``dsn``, then register ``clients`` in it (as ``tokenry dev``
    does)."""
    from tokenry.devstack.stack import prepare_database

    await prepare_database(dsn, clients)


def service_env(
    dsn: str, nats_url: str, pepper_text: str, extra: dict[str, str], *, keep_otel: bool = True
) -> dict[str, str]:
    """A benchmarked service's environment: this one's (less ``OTEL_*`` unless ``keep_otel``),
    dev mode, the run's PostgreSQL, NATS and pepper, the bench issuer URL, warnings only; then
    ``extra`` (listen addresses, the KEK, tuning)."""
    inherited = {k: v for k, v in os.environ.items() if keep_otel or not k.startswith("OTEL_")}
    return {
        **inherited,
        "TOKENRY_DEV": "1",
        "TOKENRY_DATABASE_URL": dsn,
        "TOKENRY_NATS_URL": nats_url,
        "TOKENRY_SECRET_PEPPER": pepper_text,
        "TOKENRY_ISSUER_URL": "https://issuer.bench",
        "TOKENRY_LOG_LEVEL": "WARNING",
        **extra,
    }


def stop_processes(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
    """SIGTERM each, newest first (graceful: cProfile writes its stats), then wait up to
    ``timeout`` s for each and kill what is still running."""
    for proc in reversed(procs):
        proc.terminate()
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
        if proc.poll() is None:
            proc.kill()


def stop_stack(
    procs: Sequence[subprocess.Popen[bytes]],
    nats: _Server,
    pg: _Server,
    tmp: Path,
    timeout: float = 10.0,
) -> None:
    """:func:`stop_processes`, then the embedded NATS and PostgreSQL, then their folder."""
    stop_processes(procs, timeout)
    nats.stop()
    pg.stop()
    shutil.rmtree(tmp, ignore_errors=True)


def write_results(
    out: Path, name: str, results: dict[str, Any], plot: Callable[[Path], bool]
) -> None:
    """``name``.json (the raw samples) under ``out``, and ``name``.png when ``plot`` can draw
    it (matplotlib is optional); says where both went."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=1))
    plotted = plot(out / f"{name}.png")
    print(f"\nraw samples: {out / f'{name}.json'}")
    print(f"plot: {out / f'{name}.png'}" if plotted else "plot: skipped (no matplotlib)")


def machine(server_core: int, client_cores: list[int] | None = None) -> dict[str, Any]:
    """What a run's JSON records of the machine: platform, Python, grpcio, cores, and where the
    pinned server and (when given) the load generator ran."""
    import platform
    import sys

    import grpc

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "grpc": grpc.__version__,
        "cpus": os.cpu_count(),
        "server_core": server_core,
    }
    if client_cores is not None:
        info["client_cores"] = client_cores
    return info

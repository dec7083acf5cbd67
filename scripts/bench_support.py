"""What the benchmark scripts share (no benchmark here): stopping what a run started, and
writing its results where the docs/benchmarks pages read them."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol


class _Server(Protocol):
    def stop(self) -> None: ...


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

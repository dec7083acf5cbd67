"""`tokenry bench …`: run the benchmarks of docs/spec.md §8 from a source checkout.

The benchmark scripts live in ``scripts/bench_<name>.py`` (they start their own servers and pin
processes with taskset); each prints a table, saves raw samples as JSON and a PNG plot under
docs/benchmarks/. They measure ratios against a baseline taken in the same run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from tokenry.cli.common import USAGE, fail


def _scripts() -> dict[str, Path]:
    folder = Path.cwd() / "scripts"
    return {p.stem.removeprefix("bench_"): p for p in sorted(folder.glob("bench_*.py"))}


def bench(
    name: Annotated[str, typer.Argument(help="A benchmark name, or 'all'")] = "all",
    args: Annotated[list[str] | None, typer.Argument(help="Passed to the script")] = None,
) -> None:
    """Run a benchmark from a source checkout (`tokenry bench list` shows them; docs/benchmarks).

    Exit codes: 0 done, 1 a benchmark failed, 2 not in a checkout or an unknown name.
    """
    scripts = _scripts()
    if not scripts:
        raise fail(
            "no scripts/bench_*.py here: run `tokenry bench` from a Tokenry source checkout", USAGE
        )
    if name == "list":
        typer.echo("\n".join(scripts))
        return
    chosen = list(scripts.values()) if name == "all" else [scripts.get(name)]
    if None in chosen:
        raise fail(f"unknown benchmark {name!r}; choose one of: {', '.join(scripts)}, all", USAGE)
    for script in chosen:
        assert script is not None
        typer.echo(f"== {script.stem}", err=True)
        result = subprocess.run([sys.executable, str(script), *(args or [])], check=False)  # noqa: S603
        if result.returncode != 0:
            raise fail(f"{script.name} failed with exit code {result.returncode}")

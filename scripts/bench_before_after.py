"""Before/after runs of the throughput benchmarks (docs/spec.md §8), interleaved in one run.

Each side is a git commit checked out as a detached worktree in a temporary folder (removed at
the end) and runs **its own** ``scripts/bench_<name>.py`` against its own code: a link tree
rebuilds the installed layout (``tokenry`` = ``libs/tokenry``, ``tokenry.services`` =
``services``, as pyproject.toml's package-dir maps them) and goes first on ``PYTHONPATH``, so
the bench process and every service it starts import that commit's code; the venv's
dependencies are shared. Every invocation starts fresh PostgreSQL and NATS (the bench scripts do).

The sides alternate within a round and the order flips each round (A B, B A, A B, ...), so a
slow drift of the shared machine's load falls on both. The figures compared are the ratios each
run reports against its own in-run echo server (docs/spec.md §8 states its targets that way);
absolute rates are printed for reference only. For each figure: the median over rounds of each
side, its range, after/before of the medians, and the median of the per-round after/before
ratios (the paired sides of one round ran within a minute of each other).

``--instructions`` measures instead what a shared machine cannot blur: the issuer's executed
instructions per JWT (valgrind's callgrind on the issuer process only, counting zeroed after a
warm-up, a fixed-length load at c = 32 then c = 1 from the side's own ``bench_issuance`` load
generator). Wall-clock CPU time per call is no such measure here: on a shared VM a stolen or
cache-thrashed core is billed to the process, and one side's own runs spread by 30 %.

Run: ``.venv/bin/python scripts/bench_before_after.py --before d3edb4a --after HEAD``
(``--rounds 5 --seconds 2`` by default; ``--bench issuance --bench introspection``).
Writes the raw per-run summaries and the comparison to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# (figure name, bench, concurrency, kind, field, higher is better, docs/spec.md §8 target)
Figure = tuple[str, str, int, str, str, bool, str]
FIGURES: tuple[Figure, ...] = (
    ("issuance JWT ÷ ceiling, c=32", "issuance", 32, "jwt/sign", "rate", True, ">= 0.9"),
    ("issuance JWT ÷ echo, c=32", "issuance", 32, "jwt", "vs_echo", True, ""),
    ("issuance JWT p99/p50, c=32", "issuance", 32, "jwt", "p99_over_p50", False, "<= 3"),
    ("issuance opaque ÷ echo, c=32", "issuance", 32, "opaque", "vs_echo", True, ""),
    ("ceiling (echo + 1 ES256 sig) ÷ echo, c=32", "issuance", 32, "sign", "vs_echo", True, ""),
    ("issuance JWT ÷ echo, c=1", "issuance", 1, "jwt", "vs_echo", True, ""),
    ("issuer CPU µs per JWT, c=32", "issuance", 32, "jwt", "server_cpu_us_per_call", False, ""),
    ("issuer CPU µs per JWT, c=1", "issuance", 1, "jwt", "server_cpu_us_per_call", False, ""),
    ("echo calls/s, c=32 (issuance run)", "issuance", 32, "echo", "rate", True, ""),
    ("introspection warm ÷ echo, c=32", "introspection", 32, "warm", "vs_echo", True, ">= 0.85"),
    ("introspection cold ÷ echo, c=32", "introspection", 32, "cold", "vs_echo", True, ">= 0.55"),
    ("introspect. warm p99/p50, c=32", "introspection", 32, "warm", "p99_over_p50", False, "<= 3"),
    ("introspect. cold p99/p50, c=32", "introspection", 32, "cold", "p99_over_p50", False, "<= 3"),
    ("introspection warm ÷ echo, c=1", "introspection", 1, "warm", "vs_echo", True, ""),
    ("introspector CPU µs per warm call, c=32", "introspection", 32, "warm",
     "server_cpu_us_per_call", False, ""),
    ("echo calls/s, c=32 (introspection run)", "introspection", 32, "echo", "rate", True, ""),
)  # fmt: skip
TOLERANCE = 0.02  # issue 12's acceptance: each figure within 2 % of before


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@contextlib.contextmanager
def worktree(commit: str, where: Path) -> Iterator[Path]:
    """A detached checkout of ``commit`` at ``where``, removed afterwards."""
    git("worktree", "add", "--detach", "--quiet", str(where), commit)
    try:
        yield where
    finally:
        git("worktree", "remove", "--force", str(where))


def link_tree(tree: Path, where: Path) -> Path:
    """A folder whose ``tokenry`` package is ``tree``'s code laid out as installed."""
    package = where / "tokenry"
    package.mkdir(parents=True)
    for child in (tree / "libs" / "tokenry").iterdir():
        (package / child.name).symlink_to(child)
    (package / "services").symlink_to(tree / "services")
    return where


def run_bench(tree: Path, path: Path, bench: str, seconds: float, out: Path) -> dict[str, Any]:
    """One invocation of ``tree``'s own bench script (one round, fresh services); its summary."""
    command = [sys.executable, str(tree / "scripts" / f"bench_{bench}.py")]
    command += ["--rounds", "1", "--seconds", str(seconds), "--out", str(out)]
    if bench == "introspection":
        command += ["--window", "0"]  # the throughput runs only, not the revocation window
    env = {**os.environ, "PYTHONPATH": str(path)}
    load_before = os.getloadavg()
    started = time.monotonic()
    done = subprocess.run(command, check=False, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{tree.name} bench_{bench} failed:\n{done.stderr[-3000:]}")
    result = json.loads((out / f"{bench}.json").read_text())
    return {
        "wall_s": round(time.monotonic() - started, 1),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "summary": result["summary"],
    }


def instructions_side(tree: Path, outdir: Path, seconds: float) -> None:
    """Run in the side's PYTHONPATH: its bench_issuance stack with the issuer under callgrind;
    prints one JSON line per concurrency with the issuer's instructions per JWT."""
    import asyncio
    import base64
    import importlib.util
    import types

    import psutil

    spec = importlib.util.spec_from_file_location("side_bench", tree / "scripts/bench_issuance.py")
    assert spec is not None
    assert spec.loader is not None
    bench: Any = importlib.util.module_from_spec(spec)
    sys.modules["side_bench"] = bench  # dataclasses look their module up
    spec.loader.exec_module(bench)
    real_popen = subprocess.Popen

    def popen(cmd: list[str], *args: Any, **kwargs: Any) -> Any:
        if "tokenry.services.issuer" in cmd:  # only the issuer runs under valgrind
            at = cmd.index(sys.executable)
            grind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
            grind.append(f"--callgrind-out-file={outdir}/callgrind.%p")
            cmd = [*cmd[:at], *grind, *cmd[at:]]
        return real_popen(cmd, *args, **kwargs)

    shim = {k: getattr(subprocess, k) for k in dir(subprocess) if not k.startswith("__")}
    bench.subprocess = types.SimpleNamespace(**{**shim, "Popen": popen})
    wait_port = bench._wait_port
    # valgrind starts the issuer many times slower than 60 s allows
    bench._wait_port = lambda addr, proc, _timeout=60.0, **kw: wait_port(addr, proc, 900.0, **kw)
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, cores[1:] or cores)

    def control(pid: int, *args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)

    with bench.stack(cores[0], reply_size=700) as st:
        pid = st.issuer.pid  # taskset execs valgrind: same process
        basic = base64.b64encode(f"{bench.CLIENT_ID}:{st.secret}".encode()).decode()
        metadata = (("authorization", f"Basic {basic}"),)
        request, proc = bench._token_request("jwt"), psutil.Process(pid)
        control(pid, "-i", "on")

        def load(concurrency: int, length: float) -> Any:
            method = "/tokenry.v1.Issuer/Token"
            args = (st.issuer_addr, method, request, metadata, concurrency, length, proc, "jwt")
            return asyncio.run(bench._load(*args))

        for concurrency in (32, 1):
            load(concurrency, 3)  # warm-up, not counted
            control(pid, "-z")
            sample = load(concurrency, seconds)
            dumps = set(outdir.glob("callgrind.*"))
            control(pid, "-d")
            dump = _new_file(outdir, dumps)
            lines = dump.read_text().splitlines()
            totals = [x for x in lines if x.startswith(("summary:", "totals:"))]
            calls = sample.calls + bench.CHANNELS * 20  # _load's warm-up calls count too
            result = {"concurrency": concurrency, "calls": calls, "errors": sample.errors}
            result["instructions_per_jwt"] = int(totals[0].split()[1]) / calls
            print(json.dumps(result), flush=True)


def _new_file(folder: Path, before: set[Path], timeout: float = 60.0) -> Path:
    """The one file that appears in ``folder`` (callgrind writes its dump asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = set(folder.glob("callgrind.*")) - before
        if new:
            time.sleep(1.0)  # let the writer finish
            return new.pop()
        time.sleep(0.2)
    raise TimeoutError(f"no callgrind dump in {folder}")


def run_instructions(tree: Path, path: Path, seconds: float, out: Path) -> list[dict[str, Any]]:
    """One side's instructions per JWT at c = 32 and c = 1 (see instructions_side)."""
    out.mkdir(parents=True)
    command = [sys.executable, __file__, "--instructions-side", str(tree), str(out), str(seconds)]
    env = {**os.environ, "PYTHONPATH": str(path)}
    done = subprocess.run(command, check=False, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{tree.name} instructions failed:\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def imported_from(path: Path) -> str:
    """Where the issuer service is imported from with this PYTHONPATH (proof of the side)."""
    code = "import tokenry.services.issuer as m; print(m.__file__)"
    env = {**os.environ, "PYTHONPATH": str(path)}
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True
    )
    return done.stdout.strip() or done.stderr.strip()[-300:]


def figure_value(run: dict[str, Any], fig: Figure) -> float:
    """The figure from one run's summary; a kind ``a/b`` is kind a's field over kind b's (the
    JWT against the in-run signature ceiling, the unit of docs/spec.md §8's issuance target)."""
    name, bench, concurrency, kind, field, higher_better, target = fig
    if "/" in kind:
        top, bottom = kind.split("/")
        return figure_value(
            run, (name, bench, concurrency, top, field, higher_better, target)
        ) / figure_value(run, (name, bench, concurrency, bottom, field, higher_better, target))
    for row in run["summary"]:
        if row["concurrency"] == concurrency and row["kind"] == kind:
            return float(row[field])
    raise KeyError(fig[0])


def compare(runs: dict[str, list[dict[str, Any]]], benches: list[str]) -> list[dict[str, Any]]:
    rows = []
    for fig in FIGURES:
        name, bench, *_, higher_better, target = fig
        if bench not in benches:
            continue
        before = [figure_value(r, fig) for r in runs[f"before:{bench}"]]
        after = [figure_value(r, fig) for r in runs[f"after:{bench}"]]
        ratio = statistics.median(after) / statistics.median(before)
        paired = statistics.median(a / b for a, b in zip(after, before, strict=True))
        worse = (1 - ratio) if higher_better else (ratio - 1)
        rows.append(
            {
                "figure": name,
                "target": target,
                "before": statistics.median(before),
                "before_range": [min(before), max(before)],
                "after": statistics.median(after),
                "after_range": [min(after), max(after)],
                "after_over_before": ratio,
                "paired_median": paired,
                "within_2_percent": worse <= TOLERANCE,
                "before_runs": before,
                "after_runs": after,
            }
        )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print("\n| figure | before: median (range) | after: median (range) | after ÷ before"
          " (paired) | ≤ 2 % worse | target |")  # fmt: skip
    print("|---|---:|---:|---:|---|---|")
    for r in rows:
        b0, b1 = r["before_range"]
        a0, a1 = r["after_range"]
        print(
            f"| {r['figure']} | {r['before']:.3g} ({b0:.3g}–{b1:.3g}) |"
            f" {r['after']:.3g} ({a0:.3g}–{a1:.3g}) |"
            f" {r['after_over_before']:.3f} ({r['paired_median']:.3f}) |"
            f" {'yes' if r['within_2_percent'] else 'NO'} | {r['target']} |"
        )


def instructions(
    args: argparse.Namespace,
    sides: dict[str, str],
    trees: dict[str, Path],
    paths: dict[str, Path],
    tmp: Path,
) -> int:
    """--instructions: each side ``--rounds`` times (default 1), before/after alternating."""
    seconds = args.seconds if args.seconds != 2.0 else 15.0
    got: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
    for rnd in range(args.rounds):
        for side in sides:
            rows = run_instructions(trees[side], paths[side], seconds, tmp / f"cg-{side}-{rnd}")
            got[side].extend(rows)
            for row in rows:
                print(f"round {rnd + 1} {side:<6} {json.dumps(row)}", flush=True)
    print("\n| issuer instructions per JWT | before | after | after ÷ before |")
    print("|---|---:|---:|---:|")
    table = []
    for concurrency in (32, 1):
        per = {
            s: statistics.median(
                r["instructions_per_jwt"] for r in got[s] if r["concurrency"] == concurrency
            )
            for s in sides
        }
        ratio = per["after"] / per["before"]
        table.append({"concurrency": concurrency, **per, "after_over_before": ratio})
        print(f"| c={concurrency} | {per['before']:,.0f} | {per['after']:,.0f} | {ratio:.3f} |")
    result = {"sides": sides, "seconds_per_load": seconds, "runs": got, "comparison": table}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"raw: {args.out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", help="commit of the before side (required)")
    parser.add_argument("--after", default="HEAD", help="commit of the after side")
    parser.add_argument(
        "--bench", action="append", choices=("issuance", "introspection"), default=None
    )
    parser.add_argument("--rounds", type=int, default=None, help="5 (--instructions: 1)")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per measured run")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs" / "benchmarks" / "before_after.json"
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="the issuer's instructions per JWT under callgrind instead (--seconds per load: 15)",
    )
    parser.add_argument("--instructions-side", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.instructions_side:
        tree, outdir, seconds = args.instructions_side
        instructions_side(Path(tree), Path(outdir), float(seconds))
        return 0
    if not args.before:
        parser.error("--before is required")
    args.rounds = args.rounds or (1 if args.instructions else 5)
    benches: list[str] = args.bench or ["issuance", "introspection"]
    sides = {side: git("rev-parse", "--short", getattr(args, side)) for side in ("before", "after")}
    runs: dict[str, list[dict[str, Any]]] = {f"{s}:{b}": [] for s in sides for b in benches}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="tokenry-ba-") as tmp_name:
        tmp = Path(tmp_name)
        with contextlib.ExitStack() as stack:
            trees = {s: stack.enter_context(worktree(c, tmp / f"wt-{s}")) for s, c in sides.items()}
            paths = {s: link_tree(trees[s], tmp / f"path-{s}") for s in sides}
            origins = {s: imported_from(paths[s]) for s in sides}
            for side, origin in origins.items():
                print(f"{side} = {sides[side]}: issuer imported from {origin}", flush=True)
            if args.instructions:
                return instructions(args, sides, trees, paths, tmp)
            for rnd in range(args.rounds):
                order = ["before", "after"] if rnd % 2 == 0 else ["after", "before"]
                for bench in benches:
                    for side in order:
                        out = tmp / f"out-{side}-{bench}-{rnd}"
                        run = run_bench(trees[side], paths[side], bench, args.seconds, out)
                        runs[f"{side}:{bench}"].append(run)
                        load = run["loadavg_before"][0]
                        line = f"round {rnd + 1} {bench:<13} {side:<6} {run['wall_s']:5.1f} s"
                        print(f"{line}  load {load:.2f}", flush=True)
    rows = compare(runs, benches)
    print_table(rows)
    loads = [r["loadavg_before"][0] for side_runs in runs.values() for r in side_runs]
    spread = f"{min(loads):.2f}–{max(loads):.2f}, median {statistics.median(loads):.2f}"
    print(f"\nload average (1 min) at each start: {spread}; wall {time.time() - started:.0f} s")
    result = {
        "command": " ".join(["scripts/bench_before_after.py", *sys.argv[1:]]),
        "sides": sides,
        "imported_from": origins,
        "rounds": args.rounds,
        "seconds_per_run": args.seconds,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_s": round(time.time() - started),
        "comparison": rows,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"raw: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

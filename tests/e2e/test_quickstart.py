"""The README's quick start works as written (issue 16), on a fresh clone, as a new user runs it.

A fresh `git worktree` of HEAD stands for the clone; its `.venv` is the project's (what
`make install` would have built; `make dev` itself would reinstall, so the test runs what
`make dev` runs after that: `tokenry dev`, in the worktree, in the background, with its data in
the worktree's `.tokenry`). Then the blocks of README.md marked `<!-- quickstart -->` run in
order, in one bash under `env -i PATH=… HOME=…` (no TOKENRY_* variable), from the worktree:

- a command must exit 0, or the code its comment states (`# exits 1: …`);
- a command sent to the background (`… &`) whose comment says `prints "X"` is waited for until
  its output shows X, as a user waits before typing the next line;
- nothing may print "Traceback".

The README and this test therefore cannot drift apart.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)  # the project's .venv
BLOCK = re.compile(r"<!-- quickstart -->\s*\n```(?:sh|bash|console)?\n(?P<body>.*?)\n```", re.S)
EXITS = re.compile(r"#.*\bexits (\d+)\b")
PRINTS = re.compile(r'#.*\bprints "([^"]+)"')
BACKEND_PORT = 50060  # examples/backend/server.py's default


def quickstart_blocks(readme: str) -> list[str]:
    return [m.group("body") for m in BLOCK.finditer(readme)]


def commands(block: str) -> list[str]:
    """One command per line; `\\` continuations joined; blank and comment lines dropped."""
    joined = re.sub(r"\s*\\\n\s*", " ", block)
    return [
        line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def script(blocks: list[str]) -> str:
    """One bash script running every command as written, checking each one's exit code."""
    out = ["set -o pipefail", "trap 'kill $(jobs -p) 2>/dev/null' EXIT"]
    for n, line in enumerate(c for block in blocks for c in commands(block)):
        quoted = shlex.quote(line)
        code = line.split(" #", 1)[0].rstrip()
        if code.endswith("&"):
            ready = PRINTS.search(line)
            out.append(f"{code[:-1].rstrip()} > .quickstart-bg-{n}.log 2>&1 &")
            if ready:
                out += [
                    f"for _ in $(seq 600); do grep -q {shlex.quote(ready.group(1))}"
                    f" .quickstart-bg-{n}.log && break; kill -0 $! 2>/dev/null || break;"
                    " sleep 0.1; done",
                    f"cat .quickstart-bg-{n}.log",
                    f"grep -q {shlex.quote(ready.group(1))} .quickstart-bg-{n}.log"
                    f" || {{ echo QUICKSTART-FAILED: never printed {shlex.quote(ready.group(1))}:"
                    f" {quoted} >&2; exit 1; }}",
                ]
            continue
        want = int(m.group(1)) if (m := EXITS.search(line)) else 0
        out += [
            f"echo '$ '{quoted}",
            line,
            f"rc=$?; [ $rc -eq {want} ] || {{ echo QUICKSTART-FAILED: exit $rc, not {want}:"
            f" {quoted} >&2; exit 1; }}",
        ]
    return "\n".join(out) + "\n"


def test_commands_and_script_shapes() -> None:
    block = 'A=$(x \\\n    | y)   # keep\n# only a comment\nz --v "$A"   # exits 1: no\nsrv &  # prints "up"\n'
    assert commands(block) == [
        "A=$(x | y)   # keep",
        'z --v "$A"   # exits 1: no',
        'srv &  # prints "up"',
    ]
    text = script([block])
    assert "[ $rc -eq 1 ]" in text and "srv > .quickstart-bg-2.log 2>&1 &" in text


def test_the_readme_marks_its_quickstart() -> None:
    blocks = quickstart_blocks((ROOT / "README.md").read_text())
    assert len(blocks) >= 2
    lines = [c for b in blocks for c in commands(b)]
    assert not [c for c in lines if "<" in c.split("#")[0]], "placeholders a user cannot type"
    assert any("examples/backend/server.py" in c for c in lines)
    assert any("token revoke" in c for c in lines)


def _env(home: Path) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home)}


@pytest.fixture
def clone(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "tokenry"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(where), "HEAD"],
        check=True,
        timeout=60,
    )
    try:
        (where / ".venv").symlink_to(VENV)
        yield where
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)],
            check=False,
            timeout=60,
        )


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def dev(clone: Path, tmp_path: Path) -> Iterator[Path]:
    """`tokenry dev` running in the clone, as `make dev` runs it."""
    home = tmp_path / "home"
    home.mkdir()
    log = (tmp_path / "dev.log").open("wb")
    proc = subprocess.Popen(
        [str(clone / ".venv" / "bin" / "tokenry"), "dev"],
        cwd=clone,
        env=_env(home),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (clone / ".tokenry" / "dev.json").exists():
            assert proc.poll() is None, (tmp_path / "dev.log").read_text()
            assert time.monotonic() < deadline, "tokenry dev did not come up in 60 s"
            time.sleep(0.1)
        yield home
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
        output = (tmp_path / "dev.log").read_text()
        assert "Traceback" not in output, output
        assert proc.returncode == 0, output


def test_the_readme_quickstart_runs_as_written(clone: Path, dev: Path) -> None:
    assert _port_free(BACKEND_PORT), f"127.0.0.1:{BACKEND_PORT} is taken: the example cannot listen"
    blocks = quickstart_blocks((clone / "README.md").read_text())
    assert blocks, "README.md marks no <!-- quickstart --> block"
    result = subprocess.run(
        ["bash", "-c", script(blocks)],
        cwd=clone,
        env=_env(dev),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output, output
    assert '"hello": "demo-service"' in result.stdout, output
    assert "revoked" in output, output

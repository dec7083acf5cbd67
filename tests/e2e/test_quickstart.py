"""The README's quick start works as written (issue 16), on a fresh clone, as a new user runs it.

`tokenry dev` runs in a fresh `git worktree` of HEAD (the `dev_run` fixture of conftest.py,
shared with test_first_hour.py). The blocks of README.md marked `<!-- quickstart -->` run in
order, in one bash under `env -i PATH=… HOME=…` (no TOKENRY_* variable), from the worktree:

- a command must exit 0, or the code its comment states (`# exits 1: …`);
- a command sent to the background (`… &`) whose comment says `prints "X"` is waited for until
  its output shows X, as a user waits before typing the next line;
- nothing may print "Traceback".

The README and this test therefore cannot drift apart.
"""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import time
from pathlib import Path

import pytest
from e2e_support import DevRun

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
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


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_the_readme_quickstart_runs_as_written(dev_run: DevRun) -> None:
    assert _port_free(BACKEND_PORT), f"127.0.0.1:{BACKEND_PORT} is taken: the example cannot listen"
    blocks = quickstart_blocks((dev_run.clone / "README.md").read_text())
    assert blocks, "README.md marks no <!-- quickstart --> block"
    started = time.monotonic()
    result = subprocess.run(
        ["bash", "-c", script(blocks)],
        cwd=dev_run.clone,
        env=dev_run.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    print(f"the quick start ran in {time.monotonic() - started:.1f}s")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output, output
    assert '"hello": "demo-service"' in result.stdout, output
    assert '"active":true' in result.stdout.replace(" ", ""), output  # curl introspection
    # The backend refused the revoked token, in one line.
    assert "error: UNAUTHENTICATED: invalid_token: revoked" in result.stderr, output

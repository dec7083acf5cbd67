"""One `tokenry dev`, as a new user runs it, shared by the first-hour checks and the README quick
start (a whole stack costs seconds; the checks reuse it).

A fresh `git worktree` of HEAD stands for the clone; its `.venv` is the project's (what `make
install` would have built; `make dev` itself would reinstall, so the fixture runs what `make dev`
runs after that: `tokenry dev`, in the worktree, with its data in the worktree's `.tokenry`). The
environment holds only PATH and HOME: no TOKENRY_* variable.

While the stack starts, the fixture holds 127.0.0.1:8080 when it is free (another stack may
already hold it): `tokenry dev` must then serve the gateway on another port and use that port
everywhere — the issuer URL, discovery, the banner and dev.json (issue 16). The stack stops after
the last test that uses it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e_support import DevRun

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)  # the project's .venv
GATEWAY_PORT = 8080


def _hold(port: int) -> socket.socket | None:
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None  # someone else holds it: the fallback is exercised all the same
    sock.listen()
    return sock


# The stack stops right after the last test that uses it, not at the end of the session: the
# rest of the suite (faults, integration, …) must not share two cores with an idle stack.
_STOP = pytest.StashKey[Callable[[], None]]()
_LAST_USER = pytest.StashKey[str]()


def pytest_collection_finish(session: pytest.Session) -> None:
    users = [item.nodeid for item in session.items if "dev_run" in _fixtures(item)]
    if users:
        session.config.stash[_LAST_USER] = users[-1]


def pytest_runtest_teardown(item: pytest.Item) -> None:
    if item.nodeid == item.config.stash.get(_LAST_USER, None):
        item.config.stash.get(_STOP, lambda: None)()


def _fixtures(item: pytest.Item) -> tuple[str, ...]:
    return tuple(getattr(item, "fixturenames", ()))


def _stopper(proc: subprocess.Popen[bytes], run: DevRun) -> Callable[[], None]:
    stopped: list[bool] = []

    def stop() -> None:
        if stopped:
            return
        stopped.append(True)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        output = run.banner()
        assert "Traceback" not in output, output
        assert proc.returncode == 0, output
        print("tokenry dev stopped")

    return stop


@pytest.fixture(scope="session")
def dev_run(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[DevRun]:
    base = tmp_path_factory.mktemp("first-hour")
    clone, home = base / "tokenry", base / "home"
    home.mkdir()
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(clone), "HEAD"],
        check=True,
        timeout=60,
    )
    log_path = base / "dev.log"
    held = _hold(GATEWAY_PORT)
    started = time.monotonic()
    try:
        (clone / ".venv").symlink_to(VENV)
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [str(clone / ".venv" / "bin" / "tokenry"), "dev"],
                cwd=clone,
                env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home)},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        run = DevRun(clone, home, log_path, proc, held_8080=held is not None)
        stop = pytestconfig.stash[_STOP] = _stopper(proc, run)
        try:
            deadline = time.monotonic() + 120
            while "Ctrl-C stops everything" not in run.banner():
                assert proc.poll() is None, run.banner()
                assert time.monotonic() < deadline, "tokenry dev did not come up in 120 s"
                time.sleep(0.1)
            print(f"tokenry dev up in {time.monotonic() - started:.1f}s")
            if held is not None:
                held.close()
                held = None
            yield run
        finally:
            stop()
    finally:
        if held is not None:
            held.close()
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(clone)],
            check=False,
            timeout=60,
        )

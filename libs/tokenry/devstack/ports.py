"""Small process and socket helpers shared by the embedded servers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free right now on ``host``.

    The kernel picks it (bind to port 0), so two callers never race on a guessed number; the
    caller then passes the number to a server explicitly so the address is known before the
    server starts and stays the same across restarts.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, max_bytes: int = 4000) -> str:
    """Return the end of a server log, for error messages when a start fails."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - max_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<no log at {path}: {exc}>"


def descendants(pid: int) -> list[psutil.Process]:
    """Return the live descendants of ``pid`` (empty if it is gone)."""
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def kill_tree(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGKILL ``proc`` and every descendant, then reap ``proc`` and wait for the others.

    Descendants are collected first: PostgreSQL backends call setsid(), so killing the
    process group would miss them.
    """
    children = descendants(proc.pid)
    for p in children:
        with contextlib.suppress(psutil.Error):
            p.kill()
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_dead(children, timeout)


def stop_process(proc: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> None:
    """Send ``sig`` and wait up to ``timeout`` seconds; SIGKILL the whole tree if still alive."""
    if proc.poll() is not None:
        return
    children = descendants(proc.pid)
    try:
        proc.send_signal(sig)
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
    # A clean shutdown waits for its children; this only matters after a forced kill.
    wait_dead(children, timeout)


def is_dead(proc: psutil.Process) -> bool:
    """Gone, or a zombie: a zombie holds no memory, files or sockets any more."""
    try:
        return bool(proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def wait_dead(procs: list[psutil.Process], timeout: float) -> bool:
    """Wait until every process in ``procs`` is dead; True if they all died in time.

    Not psutil.wait_procs: orphaned children are reaped by init, which may do so only about
    once a second (as here), and until then they stay as harmless zombies.
    """
    deadline = time.monotonic() + timeout
    while not all(is_dead(p) for p in procs):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _is_orphan(proc: psutil.Process) -> bool:
    """Adopted by init (or a systemd subreaper) because the process that started it died."""
    try:
        parent = proc.parent()
        return parent is None or parent.pid == 1 or parent.name() == "systemd"
    except psutil.Error:
        return True


def reap_orphans(exe_name: str, path: Path, sig: signal.Signals, timeout: float = 10.0) -> None:
    """Stop leftover ``exe_name`` servers started on ``path`` by a supervisor that was killed.

    A server has exactly one owner; an orphan's owner is gone, so it is stopped (``sig``, then
    SIGKILL) before a new server may use the same directory. A leftover that still has a live
    parent belongs to someone else: raise instead of taking its data away.
    """
    target = str(path)
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] != exe_name or target not in (proc.info["cmdline"] or ()):
            continue
        if is_dead(proc):
            continue
        if not _is_orphan(proc):
            raise RuntimeError(f"{exe_name} (pid {proc.pid}) is already running on {path}")
        children = descendants(proc.pid)
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)
        if not wait_dead([proc], timeout):
            for p in [proc, *children]:
                with contextlib.suppress(psutil.Error):
                    p.kill()
        wait_dead([proc, *children], timeout)

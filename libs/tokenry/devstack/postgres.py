"""PostgreSQL as a child process, from the binaries in the ``pgserver`` wheel.

pgserver's own ``get_server`` daemonizes through ``pg_ctl`` and stops the server from an atexit
hook; here the postmaster is a direct child of the caller instead, so the supervisor that
started it stops it (and tests can kill and restart it) without any hidden global state.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import psutil

from tokenry.devstack.ports import kill_tree, log_tail, reap_orphans, stop_process

_SYSTEM_USER = "pgserver"  # postgres refuses to run as root; pgserver's helpers create this user
_SOCKET_NAME = ".s.PGSQL.5432"
_R = stat.S_IRGRP | stat.S_IROTH
_X = stat.S_IXGRP | stat.S_IXOTH
_RX = _R | _X


def _bin_dir() -> Path:
    """``pgserver/pginstall/bin``, found without importing pgserver: its package import has
    side effects (platformdirs runtime dir lookup, warnings). Looked up lazily because pgserver
    is a dev dependency that production never needs."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pgserver is not installed (it comes with tokenry[dev])")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _make_traversable(path: Path) -> None:
    """Add g+rx,o+rx to every ancestor of ``path`` so another user can reach it."""
    for parent in path.parents:
        parent.chmod(parent.stat().st_mode | _RX)


def _make_readable(path: Path, file_bits: int) -> None:
    """Add g+rx,o+rx to ``path`` and its subdirectories and ``file_bits`` to its files."""
    for root, _dirs, files in os.walk(path):
        Path(root).chmod(Path(root).stat().st_mode | _RX)
        for name in files:
            f = Path(root, name)
            if not f.is_symlink():
                f.chmod(f.stat().st_mode | file_bits)


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run([useradd, "--system", "--no-create-home", name], check=True)  # noqa: S603
        return pwd.getpwnam(name)


class EmbeddedPostgres:
    """A PostgreSQL server on a Unix socket only (no TCP), owned as a child process.

    ``fsync=False`` turns off fsync and full-page writes: much faster for tests, and still
    crash-safe against ``kill()`` because the OS page cache survives a process crash.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        fsync: bool = True,
        log_path: Path | None = None,
        max_connections: int = 200,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.log_path = log_path or self.data_dir.with_name(self.data_dir.name + ".log")
        self.fsync = fsync
        self.max_connections = max_connections
        self._proc: subprocess.Popen[bytes] | None = None
        self._socket_dir: Path | None = None
        self._own_socket_dir = False  # True when the socket dir is a temp dir we must remove

    # -- public API -------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        return self._proc.pid if self.is_running() and self._proc else None

    @property
    def socket_dir(self) -> Path:
        """Directory of the Unix socket; stable for the life of this object."""
        if self._socket_dir is None:
            if len(str(self.data_dir / _SOCKET_NAME)) < 100:
                self._socket_dir = self.data_dir
            else:  # Unix socket paths are limited to ~107 bytes
                self._socket_dir = Path(tempfile.mkdtemp(prefix="tkpg"))
                self._own_socket_dir = True
        return self._socket_dir

    def dsn(self, database: str = "postgres") -> str:
        """A libpq/asyncpg URL for ``database`` as the superuser ``postgres`` (trust auth)."""
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        """Initialize the data dir on first use, start the postmaster, wait until it accepts
        connections. A no-op if already running."""
        if self.is_running():
            return
        deadline = time.monotonic() + timeout
        user = self._prepare_dirs()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(user)
        self._clear_stale_pid_file()
        args = [
            str(_bin_dir() / "postgres"),
            "-D",
            str(self.data_dir),
            "-h",
            "",
            "-k",
            str(self.socket_dir),
            "-c",
            "listen_addresses=",
            "-c",
            f"max_connections={self.max_connections}",
        ]
        if not self.fsync:
            args += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        with self._open_log() as log:
            self._proc = self._popen(args, user, log)
        try:
            self._wait_ready(deadline)
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Fast shutdown (SIGINT: abort sessions, checkpoint, exit); SIGKILL after ``timeout``.
        Idempotent."""
        if self._proc is None:
            # Not ours to clean: after a start that found another live postmaster on this data
            # dir, the socket dir is that server's (a failed second `tokenry dev` must not
            # take it away).
            return
        stop_process(self._proc, signal.SIGINT, timeout)
        self._proc = None
        self._remove_socket_dir()

    def kill(self) -> None:
        """Crash simulation: SIGKILL the postmaster and all its backends at once. The next
        ``start()`` runs PostgreSQL's crash recovery."""
        if self._proc is not None:
            kill_tree(self._proc)
            self._proc = None
        self._remove_socket_dir()  # start() recreates it at the same path

    def restart(self, timeout: float = 30.0) -> None:
        self.stop()
        self.start(timeout)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------------------

    def _prepare_dirs(self) -> str | None:
        """Create the dirs; as root, hand them to the unprivileged system user postgres needs.
        Returns that user's name, or None when we already are an ordinary user."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        socket_dir = self.socket_dir
        socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return None
        entry = _ensure_system_user(_SYSTEM_USER)
        # The wheel's files must be readable (and bin executable) by that user, as pgserver does.
        install = _bin_dir().parent
        _make_traversable(install)
        _make_readable(install, _R)
        _make_readable(install / "bin", _R | _X)
        _make_traversable(self.data_dir)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        if self._own_socket_dir:
            _make_traversable(socket_dir)
            socket_dir.chmod(0o777)
        return _SYSTEM_USER

    def _initdb(self, user: str | None) -> None:
        args = [
            str(_bin_dir() / "initdb"),
            "-D",
            str(self.data_dir),
            "--auth=trust",
            "--auth-local=trust",
            "--encoding=utf8",
            "--locale=C",
            "-U",
            "postgres",
        ]
        if not self.fsync:
            args.append("--no-sync")
        with self._open_log() as log:
            rc = self._popen(args, user, log).wait()
        if rc != 0:
            raise RuntimeError(
                f"initdb failed with exit code {rc} for {self.data_dir}; "
                f"log {self.log_path}:\n{log_tail(self.log_path)}"
            )

    def _clear_stale_pid_file(self) -> None:
        """Deal with what a crash or a killed supervisor left behind.

        An orphan postmaster of this data dir is stopped (see ``reap_orphans``). A
        postmaster.pid whose pid is not a postgres process is removed: postgres itself would
        refuse to start if that pid had been reused by another process.
        """
        reap_orphans("postgres", self.data_dir, signal.SIGINT)
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
            alive = psutil.Process(pid).name() == "postgres"
        except (OSError, ValueError, psutil.Error):
            alive = False
        if not alive:
            pid_file.unlink(missing_ok=True)

    def _open_log(self) -> IO[bytes]:
        return self.log_path.open("ab")

    def _popen(self, args: list[str], user: str | None, log: IO[bytes]) -> subprocess.Popen[bytes]:
        # A new session keeps a terminal's Ctrl-C away from the server, so the supervisor
        # decides the shutdown order (services first, then the database).
        extra: dict[str, Any] = {}
        if user is not None:
            entry = pwd.getpwnam(user)
            extra = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        return subprocess.Popen(  # noqa: S603 - our own arguments, no shell
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",
            start_new_session=True,
            **extra,
        )

    def _wait_ready(self, deadline: float) -> None:
        """Poll until a real connection succeeds (pg_isready), not just until the socket
        appears: after ``kill()`` the server listens while crash recovery still runs."""
        isready = [
            str(_bin_dir() / "pg_isready"),
            "-q",
            "-h",
            str(self.socket_dir),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-t",
            "1",
        ]
        socket_path = self.socket_dir / _SOCKET_NAME
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"postgres exited with code {self._proc.returncode} during startup; "
                    f"log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            if socket_path.exists():
                probe = subprocess.run(isready, stdout=subprocess.DEVNULL, check=False)  # noqa: S603
                if probe.returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"postgres did not accept connections in time; "
                    f"log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            time.sleep(0.02)

    def _remove_socket_dir(self) -> None:
        """Remove a temp socket dir we created (never the data dir), so none leak into /tmp."""
        if self._own_socket_dir and self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

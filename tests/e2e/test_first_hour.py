"""The first hour (issue 16): `tokenry dev` in one terminal, and in another — with no variable
set, from the same folder — the CLI and the examples find it, a protected backend serves a token
and rejects it once revoked; a second `tokenry dev` on the same folder fails without touching
the first.

Everything runs as a new user would: processes started from a scratch folder with an
environment holding only PATH and HOME (no TOKENRY_*), embedded PostgreSQL and NATS, and the
default ports — or free ones when another stack on this machine holds them (dev.json says which).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tokenry.devstack.ports import free_tcp_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXAMPLES = ROOT / "examples" / "backend"


def _clean_env(folder: Path, **extra: str) -> dict[str, str]:
    return {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(folder), **extra}


def _wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"tokenry dev exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"{path} not written in {timeout}s"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A scratch folder where `tokenry dev` runs (its data in ./.tokenry)."""
    where = tmp_path_factory.mktemp("first-hour")
    proc = subprocess.Popen(
        [str(BIN / "tokenry"), "dev"],
        cwd=where,
        env=_clean_env(where),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(where / ".tokenry" / "dev.json", proc)
        yield where
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out.decode()
        banner = out.decode()
        assert "tokenry dev env" in banner and "nats " in banner, banner


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "tokenry"), *args],
        cwd=folder,
        env=_clean_env(folder),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_status_shows_the_dev_stack_serving(folder: Path) -> None:
    result = cli(folder, "status", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(result.stdout)["services"]
    assert {r["status"] for r in rows} == {"SERVING", "REACHABLE"}
    assert {r["from"] for r in rows} == {"dev.json"}


def test_dev_env_exports_every_address(folder: Path) -> None:
    result = cli(folder, "dev", "env")
    assert result.returncode == 0, result.stderr
    names = {line.split("=")[0].removeprefix("export ") for line in result.stdout.splitlines()}
    for service in ("ISSUER", "INTROSPECTOR", "REVOCATION", "KEYROTATOR"):
        assert f"TOKENRY_{service}_ADDR" in names
    assert {"TOKENRY_NATS_URL", "TOKENRY_HOME"} <= names


def test_a_second_dev_leaves_the_first_alone(folder: Path) -> None:
    dev_json = (folder / ".tokenry" / "dev.json").read_text()
    second = cli(folder, "dev")
    assert second.returncode == 2, second.stderr
    assert "already running" in second.stderr and "Traceback" not in second.stderr
    assert (folder / ".tokenry" / "dev.json").read_text() == dev_json
    assert cli(folder, "status").returncode == 0


@pytest.fixture(scope="module")
def backend(folder: Path) -> Iterator[str]:
    addr = f"127.0.0.1:{free_tcp_port()}"
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "server.py")],
        cwd=folder,
        env=_clean_env(folder, DEMO_LISTEN=addr),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert "listening" in line, line
        yield addr
    finally:
        proc.terminate()
        proc.wait(15)


def _client(folder: Path, backend: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "client.py")],
        cwd=folder,
        env=_clean_env(folder, DEMO_BACKEND=backend),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_examples_run_with_no_variables(folder: Path, backend: str) -> None:
    # "listening" was printed only once the state was current: the first call is served.
    result = _client(folder, backend)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["hello"] == "demo-service"


def test_the_backend_rejects_a_revoked_token(folder: Path, backend: str) -> None:
    import grpc

    issued = cli(
        folder, "token", "issue", "--client-id", "demo-service", "--client-secret", "demo-secret"
    )
    assert issued.returncode == 0, issued.stderr
    token = json.loads(issued.stdout)["access_token"]

    def hello() -> grpc.StatusCode:
        with grpc.insecure_channel(backend) as channel:
            try:
                channel.unary_unary("/demo.Greeter/Hello")(
                    b"", metadata=(("authorization", f"Bearer {token}"),), timeout=10
                )
            except grpc.RpcError as exc:
                return exc.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK

    assert hello() == grpc.StatusCode.OK
    claims = json.loads(cli(folder, "token", "verify", token, "--audience", "demo-api").stdout)
    revoked = cli(folder, "token", "revoke", "--jti", claims["jti"])  # the dev admin
    assert revoked.returncode == 0, revoked.stderr
    deadline = time.monotonic() + 10
    while (code := hello()) == grpc.StatusCode.OK:
        assert time.monotonic() < deadline, "the revoked token is still accepted"
        time.sleep(0.05)
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_the_sync_example_is_serving_when_it_says_listening(folder: Path) -> None:
    from grpc_health.v1 import health_pb2

    addr = f"127.0.0.1:{free_tcp_port()}"
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "sync_server.py")],
        cwd=folder,
        env=_clean_env(folder, DEMO_LISTEN=addr),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert "listening" in line, line
        import grpc
        from grpc_health.v1 import health_pb2_grpc

        with grpc.insecure_channel(addr) as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        result = _client(folder, addr)
        assert result.returncode == 0, result.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)


def test_examples_against_no_stack_exit_3_in_one_line(tmp_path: Path) -> None:
    env = _clean_env(tmp_path, DEMO_BACKEND=f"127.0.0.1:{free_tcp_port()}")
    env["TOKENRY_ISSUER_ADDR"] = f"127.0.0.1:{free_tcp_port()}"  # nothing there, whatever runs
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "client.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr

"""The first hour (issue 16): `tokenry dev` in one terminal, and in another — with no variable
set, from the same folder — the CLI and the examples find it, a protected backend serves a token
and rejects it once revoked; a second `tokenry dev` on the same folder fails without touching
the first. The gateway is served over HTTPS from the dev CA at the issuer URL, on whichever port
it got; `tokenry dev env` makes curl, Python and Node trust it; the printed metrics URLs answer.

Everything runs as a new user would: processes started in a fresh clone with an environment
holding only PATH and HOME (no TOKENRY_*), embedded PostgreSQL and NATS, and the default ports —
or free ones when another stack on this machine holds them (dev.json says which). The stack is
conftest.py's ``dev_run``, shared with the README quick start.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from e2e_support import DevRun

from tokenry.devstack.ports import free_tcp_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXAMPLES = ROOT / "examples" / "backend"


def _clean_env(folder: Path, **extra: str) -> dict[str, str]:
    return {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(folder), **extra}


@pytest.fixture(scope="module")
def folder(dev_run: DevRun) -> Path:
    """The folder where `tokenry dev` runs (its data in ./.tokenry)."""
    return dev_run.clone


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


def _dev_json(folder: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((folder / ".tokenry" / "dev.json").read_text())
    return data


def test_status_shows_the_dev_stack_serving(folder: Path) -> None:
    result = cli(folder, "status", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(result.stdout)["services"]
    assert {r["status"] for r in rows} == {"SERVING", "REACHABLE"}
    assert {r["from"] for r in rows} == {"dev.json"}
    assert {r["name"]: r["status"] for r in rows}["gateway"] == "SERVING"  # over HTTPS


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


def test_the_gateway_serves_https_at_the_issuer_url(dev_run: DevRun) -> None:
    dev = _dev_json(dev_run.clone)
    gateway = str(dev["gateway_url"])
    # Whatever port it got (conftest.py holds :8080 while the stack starts, when it is free),
    # the issuer URL, the banner and discovery all name the URL actually served.
    assert re.fullmatch(r"https://localhost:\d+", gateway), gateway
    assert dev["issuer_url"] == gateway
    if dev_run.held_8080:
        assert not gateway.endswith(":8080"), gateway  # the fallback, used everywhere
        assert ":8080 is taken" in dev_run.banner()
    banner = dev_run.banner()
    assert f"gateway      {gateway}" in banner, banner
    discovery = f"{gateway}/.well-known/openid-configuration"
    assert discovery in banner and "tokenry dev env" in banner, banner
    context = ssl.create_default_context(cafile=str(dev["tls_ca"]))
    with urllib.request.urlopen(discovery, timeout=10, context=context) as resp:
        assert json.load(resp)["issuer"] == gateway
    # The certificate names localhost and 127.0.0.1 (the hostname check is on by default).
    port = gateway.rsplit(":", 1)[1]
    with urllib.request.urlopen(
        f"https://127.0.0.1:{port}/health/ready", timeout=10, context=context
    ) as resp:
        assert resp.status == 200
    pem = ssl.get_server_certificate(("127.0.0.1", int(port)))
    names = x509.load_pem_x509_certificate(pem.encode()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert "localhost" in names.value.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in {str(ip) for ip in names.value.get_values_for_type(x509.IPAddress)}


def test_dev_env_makes_curl_python_and_node_trust_the_dev_ca(dev_run: DevRun) -> None:
    checks = [
        'curl -sS --fail "$TOKENRY_ISSUER_URL/health/ready"',  # CURL_CA_BUNDLE
        "python3 -c 'import os, urllib.request as u;"
        ' u.urlopen(os.environ["TOKENRY_ISSUER_URL"] + "/health/ready")\'',  # SSL_CERT_FILE
    ]
    if shutil.which("node"):
        checks.append(
            'node -e \'fetch(process.env.TOKENRY_ISSUER_URL + "/health/ready")'
            ".then(r => process.exit(r.ok ? 0 : 1), e => { console.error(e.cause); process.exit(1) })'"
        )
    script = 'set -e; eval "$(.venv/bin/tokenry dev env)"; ' + "; ".join(checks)
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=dev_run.clone,
        env=dev_run.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_printed_metrics_urls_answer(dev_run: DevRun) -> None:
    urls = re.findall(r"^\s+(\w+)\s+(http://127\.0\.0\.1:\d+/metrics)$", dev_run.banner(), re.M)
    names = {"issuer", "introspector", "revocation", "keyrotator", "gateway"}
    assert {name for name, _ in urls} == names
    exported = cli(dev_run.clone, "dev", "env").stdout
    for name, url in urls:
        assert f"# metrics: {name} {url}" in exported
        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read().decode()
        assert "# TYPE" in text and 'service_name="tokenry-' in text, text[:300]


def test_token_verify_over_tls_keeps_stderr_clean(folder: Path) -> None:
    issued = cli(
        folder, "token", "issue", "--client-id", "demo-service", "--client-secret", "demo-secret"
    )
    token = json.loads(issued.stdout)["access_token"]
    verified = cli(folder, "token", "verify", token, "--audience", "demo-api")
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr == ""  # no asyncio warning about the NATS TLS connection's close

"""The CLI sends the dev admin's credentials only to the stack that dev.json describes, and over
TLS only to one whose certificate chains to $TOKENRY_HOME's dev CA (issue 16).

A TLS server stands at the addresses of a dev.json; it records the metadata of every call it
gets. With a certificate from another CA, `tokenry token revoke` (an admin call) fails in one
line with exit 3 and the server gets nothing: the handshake fails before any metadata is sent.
With TOKENRY_TLS_CA naming that other CA, the CLI refuses before dialling (exit 2). The control:
the same server with a certificate from the dev CA does receive the admin's Basic credentials.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from tokenry.devstack.ca import DevPki, dev_pki

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
SECRET = "the-dev-admins-secret-must-not-leave"
SERVICES = ("issuer", "introspector", "revocation", "keyrotator")


class Recorder(grpc.GenericRpcHandler):
    """Answers every method with an empty message and keeps each call's metadata."""

    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler[bytes, bytes]:
        self.calls.append({k: str(v) for k, v in handler_call_details.invocation_metadata})
        return grpc.unary_unary_rpc_method_handler(lambda _req, _ctx: b"")


def _serve(pki: DevPki, recorder: Recorder) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[recorder])
    creds = grpc.ssl_server_credentials(
        [(pki.key("revocation").read_bytes(), pki.cert("revocation").read_bytes())]
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    return server, f"127.0.0.1:{port}"


def _home(folder: Path, dev_ca: DevPki, addr: str) -> Path:
    """A dev.json of a live process (this one) naming ``addr`` and the dev CA ``dev_ca``."""
    home = folder / "home"
    home.mkdir()
    dev = {
        "pid": os.getpid(),
        "database_url": "postgresql://tokenry@127.0.0.1:1/tokenry",
        "nats_url": "nats://127.0.0.1:1",
        "issuer_url": "https://localhost:1",
        "addrs": dict.fromkeys(SERVICES, addr),
        "tls_ca": str(dev_ca.ca),
        "tls_cert": str(dev_ca.cert("tokenry-admin")),
        "tls_key": str(dev_ca.key("tokenry-admin")),
    }
    (home / "dev.json").write_text(json.dumps(dev))
    creds = {"admin": {"client_id": "tokenry-admin", "client_secret": SECRET}}
    (home / "credentials.json").write_text(json.dumps(creds))
    return home


@pytest.fixture
def pkis(tmp_path: Path) -> tuple[DevPki, DevPki]:
    names = ["revocation", "tokenry-admin"]
    return dev_pki(tmp_path / "dev-ca", names), dev_pki(tmp_path / "other-ca", names)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def other_stack(pkis: tuple[DevPki, DevPki], recorder: Recorder) -> Iterator[str]:
    server, addr = _serve(pkis[1], recorder)
    yield addr
    server.stop(None)


def _revoke(home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "tokenry"), "token", "revoke", "--jti", "some-jti"],
        env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(home), "TOKENRY_HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _one_line_without_the_secret(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert SECRET not in output and "Traceback" not in output, output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def test_a_stack_with_another_ca_gets_no_credentials(
    tmp_path: Path, pkis: tuple[DevPki, DevPki], recorder: Recorder, other_stack: str
) -> None:
    home = _home(tmp_path, pkis[0], other_stack)
    result = _revoke(home)
    assert result.returncode == 3, result.stderr
    assert "TLS handshake" in _one_line_without_the_secret(result)
    assert recorder.calls == []


def test_trusting_another_ca_is_refused_before_dialling(
    tmp_path: Path, pkis: tuple[DevPki, DevPki], recorder: Recorder, other_stack: str
) -> None:
    home = _home(tmp_path, pkis[0], other_stack)
    result = _revoke(home, TOKENRY_TLS_CA=str(pkis[1].ca))  # would verify the other stack
    assert result.returncode == 2, result.stderr
    assert "not the dev CA" in _one_line_without_the_secret(result)
    assert recorder.calls == []


def test_control_the_dev_stack_itself_gets_them(
    tmp_path: Path, pkis: tuple[DevPki, DevPki], recorder: Recorder
) -> None:
    server, addr = _serve(pkis[0], recorder)
    try:
        _revoke(_home(tmp_path, pkis[0], addr))
    finally:
        server.stop(None)
    basic = base64.b64encode(f"tokenry-admin:{SECRET}".encode()).decode()
    assert any(call.get("authorization") == f"Basic {basic}" for call in recorder.calls)

"""Secrets stay out of argv (issue 13 item 10): ``--client-secret-file`` and ``-`` as TOKEN.

The CLI runs as a real process against a small in-process gRPC stand-in for the issuer and the
introspector that records what it received, so the test sees the secret and the token arrive
although neither was on the command line.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from tokenry.v1 import (
    introspector_pb2,
    introspector_pb2_grpc,
    issuer_pb2,
    issuer_pb2_grpc,
)

TOKENRY = str(Path(sys.executable).with_name("tokenry"))
SECRET = "tkr_cs_" + "q" * 43
TOKEN = "tkr_at_" + "t" * 50


class Recorder(issuer_pb2_grpc.IssuerServicer, introspector_pb2_grpc.IntrospectorServicer):
    def __init__(self) -> None:
        self.authorization: list[str] = []
        self.tokens: list[str] = []

    def _record(self, context: Any) -> None:
        for key, value in context.invocation_metadata():
            if key == "authorization":
                self.authorization.append(value)

    def Token(self, request: Any, context: Any) -> Any:
        self._record(context)
        return issuer_pb2.TokenResponse(access_token="at", token_type="Bearer", expires_in=60)

    def Introspect(self, request: Any, context: Any) -> Any:
        self._record(context)
        self.tokens.append(request.token)
        return introspector_pb2.IntrospectResponse(active=False)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Recorder, str]]:
    recorder = Recorder()  # type: ignore[abstract]  # only the two RPCs the CLI calls
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    issuer_pb2_grpc.add_IssuerServicer_to_server(recorder, srv)
    introspector_pb2_grpc.add_IntrospectorServicer_to_server(recorder, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    try:
        yield recorder, f"127.0.0.1:{port}"
    finally:
        srv.stop(None)


@pytest.fixture
def env(server: tuple[Recorder, str], tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TOKENRY_")}
    return {
        **base,
        "TOKENRY_HOME": str(tmp_path / "home"),
        "TOKENRY_ISSUER_ADDR": server[1],
        "TOKENRY_INTROSPECTOR_ADDR": server[1],
    }


def tokenry(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TOKENRY, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def test_client_secret_file_is_sent_without_the_secret_in_argv(
    server: tuple[Recorder, str], env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    args = ("token", "issue", "--client-id", "svc", "--client-secret-file", str(path))
    assert SECRET not in " ".join(args)
    result = tokenry(env, *args)
    assert result.returncode == 0, result.stderr
    assert server[0].authorization[-1] == basic("svc", SECRET)


def test_client_secret_from_stdin(server: tuple[Recorder, str], env: dict[str, str]) -> None:
    args = ("token", "issue", "--client-id", "svc", "--client-secret-file", "-")
    result = tokenry(env, *args, stdin=SECRET + "\n")
    assert result.returncode == 0, result.stderr
    assert server[0].authorization[-1] == basic("svc", SECRET)


def test_client_secret_file_from_environment(
    server: tuple[Recorder, str], env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET)
    env = {**env, "TOKENRY_CLIENT_ID": "svc", "TOKENRY_CLIENT_SECRET_FILE": str(path)}
    result = tokenry(env, "token", "issue")
    assert result.returncode == 0, result.stderr
    assert server[0].authorization[-1] == basic("svc", SECRET)


def test_token_dash_reads_the_token_from_stdin(
    server: tuple[Recorder, str], env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET)
    args = ("token", "introspect", "-", "--client-id", "rs", "--client-secret-file", str(path))
    result = tokenry(env, *args, stdin=TOKEN + "\n")
    assert result.returncode == 0, result.stderr
    assert server[0].tokens[-1] == TOKEN
    assert '"active": false' in result.stdout


@pytest.mark.parametrize(
    ("extra", "stdin", "needle"),
    [
        (("--client-secret", "x", "--client-secret-file", "/nonexistent"), "", "not both"),
        (("--client-secret-file", "/nonexistent/secret"), "", "cannot read"),
        (("--client-secret-file", "-"), "", "empty"),
    ],
)
def test_bad_secret_files_are_usage_errors_in_one_line(
    env: dict[str, str], extra: tuple[str, ...], stdin: str, needle: str
) -> None:
    result = tokenry(env, "token", "issue", "--client-id", "svc", *extra, stdin=stdin)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert needle in result.stderr


def test_empty_stdin_for_a_dash_token_is_a_usage_error(env: dict[str, str]) -> None:
    env = {**env, "TOKENRY_CLIENT_ID": "rs", "TOKENRY_CLIENT_SECRET": SECRET}
    result = tokenry(env, "token", "introspect", "-", stdin="")
    assert result.returncode == 2, result.stderr
    assert "no token on standard input" in result.stderr


def test_token_verify_dash_reads_the_token_from_stdin(env: dict[str, str]) -> None:
    """The token comes from stdin: a malformed one is judged (exit 1), never echoed."""
    env = {**env, "TOKENRY_ISSUER_URL": "https://issuer.test"}
    jwks = "https://127.0.0.1:1/jwks.json"
    result = tokenry(
        env, "token", "verify", "-", "--audience", "a", "--jwks-url", jwks, stdin="not-a-jwt\n"
    )
    assert result.returncode in (1, 3), result.stderr
    assert "not-a-jwt" not in result.stderr
    empty = tokenry(env, "token", "verify", "-", "--audience", "a", "--jwks-url", jwks, stdin="")
    assert empty.returncode == 2
    assert "no token on standard input" in empty.stderr

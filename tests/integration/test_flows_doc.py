"""docs/flows.md runs as written (issue 16), against the real services in process (PostgreSQL and
NATS from the session fixtures):

- the `register` shell block registers the clients through `tokenry client create`;
- the Python blocks, executed as one module, sign alice in by the authorization code flow with
  PKCE, rotate, retry inside the grace and replay a refresh token, and exchange a token;
- each line of the `revoke` shell block is run by bash with the CLI, and a running verifier
  rejects exactly what that line revoked while a control token still verifies.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import jwt
import pytest

from tokenry.servicekit.config import Settings
from tokenry.servicekit.status import oauth_error_of
from tokenry.v1 import issuer_pb2_grpc
from tokenry.verifier import VerifierRuntime
from tokenry.verifier.errors import VerificationError

from issuer_support import IssuerSuite, until_available
from suite import run_suite

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "flows.md"
BIN = Path(sys.executable).parent
BLOCK = re.compile(r"<!-- flows: (?P<name>[\w-]+) -->\n```(?P<lang>\w+)\n(?P<body>.*?)\n```", re.S)


def blocks(name: str) -> list[str]:
    found = [m.group("body") for m in BLOCK.finditer(DOC.read_text()) if m.group("name") == name]
    assert found, f"docs/flows.md has no `{name}` block"
    return found


def shell_commands(body: str) -> list[str]:
    """One command per line, `\\` continuations joined, comment lines dropped."""
    joined = body.replace("\\\n", " ")
    return [line for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


async def bash(command: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        command,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def cli_env(s: IssuerSuite, **variables: str) -> dict[str, str]:
    """What an operator's shell has: the CLI on PATH, the addresses and the admin client."""
    return {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "TOKENRY_HOME": "/nonexistent",
        "TOKENRY_ISSUER_ADDR": s.suite.addrs["issuer"],
        "TOKENRY_REVOCATION_ADDR": s.suite.addrs["revocation"],
        "TOKENRY_KEYROTATOR_ADDR": s.suite.addrs["keyrotator"],
        "TOKENRY_CLIENT_ID": "admin",
        "TOKENRY_CLIENT_SECRET": s.secret("admin"),
        **variables,
    }


async def register(s: IssuerSuite) -> None:
    """Runs the `register` block; keeps each printed secret."""
    (body,) = blocks("register")
    code, out, err = await bash("set -e\n" + body, cli_env(s))
    assert code == 0 and "Traceback" not in err, err
    decoder, at = json.JSONDecoder(), 0
    while at < len(out.rstrip()):
        created, at = decoder.raw_decode(out, at)
        s.suite.secrets[created["client_id"]] = created["client_secret"]
        at += len(out[at:]) - len(out[at:].lstrip())
    assert {"web", "login-app", "svc-a"} <= set(s.suite.secrets)


def examples() -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile("\n\n".join(blocks("python")), str(DOC), "exec"), namespace)
    return namespace


async def accepted(runtime: VerifierRuntime, token: str) -> bool:
    try:
        await runtime.verifier.verify(token)
    except VerificationError:  # revoked, or signed by a revoked (and dropped) key
        return False
    return True


async def until_rejected(runtime: VerifierRuntime, token: str) -> None:
    for _ in range(200):
        if not await accepted(runtime, token):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"still accepted: {claims_of(token)}")


async def test_the_flows_doc_runs_as_written(settings: Settings, pool: asyncpg.Pool) -> None:
    async with run_suite(settings, pool, services=("keyrotator", "revocation", "issuer")) as suite:
        s = IssuerSuite(suite, pool)
        await register(s)
        ex = examples()
        issuer = issuer_pb2_grpc.IssuerStub(suite.channel("issuer"))
        web, login, svc_a = (s.auth(c) for c in ("web", "login-app", "svc-a"))

        async def sign_in(subject: str) -> Any:
            return await until_available(lambda: ex["sign_in"](issuer, web, login, subject))

        # §2: the authorization code flow.
        alice = await sign_in("alice")
        assert alice.id_token and alice.refresh_token.startswith("tkr_rt_")
        assert claims_of(alice.access_token)["sub"] == "alice"
        assert claims_of(alice.id_token)["nonce"] == "n-0S6_WzA2Mj"

        # §3: rotation, the retry inside the grace, the replay that revokes the family.
        bob = await sign_in("bob")
        await ex["rotate_retry_and_reuse"](issuer, web, bob.refresh_token)

        # §4: token exchange on behalf of alice.
        exchanged = await ex["on_behalf_of"](issuer, svc_a, alice.access_token)
        claims = claims_of(exchanged.access_token)
        assert claims["sub"] == "alice" and claims["client_id"] == "svc-a"
        assert claims["act"] == {"sub": "svc-a"} and claims["aud"] == "api"
        assert claims["gid"] == claims_of(alice.access_token)["gid"]

        runtime = await s.verifier("api")
        try:
            # §5: each line of the revoke block, each against its own target.
            assert not await accepted(runtime, bob.access_token)  # the replay above
            by_jti, by_grant, by_token, control = [
                await sign_in(u) for u in ["dan", "eve", "fay", "gus"]
            ]
            svc_token = await issuer.Token(
                ex["pb"].TokenRequest(grant_type="client_credentials", scope="read"),
                metadata=svc_a,
            )
            targets = {
                "--jti": [by_jti.access_token],
                "--grant": [by_grant.access_token],
                "--subject": [alice.access_token, exchanged.access_token],
                "--client svc-a": [svc_token.access_token],
                "REFRESH_TOKEN": [by_token.access_token],
                "keys revoke": [control.access_token],
            }
            env = cli_env(
                s,
                JTI=claims_of(by_jti.access_token)["jti"],
                GID=claims_of(by_grant.access_token)["gid"],
                REFRESH_TOKEN=by_token.refresh_token,
                WEB_SECRET=s.secret("web"),
                KID=jwt.get_unverified_header(control.access_token)["kid"],
            )
            (body,) = blocks("revoke")
            lines = shell_commands(body)
            assert len(lines) == len(targets)
            live = [t for tokens in targets.values() for t in tokens]
            for line in lines:
                (key,) = [k for k in targets if k in line]
                for token in live:
                    assert await accepted(runtime, token), (line, claims_of(token))
                code, out, err = await bash(line, env)
                assert code == 0 and "Traceback" not in err, (line, err)
                assert json.loads(out)["revoked"], (line, out)
                for token in targets[key]:
                    await until_rejected(runtime, token)
                    live.remove(token)
            # The grant's refresh token stopped working at the issuer too.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await ex["refresh"](issuer, web, by_grant.refresh_token)
            detail = oauth_error_of(refused.value)
            assert detail is not None and detail.error == "invalid_grant"
            # After the key revocation the successor signs at once: a new sign-in verifies.
            after = await sign_in("hal")
            assert await accepted(runtime, after.access_token)
        finally:
            await runtime.close()

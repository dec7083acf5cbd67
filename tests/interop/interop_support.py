"""Helpers of the interop tests (no tests here): the gateway served at its own issuer URL, the
Node.js scripts of tests/interop/node run as child processes, and the tool checks.

The gateway's ``issuer`` must equal the URL it is served from, as OIDC clients check (OIDC
Discovery 1.0 §4.3): the port is reserved first and the issuer URL names it.

A missing tool (node, the npm packages installed by ``make interop-deps``, Chromium) skips the
test with the reason, or fails it when ``TOKENRY_REQUIRE_INTEROP=1`` (set by ``.ci/run``), so
that CI never passes by skipping. ``TOKENRY_CHROMIUM`` names another Chromium binary (default:
``chromium`` on the PATH, Debian's /usr/bin/chromium).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tokenry.core.clients import Client
from tokenry.devstack.ca import DevPki
from tokenry.servicekit.config import Settings
from tokenry.servicekit.tls import ServerTls
from tokenry.services.gateway.app import GatewayOptions, build
from tokenry.services.gateway.users import UserStore
from tokenry.store.clients import ClientStore
from tokenry.store.outbox_feed import AppliedSeq

from gateway_support import PASSWORD, USER, GatewaySuite, register, wait_ready
from suite import run_suite

NODE_DIR = Path(__file__).parent / "node"
REQUIRE = "TOKENRY_REQUIRE_INTEROP"
INSTALL_HINT = "run `make interop-deps`"


def require(ok: bool, reason: str) -> None:
    """Skip (or, under TOKENRY_REQUIRE_INTEROP=1, fail) when a tool is missing."""
    if ok:
        return
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{reason} ({REQUIRE}=1: a missing interop tool fails the run)")
    pytest.skip(reason)


def node_binary() -> str:
    node = shutil.which("node")
    require(node is not None, f"node is not installed ({INSTALL_HINT})")
    assert node is not None
    for package in ("openid-client", "jose", "playwright-core"):
        require(
            (NODE_DIR / "node_modules" / package / "package.json").is_file(),
            f"the npm package {package} is not installed in {NODE_DIR} ({INSTALL_HINT})",
        )
    return node


def chromium_binary() -> str:
    path = os.environ.get("TOKENRY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    require(
        Path(path).is_file(),
        f"Chromium is missing: install Debian's chromium and chromium-driver ({INSTALL_HINT})",
    )
    return path


async def run_node(
    script: str,
    payload: dict[str, Any],
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run tests/interop/node/<script> with ``payload`` as JSON on stdin; its JSON result.
    ``env`` is added to this process's environment.

    Asynchronous on purpose: the gateway under test serves from this event loop."""
    node = node_binary()
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        node,
        str(NODE_DIR / script),
        cwd=NODE_DIR,
        env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(json.dumps(payload).encode()), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    elapsed = time.perf_counter() - started
    lines = out.decode().strip().splitlines()
    assert proc.returncode == 0 and lines, f"{script} exited {proc.returncode}: {err.decode()}"
    result: dict[str, Any] = json.loads(lines[-1])
    print(f"\n{script}: {elapsed * 1000:.0f} ms in node (its own steps: {result.get('timings')})")
    assert result["ok"], (
        f"{script} failed: {result.get('error')} (oauth error: {result.get('oauth_error')})\n"
        f"{result.get('stack')}\nwhat it saw before: {json.dumps(result, indent=2)}\n"
        f"{err.decode()}"
    )
    return result


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def interop_gateway(
    settings: Settings,
    pool: asyncpg.Pool,
    services: tuple[str, ...] = ("keyrotator",),
    clients: Sequence[Client] = (),
    tls: DevPki | None = None,
) -> AsyncIterator[GatewaySuite]:
    """The gRPC services named and the gateway, whose issuer URL is the URL it serves on (the
    clients of tests/gateway_support.py are registered, and ``clients``, which have no secret;
    the user alice may sign in). With ``tls``, the gateway serves HTTPS with the certificate
    named "gateway" of that dev PKI (the gRPC services stay plaintext)."""
    for attempt in range(5):  # another process may take the reserved port first
        port = _free_port()
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        at_url = replace(settings, issuer_url=url)
        served = at_url
        if tls is not None:
            server_tls = ServerTls(tls.cert("gateway"), tls.key("gateway"))
            served = replace(at_url, tls=replace(at_url.tls, server=server_tls))
        users = UserStore()
        users.add(USER, PASSWORD)
        applied = AppliedSeq()
        try:
            gateway = build(
                served, "127.0.0.1", port, applied=applied, options=GatewayOptions(users=users)
            )
        except OSError:
            if attempt == 4:
                raise
            continue
        break
    async with run_suite(at_url, pool, services=services) as suite:
        await register(pool, at_url, suite.secrets)
        for client in clients:
            await ClientStore(pool).upsert(client)
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.serve(stop))
        try:
            verify = ssl.create_default_context(cafile=tls.ca) if tls else True
            async with httpx.AsyncClient(base_url=url, timeout=10, verify=verify) as http:
                await wait_ready(http)
                yield GatewaySuite(suite, url, http, applied, suite.secrets)
        finally:
            stop.set()
            await asyncio.gather(task, return_exceptions=True)

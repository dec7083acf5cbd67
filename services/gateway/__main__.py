"""python -m tokenry.services.gateway"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from tokenry.servicekit import config, tls
from tokenry.servicekit import logging as jsonlog
from tokenry.servicekit import telemetry as otel
from tokenry.servicekit import variables as v


def main() -> None:
    """Read and check the whole configuration (every problem at once, exit 2), then serve."""
    reader = config.Reader()
    settings = config.read(reader, need_kek=True)
    addr = reader.get(v.GATEWAY_LISTEN)
    if addr is None:
        default_host = "127.0.0.1" if settings.dev else "0.0.0.0"  # noqa: S104
        addr = (default_host, v.GATEWAY_PORT)
    host, port = addr
    tls.check_listener(reader, settings.tls, host, port, v.GATEWAY_LISTEN.name, dev=settings.dev)
    loop = reader.get(v.EVENT_LOOP)
    reader.get(v.LOGIN_URL)  # checked here with every other value; read again by build()
    try:  # OTEL_* and TOKENRY_METRICS_LISTEN (docs/observability.md)
        telemetry = otel.read_settings("gateway", metrics_listen=reader.get(v.METRICS_LISTEN))
    except otel.TelemetryError as exc:
        reader.problem(str(exc))
    if reader.problems:
        for problem in reader.problems:
            print(f"tokenry-gateway: configuration error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    jsonlog.configure("gateway", settings.log_level)
    if settings.dev:
        print("tokenry-gateway: DEV MODE — human-chosen secrets accepted", file=sys.stderr)

    from tokenry.services.gateway.app import GatewayOptions, build

    async def serve() -> None:
        try:
            gateway = build(
                settings, host, port, options=GatewayOptions(loop=loop, freeze_heap=True)
            )
        except OSError:
            print(
                f"tokenry-gateway: configuration error: cannot listen on {host}:{port}"
                f" (in use?); set {v.GATEWAY_LISTEN.name}",
                file=sys.stderr,
            )
            raise SystemExit(2) from None
        # uvicorn stops on SIGINT/SIGTERM and finishes in-flight requests.
        await gateway.serve(asyncio.Event())

    installed = otel.start_checked(telemetry, "tokenry-gateway", v.METRICS_LISTEN.name)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            if loop == "uvloop":
                import uvloop

                uvloop.run(serve())
            else:
                asyncio.run(serve())
        finally:
            installed.shutdown()  # flush spans and metrics


if __name__ == "__main__":
    main()

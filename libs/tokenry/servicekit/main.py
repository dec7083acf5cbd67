"""The entry point every service's ``__main__`` calls."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence

from tokenry.servicekit import config
from tokenry.servicekit import logging as jsonlog
from tokenry.servicekit.server import Service, run

Build = Callable[[config.Settings, str, int], Service]


def main(name: str, build: Build, service_names: Sequence[str], *, need_kek: bool = False) -> None:
    try:
        settings = config.load(need_kek=need_kek)
        host, port = config.listen_addr(name)
    except config.ConfigError as exc:
        print(f"tokenry-{name}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    jsonlog.configure(name, settings.log_level)
    if settings.dev:
        print(
            f"tokenry-{name}: DEV MODE — human-chosen secrets and plaintext loopback accepted",
            file=sys.stderr,
        )

    async def serve() -> None:
        service = build(settings, host, port)
        await run(service, service_names=service_names)

    asyncio.run(serve())

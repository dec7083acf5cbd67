"""The pipeline tests' own tools work: the TCP proxy that cuts a verifier off, and the service
environment that carries the tuning."""

from __future__ import annotations

import contextlib

import nats
import pytest

from tokenry.devstack import EmbeddedNats
from tokenry.servicekit.config import Settings

from pipeline_support import FAST_REVOCATION, TcpProxy, service_env, wait_until

pytestmark = pytest.mark.integration


async def test_proxy_forwards_cuts_and_resumes(nats_server: EmbeddedNats) -> None:
    proxy = TcpProxy(nats_server.host, nats_server.port)
    await proxy.start()
    try:
        nc = await nats.connect(proxy.url, allow_reconnect=False)
        await nc.flush()
        proxy.cut()
        await wait_until(lambda: not nc.is_connected, 10, "the cut is noticed")
        with contextlib.suppress(Exception):
            await nc.close()
        connected = False
        with contextlib.suppress(Exception):  # refused while cut
            refused = await nats.connect(proxy.url, allow_reconnect=False, connect_timeout=1)
            connected = True
            await refused.close()
        assert not connected, "connected through a cut proxy"
        proxy.resume()
        again = await nats.connect(proxy.url, allow_reconnect=False)
        await again.flush()
        await again.close()
    finally:
        await proxy.close()


def test_service_env_names_the_tuning(settings: Settings) -> None:
    env = service_env(settings, FAST_REVOCATION, "127.0.0.1:1")
    assert env["TOKENRY_PUBLISHER_LEASE_TTL"] == "1.0"
    assert env["TOKENRY_NATS_STREAM"] == settings.stream.name

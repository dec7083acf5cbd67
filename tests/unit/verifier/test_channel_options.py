"""``start_verifier(channel_options=...)``: the gRPC channel arguments of the channels to the
key rotator and the revocation service (docs/verifier.md). The default reconnects after
0.1-2 s (``CHANNEL_OPTIONS``); ``()`` is gRPC's own backoff, which the fault suite's negative
control uses (tests/faults/test_faults_source.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import nats
import pytest

from tokenry.bus.codec import Subjects
from tokenry.devstack.nats import EmbeddedNats
from tokenry.verifier import start_verifier
from tokenry.verifier._runtime import CHANNEL_OPTIONS, resolve_channel_options

from .minting import FakeJwksSource, Minter


def test_none_is_the_brisk_backoff_and_empty_is_grpcs_default() -> None:
    assert resolve_channel_options(None) == CHANNEL_OPTIONS
    assert dict(CHANNEL_OPTIONS)["grpc.max_reconnect_backoff_ms"] == 2_000
    assert resolve_channel_options(()) == ()
    given = [("grpc.keepalive_time_ms", 20_000)]
    assert resolve_channel_options(given) == (("grpc.keepalive_time_ms", 20_000),)


@pytest.mark.parametrize("bad", [["grpc.keepalive_time_ms"], [("a", 1, 2)], [(1, 2)]])
async def test_a_malformed_option_is_refused_before_connecting(bad: Any) -> None:
    with pytest.raises(ValueError, match="channel_options") as err:
        await start_verifier(
            issuer="https://issuer.test",
            audience="demo-api",
            keyrotator_addr="127.0.0.1:1",  # never dialled: the refusal comes first
            nats_url="nats://127.0.0.1:1",
            revocation_addr="127.0.0.1:1",
            channel_options=bad,
        )
    assert "\n" not in str(err.value)


class _UserAgents(grpc.GenericRpcHandler):
    """Any method: note the caller's user-agent, answer UNAVAILABLE (so the verifier retries)."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.called = asyncio.Event()

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        metadata = dict(handler_call_details.invocation_metadata)  # type: ignore[attr-defined]
        self.seen.append(str(metadata.get("user-agent", "")))

        async def refuse(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
            self.called.set()
            await context.abort(grpc.StatusCode.UNAVAILABLE, "test")

        return grpc.unary_stream_rpc_method_handler(refuse)


@contextlib.asynccontextmanager
async def _revocation_service() -> AsyncIterator[tuple[str, _UserAgents]]:
    handler = _UserAgents()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", handler
    finally:
        await server.stop(None)


async def test_the_options_reach_the_revocation_services_channel(
    nats_server: EmbeddedNats,
) -> None:
    subjects = Subjects(f"t{uuid.uuid4().hex[:8]}")
    stream = f"S{uuid.uuid4().hex[:8]}"
    nc = await nats.connect(nats_server.url)
    await nc.jetstream().add_stream(name=stream, subjects=[subjects.events])
    try:
        async with _revocation_service() as (addr, service):
            starting = asyncio.create_task(
                start_verifier(
                    issuer="https://issuer.test",
                    audience="demo-api",
                    jwks_source=FakeJwksSource(Minter()),
                    nats_url=nats_server.url,
                    subjects=subjects,
                    stream=stream,
                    revocation_addr=addr,
                    channel_options=[("grpc.primary_user_agent", "channel-options-probe/7")],
                )
            )
            t0 = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(service.called.wait(), timeout=20)
            print(f"first snapshot call after {time.monotonic() - t0:.2f}s: {service.seen[:1]}")
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
        assert service.seen, "the verifier never asked for a snapshot"
        assert service.seen[0].startswith("channel-options-probe/7")
    finally:
        await nc.jetstream().delete_stream(stream)
        await nc.close()

"""The opt-in health flag (docs/spec.md §4.4, issue 11): ``VerifierRuntime.watch_staleness`` drives
a host's grpc.health. A verifier partitioned from NATS goes NOT_SERVING when it goes stale (so
load balancers route around it) and SERVING again once it is current after the heal; a
verifier that is not cut stays SERVING throughout. The run ends with ``assert_holds``.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from harness import (
    QUICK_BUDGET,
    InProcess,
    Prober,
    Revoker,
    assert_exact,
    finish,
    mint_tokens,
    now,
    settle,
    wait_for,
)
from history import OK, UNAVAILABLE, History, assert_holds
from proxy import FaultProxy

from tokenry.servicekit.config import Settings
from tokenry.verifier import VerifierRuntime

from pipeline_support import stack

pytestmark = pytest.mark.integration
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Host:
    """A gRPC server whose health follows one verifier's staleness, and a watcher of what a
    load balancer's health check would see (every status change, stamped)."""

    def __init__(self, runtime: VerifierRuntime) -> None:
        self.runtime = runtime
        self.health = health_aio.HealthServicer()
        self.server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.seen: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.server.start()

        async def report(stale: bool) -> None:
            await self.health.set("", NOT_SERVING if stale else SERVING)

        self.runtime.watch_staleness(report, interval=0.05)
        self._task = asyncio.create_task(self._check())

    async def _check(self) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
                if not self.seen or self.seen[-1][1] != reply.status:
                    self.seen.append((now(), int(reply.status)))
                await asyncio.sleep(0.02)

    def status(self) -> int | None:
        return self.seen[-1][1] if self.seen else None

    def first(self, status: int, since: float) -> float | None:
        return next((t for t, s in self.seen if t >= since and s == status), None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.server.stop(0)


async def test_health_flag_follows_staleness_through_a_partition(
    tmp_path: Path, settings: Settings, pool: asyncpg.Pool
) -> None:
    nats_port = int(settings.nats_url.rsplit(":", 1)[1])
    async with (
        stack(settings, pool, keyrotator=False) as svc,
        FaultProxy(("127.0.0.1", nats_port)) as proxy,
    ):
        history = History()
        tokens, jtis = await mint_tokens(pool, settings, 6)
        before, during, controls = jtis[0], jtis[1:3], jtis[3:]
        history.controls.update(controls)
        cut_rt = await svc.verifier(nats_url=proxy.nats_url, staleness_budget=QUICK_BUDGET)
        direct_rt = await svc.verifier(staleness_budget=QUICK_BUDGET)
        cut, direct = Host(cut_rt), Host(direct_rt)
        revoker = Revoker(history, svc.secrets, svc.revocation.addr)
        targets = [InProcess("cut", [cut_rt]), InProcess("direct", [direct_rt])]
        prober = Prober(history, tokens, targets, interval=0.01)
        try:
            for host in (cut, direct):
                await host.start()
            prober.start()
            await revoker.revoke(before)
            await settle(history, tokens, now(), 20, "\nsteady state")
            await wait_for(lambda: cut.status() == SERVING, 10, "SERVING before the partition")
            start = now()
            index = history.fault_started("partitioned from NATS", start, {"cut.0"})
            proxy.blackhole()
            for jti in during:
                await revoker.revoke(jti)
            await wait_for(
                lambda: cut.status() == NOT_SERVING, QUICK_BUDGET + 5, "NOT_SERVING when stale"
            )
            await asyncio.sleep(1.0)
            proxy.heal()
            healed = now()
            history.fault_healed(index, healed)
            await wait_for(lambda: cut.status() == SERVING, QUICK_BUDGET + 10, "SERVING again")
            await settle(history, tokens, healed, QUICK_BUDGET + 20, "settled after the heal")
            await assert_exact(targets, pool)
            await finish(prober, history)
        finally:
            await prober.stop()
            await revoker.close()
            for host in (cut, direct):
                await host.close()
        down, up = cut.first(NOT_SERVING, start), cut.first(SERVING, healed)
        assert down is not None and up is not None
        unavailable = next(
            p.at
            for p in history.probes
            if p.verifier == "cut.0" and p.at >= start and p.outcome == UNAVAILABLE
        )
        reopened = next(
            p.at
            for p in history.probes
            if p.verifier == "cut.0" and p.at >= healed and p.outcome == OK
        )
        print(
            f"fault→NOT_SERVING {down - start:.2f}s (first unavailable answer"
            f" {unavailable - start:.2f}s); heal→SERVING {up - healed:.2f}s (first accept"
            f" {reopened - healed:.2f}s); the uncut host saw {direct.seen and len(direct.seen)}"
            " status(es)"
        )
        # The flag follows the verifier within its polling interval plus the health check's.
        assert abs(down - unavailable) < 0.5
        assert abs(up - reopened) < 0.5
        assert [s for _, s in direct.seen] == [SERVING], "the uncut verifier's host flapped"
        assert_holds(history, budget=QUICK_BUDGET)

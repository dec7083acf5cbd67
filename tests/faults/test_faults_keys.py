"""Faults on the key path: a slow or unreachable JWKS source (the key rotator behind the
proxy, with latency, then a blackhole), and the key rotator killed during a rotation.

Key material comes from the key rotator's JWKS, events only hint a refetch (SPEC §4.6): while
the source is away, tokens of keys the verifier holds keep verifying (and revoked ones stay
refused), a token of a key it has never seen fails closed, and verifies once the source is
back. Each run ends with ``assert_holds``.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import asyncpg
import grpc
import pytest
from harness import (
    QUICK_BUDGET,
    InProcess,
    Prober,
    Revoker,
    finish,
    mint_tokens,
    now,
    settle,
)
from history import OK, REVOKED, History, assert_holds
from proxy import FaultProxy
from verifier_child import outcome_of

from tokenry.servicekit.config import Settings
from tokenry.v1 import keyrotator_pb2, keyrotator_pb2_grpc

from pipeline_support import basic, mint, stack

pytestmark = pytest.mark.integration


def outcomes(history: History, verifier: str, jti: str, since: float) -> list[tuple[float, str]]:
    return [
        (p.at, p.outcome)
        for p in history.probes
        if p.verifier == verifier and p.jti == jti and p.at >= since
    ]


async def test_slow_then_unreachable_jwks_source(
    tmp_path: Path, settings: Settings, pool: asyncpg.Pool
) -> None:
    async with stack(settings, pool) as svc:
        assert svc.keyrotator is not None
        rotator_port = int(svc.keyrotator.addr.rsplit(":", 1)[1])
        async with FaultProxy(("127.0.0.1", rotator_port)) as proxy:
            history = History()
            tokens, jtis = await mint_tokens(pool, settings, 7)
            before, during, controls = jtis[:2], jtis[2:4], jtis[4:]
            history.controls.update(controls)
            runtime = await svc.verifier(keyrotator_addr=proxy.addr, staleness_budget=QUICK_BUDGET)
            revoker = Revoker(history, svc.secrets, svc.revocation.addr)
            prober = Prober(
                history, tokens, [InProcess("v", [runtime], by_end=True)], interval=0.01
            ).start()
            channel = grpc.aio.insecure_channel(svc.keyrotator.addr)  # not through the proxy
            try:
                for jti in before:
                    await revoker.revoke(jti)
                await settle(history, tokens, now(), 20, "\nsteady state")
                # The source slows down, then stops answering (no FIN, no RST). Neither makes
                # the verifier stale: it proves currency with the revocation service.
                index = history.fault_started("JWKS source slow, then blackholed", now())
                proxy.latency(2.0)
                await revoker.revoke(during[0])
                await asyncio.sleep(1.0)
                proxy.blackhole()
                await revoker.revoke(during[1])
                await settle(history, tokens, now(), 10, "known kids verify, source blackholed")
                # A new key signs: the verifier learns of it by its event, cannot fetch it.
                # The next key is published ahead of its activation, so the verifier holds it
                # already: rotate until the key that signs is one it never fetched.
                kr = keyrotator_pb2_grpc.KeyRotatorStub(channel)
                for _ in range(3):
                    rotated = await kr.Rotate(
                        keyrotator_pb2.RotateRequest(force=True, request_id=str(uuid.uuid4())),
                        metadata=[("authorization", basic("admin", svc.secrets["admin"]))],
                        timeout=10,
                    )
                    if rotated.active_kid not in runtime.jwks.keys:
                        break
                assert rotated.active_kid not in runtime.jwks.keys
                token, body = await mint(pool, settings)
                assert token.split(".")[0] != next(iter(tokens.jtis)).split(".")[0]
                unknown = body["jti"]
                tokens.add(token, unknown)
                history.controls.add(unknown)
                new_key = now()
                # A request for it waits for the refresh (GetJwks times out after 5 s), then
                # fails closed; the probes go on meanwhile.
                asked = now()
                outcome, answered = await outcome_of(runtime.verifier, token, by_end=True)
                print(f"\nunknown kid, source away: {outcome} after {answered - asked:.2f}s")
                assert outcome != OK
                await asyncio.sleep(1.0)
                proxy.heal()
                healed = now()
                history.fault_healed(index, healed)
                await settle(history, tokens, healed, QUICK_BUDGET + 20, "new kid verifies")
                await finish(prober, history)
            finally:
                await prober.stop()
                await revoker.close()
                await channel.close()
        seen = outcomes(history, "v.0", unknown, new_key)
        while_away = {o for t, o in seen if t < healed}
        first_ok = next(t for t, o in seen if t >= healed and o == OK)
        print(
            f"rotated to {rotated.active_kid}; the new kid answered {sorted(while_away)} while"
            f" the source was away, verified {first_ok - healed:.2f}s after the heal"
        )
        assert while_away and OK not in while_away and REVOKED not in while_away
        # Known kids kept verifying throughout: every control accepted at every probe.
        refused = [
            p for p in history.probes if p.jti in controls and p.jti != unknown and p.outcome != OK
        ]
        assert not refused, f"{len(refused)} refusals of tokens of a known key"
        assert_holds(history, budget=QUICK_BUDGET)

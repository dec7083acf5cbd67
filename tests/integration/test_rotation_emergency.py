"""Emergency key revocation (docs/spec.md §5, docs/keys.md): a running verifier rejects the revoked
kid's tokens once it has applied the event, and the issuer signs with the promoted successor —
which every verifier already knew — with no gap in issuance."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import grpc
import jwt
import pytest

from tokenry.servicekit.config import Settings
from tokenry.v1 import keyrotator_pb2
from tokenry.verifier import start_verifier
from tokenry.verifier.errors import RevokedError

from keys_support import Busy, admin, rotator_config, running_rotator, stub
from suite import Suite, run_suite

pytestmark = pytest.mark.integration


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


class Issuance(Busy):
    """Requests tokens back to back for as long as it runs; records each token and failure."""

    def __init__(self, suite: Suite) -> None:
        super().__init__()
        self.suite = suite
        self.tokens: list[tuple[float, str]] = []  # (perf_counter when received, token)
        self.failures: list[str] = []
        self.new_token = asyncio.Event()

    async def step(self) -> None:
        try:
            resp = await self.suite.token(scope="demo.read")
        except grpc.aio.AioRpcError as exc:
            self.failures.append(f"{exc.code().name}: {exc.details()}")
            return
        self.tokens.append((time.perf_counter(), resp.access_token))
        self.new_token.set()

    async def first_signed_by(self, kid: str, after: float, timeout: float) -> float:
        """Wait until a token received after ``after`` is signed by ``kid``; returns when."""

        async def until() -> float:
            seen = 0
            while True:
                for received, token in self.tokens[seen:]:
                    if received > after and kid_of(token) == kid:
                        return received
                seen = len(self.tokens)
                self.new_token.clear()
                await self.new_token.wait()

        return await asyncio.wait_for(until(), timeout)


async def test_emergency_revoke_rejects_the_kid_and_issuance_never_stops(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with (
        running_rotator(settings, rotator_config(settings)) as addr,
        run_suite(settings, pool, services=("issuer", "revocation")) as suite,
        grpc.aio.insecure_channel(addr) as channel,
    ):
        runtime = await start_verifier(
            issuer=settings.issuer_url,
            audience="demo-api",
            keyrotator_addr=addr,
            revocation_addr=suite.addrs["revocation"],
            nats_url=settings.nats_url,
            subjects=settings.subjects,
            stream=settings.stream.name,
        )
        try:
            await asyncio.wait_for(runtime.state.wait_current(), 20)
            before = (await suite.token(scope="demo.read")).access_token
            compromised = kid_of(before)
            assert (await runtime.verifier.verify(before))["client_id"] == "demo"
            listed = await stub(channel).ListKeys(keyrotator_pb2.ListKeysRequest(), timeout=5)
            successor = next(k.kid for k in listed.keys if k.state == "pending")
            # The verifier knows the successor before it ever signs (it is published pending).
            assert successor in runtime.jwks.keys

            async with Issuance(suite) as issuance:
                await issuance.first_signed_by(compromised, 0, timeout=10)
                started = time.perf_counter()
                resp = await stub(channel).RevokeKey(
                    keyrotator_pb2.RevokeKeyRequest(kid=compromised, reason="compromised"),
                    metadata=admin(suite.secrets),
                    timeout=10,
                )
                acked = time.perf_counter()
                assert (resp.revoked_kid, resp.active_kid) == (compromised, successor)
                await asyncio.wait_for(runtime.state.wait_for_seq(resp.seq), 10)
                applied = time.perf_counter()
                with pytest.raises(RevokedError) as err:
                    await runtime.verifier.verify(before)
                assert err.value.reason == "key_revoked"
                switched = await issuance.first_signed_by(successor, acked, timeout=20)
                mark = len(issuance.tokens)
                await issuance.first_signed_by(successor, switched, timeout=10)
            print(
                f"\nRevokeKey ack {(acked - started) * 1000:.1f} ms;"
                f" applied by the verifier {(applied - acked) * 1000:.1f} ms after the ack;"
                f" issuer signing with the successor {(switched - acked) * 1000:.1f} ms after it"
            )
            # No gap in issuance: every token request succeeded, before, during and after.
            assert issuance.failures == []
            late = [t for r, t in issuance.tokens if r > acked and kid_of(t) == compromised]
            print(
                f"{len(issuance.tokens)} tokens issued without a failure;"
                f" {len(late)} signed by the revoked key in the propagation window (rejected)"
            )
            for token in late:
                with pytest.raises(RevokedError):
                    await runtime.verifier.verify(token)
            # From the switch on, only the successor signs, and its tokens verify.
            after = [t for _, t in issuance.tokens[mark:]]
            assert after and {kid_of(t) for t in after} == {successor}
            for token in after[-20:]:
                assert (await runtime.verifier.verify(token))["client_id"] == "demo"
            # The invariant holds after the emergency: a new published successor.
            assert resp.pending_kid
            await runtime.jwks.refresh(force=True)
            assert resp.pending_kid in runtime.jwks.keys and compromised not in runtime.jwks.keys
        finally:
            await runtime.close()

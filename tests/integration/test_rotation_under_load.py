"""docs/spec.md §8: zero failed verifications across 100 rotations, with tokens issued and verified
continuously (accelerated timing). Two verifiers: one checks each token at once, the other
first sees it later in its life, so the retention of retiring keys is exercised too."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
import grpc
import jwt
import pytest

from tokenry.servicekit.config import Settings
from tokenry.verifier import VerificationError, VerifierRuntime, start_verifier

from keys_support import rotator_config, running_rotator, wait_until
from suite import add_secret_client, run_suite

pytestmark = pytest.mark.integration

ROTATIONS = 100
TOKEN_TTL = 2  # seconds: short-lived tokens so that retention can be short too
LATE = 1.0  # the second verifier first sees each token this long after it was issued


@dataclass
class Tally:
    issued: int = 0
    issue_failures: list[str] = field(default_factory=list)
    verified_now: int = 0
    verified_late: int = 0
    failed: list[str] = field(default_factory=list)
    kids: Counter[str] = field(default_factory=Counter)


async def _verifier(settings: Settings, addr: str, revocation: str) -> VerifierRuntime:
    runtime = await start_verifier(
        issuer=settings.issuer_url,
        audience="demo-api",
        keyrotator_addr=addr,
        revocation_addr=revocation,
        nats_url=settings.nats_url,
        subjects=settings.subjects,
        stream=settings.stream.name,
    )
    await asyncio.wait_for(runtime.state.wait_current(), 20)
    return runtime


async def test_hundred_rotations_under_load_zero_failed_verifications(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    # Accelerated: a rotation every 0.2 s, each successor published 0.2 s before it signs (the
    # lead is ≥ 0.15 s), retiring keys kept 8 s — past the token lifetime plus the issuers' 5 s
    # periodic key check, the backup for their key events (docs/keys.md).
    config = rotator_config(settings, interval=0.2, lead=0.15, retention=8.0)
    async with (
        running_rotator(settings, config) as addr,
        run_suite(settings, pool, services=("issuer", "revocation")) as suite,
    ):
        suite.secrets["fast"] = await add_secret_client(
            pool,
            settings,
            "fast",
            scopes={"demo.read"},
            audiences=("demo-api",),
            access_token_ttl=TOKEN_TTL,
        )
        now_verifier = await _verifier(settings, addr, suite.addrs["revocation"])
        late_verifier = await _verifier(settings, addr, suite.addrs["revocation"])
        tally = Tally()
        stop = asyncio.Event()
        late_queue: asyncio.Queue[tuple[float, str] | None] = asyncio.Queue()

        async def check(runtime: VerifierRuntime, token: str, when: str) -> bool:
            try:
                await runtime.verifier.verify(token)
            except VerificationError as exc:
                tally.failed.append(
                    f"{when}: {exc.reason} kid={jwt.get_unverified_header(token)['kid']}"
                )
                return False
            return True

        async def issue_and_verify() -> None:
            while not stop.is_set():
                try:
                    resp = await suite.token(client_id="fast", scope="demo.read")
                except grpc.aio.AioRpcError as exc:
                    tally.issue_failures.append(f"{exc.code().name}: {exc.details()}")
                    continue
                tally.issued += 1
                tally.kids[jwt.get_unverified_header(resp.access_token)["kid"]] += 1
                if await check(now_verifier, resp.access_token, "at once"):
                    tally.verified_now += 1
                late_queue.put_nowait((time.monotonic() + LATE, resp.access_token))

        async def verify_late() -> None:
            while (item := await late_queue.get()) is not None:
                due, token = item
                # Deliberately late first sight: the token is still valid, its key retiring.
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if await check(late_verifier, token, "late"):
                    tally.verified_late += 1

        start_count = await pool.fetchval(
            "SELECT count(*) FROM signing_keys WHERE state <> 'pending'"
        )
        started = time.perf_counter()
        workers = [asyncio.create_task(issue_and_verify()), asyncio.create_task(verify_late())]
        try:

            async def rotated_enough() -> bool:
                done = await pool.fetchval(
                    "SELECT count(*) FROM signing_keys WHERE state <> 'pending'"
                )
                return bool(done - start_count >= ROTATIONS)

            await wait_until(
                rotated_enough, timeout=ROTATIONS * 0.2 * 10, what="100 rotations", every=0.1
            )
            elapsed = time.perf_counter() - started
        finally:
            stop.set()
            await workers[0]
            late_queue.put_nowait(None)
            await workers[1]
            await now_verifier.close()
            await late_verifier.close()
    rotations = (
        await pool.fetchval("SELECT count(*) FROM signing_keys WHERE state <> 'pending'")
        - start_count
    )
    print(
        f"\n{rotations} rotations in {elapsed:.1f}s: {tally.issued} tokens issued"
        f" ({len(tally.issue_failures)} issuance failures), {tally.verified_now} verified at once,"
        f" {tally.verified_late} verified {LATE:g}s later; {len(tally.failed)} failed verifications;"
        f" {len(tally.kids)} distinct signing keys used"
    )
    assert rotations >= ROTATIONS
    assert tally.failed == []
    assert tally.issue_failures == []
    assert tally.verified_now == tally.issued == tally.verified_late
    # Tokens really were signed across the rotations, not by one key.
    assert len(tally.kids) >= ROTATIONS // 2

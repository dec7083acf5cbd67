"""`tokenry token revoke …` and `tokenry events watch` as a user runs them (processes)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import asyncpg
import pytest

from tokenry.servicekit.config import Settings

from pipeline_support import Stack, mint, stack

pytestmark = pytest.mark.integration


def _env(svc: Stack, client_id: str = "admin") -> dict[str, str]:
    return {
        **os.environ,
        "TOKENRY_HOME": "/nonexistent",
        "TOKENRY_REVOCATION_ADDR": svc.revocation.addr,
        "TOKENRY_CLIENT_ID": client_id,
        "TOKENRY_CLIENT_SECRET": svc.secrets[client_id],
        "TOKENRY_NATS_URL": svc.settings.nats_url,
        "TOKENRY_NATS_PREFIX": svc.settings.subjects.prefix,
        "TOKENRY_NATS_STREAM": svc.settings.stream.name,
    }


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "tokenry"),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_revoke_each_kind_and_watch_the_events(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with stack(settings, pool) as svc:
        env = _env(svc)
        token, claims = await mint(pool, settings)
        before = await pool.fetchval("SELECT count(*) FROM outbox")  # the key rotator's events
        watcher = asyncio.create_task(
            _cli(env, "events", "watch", "--json", "--all", "--count", str(before + 5))
        )
        results = [
            await _cli(env, "token", "revoke", "--jti", "j-1", "--reason", "incident 7"),
            await _cli(env, "token", "revoke", "--grant", "g-1"),
            await _cli(env, "token", "revoke", "--subject", "alice"),
            await _cli(env, "token", "revoke", "--client", "batch"),
            await _cli(_env(svc, "demo"), "token", "revoke", token),
        ]
        for code, _out, err in results:
            assert code == 0, err
        printed = [json.loads(out) for _, out, _ in results]
        assert [p["kind"] for p in printed] == ["jti", "grant", "subject", "client", "jti"]
        assert printed[0]["jti"] == "j-1" and printed[0]["revoked"] is True
        assert "not_before" in printed[2] and "not_before" not in printed[0]
        assert token not in results[4][1]  # a bearer token is never echoed
        code, out, err = await watcher
        assert code == 0, err
        events = [json.loads(line) for line in out.splitlines()]
        assert [e["seq"] for e in events] == list(range(1, before + 6))  # in order, each once
        revocations = [e for e in events if e["type"] == "revocation"]
        assert [(e["kind"], e["value"]) for e in revocations] == [
            ("jti", "j-1"),
            ("grant", "g-1"),
            ("subject", "alice"),
            ("client", "batch"),
            ("jti", claims["jti"]),
        ]
        assert revocations[0]["reason"] == "incident 7" and revocations[0]["actor"] == "admin"


async def test_watch_prints_readable_lines(settings: Settings, pool: asyncpg.Pool) -> None:
    async with stack(settings, pool) as svc:
        env = _env(svc)
        await svc.revoke(subject="alice", reason="left the company")
        code, out, _ = await _cli(env, "events", "watch", "--all", "--count", "1")
        # --all starts with the oldest event held: the key rotator's key event comes first.
        assert code == 0 and out.strip()
        assert ("revoked subject alice" in out) or (" key " in out)


async def test_bad_revoke_commands_exit_1_with_one_line(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with stack(settings, pool) as svc:
        for args, message in (
            ((), "exactly one of"),
            (("--jti", "a", "--subject", "b"), "exactly one of"),
            (("--jti", "has space"), "invalid_request"),
        ):
            code, out, err = await _cli(_env(svc), "token", "revoke", *args)
            assert code == 2 and not out  # usage errors (docs/spec.md §6)
            assert message in err and len(err.strip().splitlines()) == 1
            assert "Traceback" not in err


async def test_non_admin_cannot_revoke_by_subject(settings: Settings, pool: asyncpg.Pool) -> None:
    async with stack(settings, pool) as svc:
        code, _, err = await _cli(_env(svc, "demo"), "token", "revoke", "--subject", "alice")
        assert code == 1 and "insufficient_scope" in err


async def test_watch_shows_each_events_lag_and_clock_skew_at_80_columns(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Each event's lag (arrival − occurred_at); an event stamped in this machine's future (a
    producer whose clock runs ahead) shows as clock skew. Lines fit COLUMNS=80."""
    import time

    import nats

    from tokenry.bus import codec
    from tokenry.core.revocations import Revocation, RevocationKind

    async with stack(settings, pool) as svc:
        env = {**_env(svc), "COLUMNS": "80"}
        reason = "a reason long enough to need a second line on an eighty-column terminal"
        await svc.revoke(subject="alice", reason=reason)
        # A producer ten minutes ahead: published straight to the stream, as a relay would.
        ahead = codec.revocation_event(
            settings.subjects,
            Revocation(RevocationKind.JTI, "skewed-jti", 0, int(time.time()) + 3600),
            time.time() + 600,
            actor="admin",
        )
        nc = await nats.connect(settings.nats_url)
        try:
            seq = int(await pool.fetchval("SELECT max(seq) FROM outbox")) + 1
            await nc.jetstream().publish(ahead.subject, codec.stamp_seq(ahead.payload, seq))
        finally:
            await nc.close()
        held = int(await pool.fetchval("SELECT count(*) FROM outbox")) + 1

        code, out, err = await _cli(env, "events", "watch", "--all", "--count", str(held))
        assert code == 0, err
        print(out)
        lines = out.splitlines()
        assert all(len(line) <= 80 for line in lines)
        text = " ".join(line.strip() for line in lines)
        assert "revoked subject alice" in text and reason in text  # wrapped, not cut
        assert re.search(r"skew -(9|10) min", text)  # the producer's clock runs ahead of ours
        assert text.count(" lag ") >= held - 1

        code, out, err = await _cli(env, "events", "watch", "--json", "--all", "--count", str(held))
        assert code == 0, err
        events = {e.get("value"): e for e in map(json.loads, out.splitlines())}
        assert 0 <= events["alice"]["lag_ms"] < 60_000
        assert -601_000 < events["skewed-jti"]["lag_ms"] < -400_000

"""`tokenry keys list` never cuts a kid or a timestamp, whatever the terminal width."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import asyncpg
import pytest

from tokenry.servicekit.config import Settings

from keys_support import rotator_config, running_rotator

pytestmark = pytest.mark.integration

TOKENRY = str(Path(sys.executable).with_name("tokenry"))


async def _tokenry(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        TOKENRY,
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("columns", ["80", "40"])
async def test_keys_list_keeps_ids_and_times_whole(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path, columns: str
) -> None:
    async with running_rotator(settings, rotator_config(settings)) as addr:
        env = {"TOKENRY_HOME": str(tmp_path), "TOKENRY_KEYROTATOR_ADDR": addr, "COLUMNS": columns}
        code, out, err = await _tokenry(env, "keys", "list", "--json")
        assert code == 0, err
        keys = json.loads(out)
        assert keys
        code, table, err = await _tokenry(env, "keys", "list")
        assert code == 0, err
    assert "…" not in table
    for key in keys:
        assert key["kid"] in table
        for name in ("created_at", "activated_at", "next_transition_at"):
            if key[name]:
                assert key[name] in table, (name, key[name], table)

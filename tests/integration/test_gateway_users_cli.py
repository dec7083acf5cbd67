"""`tokenry user add|list|delete` over the dev user store the gateway's login page reads: the
password never comes from a flag, a running store sees the change without a restart, and the
list stays whole at 40 columns."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from pathlib import Path

import asyncpg
import pytest
from typer.testing import CliRunner

from tokenry.cli.main import run
from tokenry.core.users import UserStore

pytestmark = pytest.mark.integration

TOKENRY = str(Path(sys.executable).with_name("tokenry"))
LONG = "a.very.long.username+with.parts@example-company.test"  # 52 characters


def _run(args: list[str], stdin: str | None, env: dict[str, str]) -> tuple[int, str, str]:
    with CliRunner().isolation(input=stdin, env=env) as (out, err, _):
        code = run(args)
        return code, out.getvalue().decode(), err.getvalue().decode()


async def _tokenry(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> tuple[int, str, str]:
    """The CLI in process (fast), through the console script's entry point (its one-line
    errors); in a thread, as the commands that reach PostgreSQL run their own event loop."""
    base = {"TOKENRY_GATEWAY_USERS": "", "TOKENRY_DATABASE_URL": ""}
    return await asyncio.to_thread(_run, list(args), stdin, {**base, **env})


async def test_the_console_script_adds_a_user(tmp_path: Path) -> None:
    """Once through the installed ``tokenry`` binary, password on stdin."""
    path = tmp_path / "users.json"
    proc = await asyncio.create_subprocess_exec(
        TOKENRY,
        "user",
        "add",
        "alice",
        "--password-stdin",
        "--file",
        str(path),
        env={**os.environ, "COLUMNS": "40"},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(b"correct horse battery\n"), 60)
    assert proc.returncode == 0, err
    assert b"correct horse" not in out + err
    assert UserStore(path).authenticate("alice", "correct horse battery") == "alice"


async def test_user_add_list_delete(tmp_path: Path) -> None:
    env = {"TOKENRY_HOME": str(tmp_path), "COLUMNS": "40"}
    path = tmp_path / "users.json"  # the dev stack's default: $TOKENRY_HOME/users.json
    running = UserStore(path)  # as a running gateway holds it
    assert running.authenticate(LONG, "s3cret-passphrase") is None

    code, out, err = await _tokenry(
        env, "user", "add", LONG, "--password-stdin", stdin="s3cret-passphrase\n"
    )
    assert code == 0, err
    assert "s3cret" not in out + err
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "s3cret" not in path.read_text()  # only the scrypt hash
    # the running store sees the new user at the next sign-in, no restart
    assert running.authenticate(LONG, "s3cret-passphrase") == LONG
    assert running.authenticate(LONG, "wrong-passphrase") is None

    code, out, err = await _tokenry(
        env, "user", "add", "bob", "--password-stdin", stdin="another-passphrase\n"
    )
    assert code == 0, err
    code, out, err = await _tokenry(env, "user", "list")
    assert code == 0, err
    assert out.splitlines() == sorted([LONG, "bob"])  # whole names, one a line, at 40 columns
    code, out, _ = await _tokenry(env, "user", "list", "--json")
    assert json.loads(out) == sorted([LONG, "bob"])

    # bad input: one line, exit 2, nothing changed
    before = path.read_bytes()
    for args, stdin in (
        (("user", "add", "bad name!", "--password-stdin"), "long-enough-pw\n"),
        (("user", "add", "carol", "--password-stdin"), "short\n"),
        (("user", "add", "carol", "--password", "x"), None),  # no password flag exists
    ):
        code, out, err = await _tokenry(env, *args, stdin=stdin)
        assert code == 2, (args, out, err)
        assert len(err.strip().splitlines()) == 1, (args, err)
    assert "No such option: --password" in err  # the last one: the flag does not exist
    assert path.read_bytes() == before

    code, out, err = await _tokenry(env, "user", "delete", "bob")
    assert code == 0, err
    assert running.authenticate("bob", "another-passphrase") is None
    # no database configured here: one line says the sessions were not ended
    assert out == "deleted bob\n"
    assert err.startswith("warning: login sessions of bob were not ended (no database")
    assert len(err.strip().splitlines()) == 1, err
    code, out, err = await _tokenry(env, "user", "delete", "bob")
    assert code == 1 and "no user 'bob'" in err
    code, out, _ = await _tokenry(env, "user", "list")
    assert out.splitlines() == [LONG]


async def test_user_delete_ends_the_users_login_sessions(
    tmp_path: Path, database_url: str, pool: asyncpg.Pool
) -> None:
    """The gateway's sessions are rows of login_sessions (migration 0009): deleting a user ends
    theirs at once, no one else's; an unreachable database is said in one line."""
    path = tmp_path / "users.json"
    UserStore(path).add("alice", "alice-passphrase")
    UserStore(path).add("bob", "bob-passphrase")
    await pool.executemany(
        "INSERT INTO login_sessions (token_hash, subject, auth_time, expires_at)"
        " VALUES ($1, $2, 0, 9999999999)",
        [(os.urandom(32), subject) for subject in ("alice", "alice", "bob")],
    )
    env = {"TOKENRY_HOME": str(tmp_path), "TOKENRY_GATEWAY_USERS": str(path)}

    code, out, err = await _tokenry(
        {**env, "TOKENRY_DATABASE_URL": database_url}, "user", "delete", "alice"
    )
    assert (code, err) == (0, "")
    assert out == "deleted alice\nended 2 login sessions of alice\n"
    subjects = await pool.fetch("SELECT subject FROM login_sessions")
    assert [r["subject"] for r in subjects] == ["bob"]

    unreachable = "postgresql://tokenry@127.0.0.1:1/tokenry"  # nothing listens on port 1
    code, out, err = await _tokenry(env, "user", "delete", "bob", "--database-url", unreachable)
    assert code == 0 and out == "deleted bob\n"
    assert err.startswith(
        "warning: login sessions of bob were not ended (PostgreSQL is unreachable"
    )
    assert len(err.strip().splitlines()) == 1, err
    assert await pool.fetchval("SELECT count(*) FROM login_sessions") == 1

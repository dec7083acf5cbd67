"""`tokenry keys list | rotate | revoke | rewrap` and `tokenry jwks`, run as real processes
against an in-process key rotator: the contracts scripts rely on (docs/spec.md §6)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import asyncpg
import pytest

from tokenry.core.keylifecycle import KeySet
from tokenry.core.keywrap import Kek, KekRing, open_sealed
from tokenry.servicekit.config import Settings
from tokenry.store.active_key import ActiveKeys
from tokenry.store.keys import KeyStore

from keys_support import (
    active_kid,
    pending_kid,
    rotator_config,
    running_rotator,
)
from suite import run_suite

pytestmark = pytest.mark.integration

TOKENRY = str(Path(sys.executable).with_name("tokenry"))


async def tokenry(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        TOKENRY,
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    # An empty TOKENRY_HOME: nothing is picked up from a developer's running `tokenry dev`.
    return {"TOKENRY_HOME": str(tmp_path), **extra}


async def test_keys_list_rotate_revoke_and_jwks(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    config = rotator_config(settings, keysets=(KeySet("access", "ES256"), KeySet("id", "ES256")))
    async with (
        running_rotator(settings, config) as addr,
        run_suite(settings, pool, services=()) as suite,
    ):
        env = _env(tmp_path, TOKENRY_KEYROTATOR_ADDR=addr)
        creds = ["--client-id", "admin", "--client-secret", suite.secrets["admin"]]

        code, out, err = await tokenry("keys", "list", "--json", env=env)
        assert code == 0, err
        keys = json.loads(out)
        assert isinstance(keys, list) and len(keys) == 4
        assert {(k["use"], k["alg"], k["state"]) for k in keys} == {
            ("access", "ES256", "active"),
            ("access", "ES256", "pending"),
            ("id", "ES256", "active"),
            ("id", "ES256", "pending"),
        }
        for key in keys:
            assert key["public_jwk"]["kid"] == key["kid"] and "d" not in key["public_jwk"]
            assert key["created_at"].endswith("Z") and key["has_private_key"] is True

        code, out, err = await tokenry("keys", "list", env=env)
        assert code == 0, err
        assert "active" in out and "pending" in out

        code, out, err = await tokenry("jwks", env=env)
        assert code == 0, err
        assert {k["kid"] for k in json.loads(out)["keys"]} == {k["kid"] for k in keys}

        # Rotation without force waits for the publish lead: a one-line error, exit 1.
        code, out, err = await tokenry("keys", "rotate", *creds, env=env)
        assert code == 1 and err.startswith("error: temporarily_unavailable") and out == ""
        assert len(err.strip().splitlines()) == 1

        old, successor = await active_kid(pool), await pending_kid(pool)
        code, out, err = await tokenry("keys", "rotate", "--force", *creds, env=env)
        assert code == 0, err
        rotated = json.loads(out)
        assert (rotated["active"], rotated["retiring"]) == (successor, old)

        code, out, err = await tokenry(
            "keys", "revoke", rotated["active"], "--reason", "drill", *creds, env=env
        )
        assert code == 0, err
        revoked = json.loads(out)
        assert revoked["revoked"] == rotated["active"]
        assert revoked["active"] == rotated["pending"] == await active_kid(pool)
        assert revoked["seq"] > rotated["seq"]

        code, out, err = await tokenry("keys", "list", "--json", "--all", env=env)
        states = {k["kid"]: k for k in json.loads(out)}
        assert states[rotated["active"]]["state"] == "revoked"
        assert states[rotated["active"]]["revoke_reason"] == "drill"
        assert states[rotated["active"]]["revoked_by"] == "admin"

        # Bad input (exit 2) and missing rights (exit 1): one line on stderr, no traceback.
        for args, expected in (
            (("keys", "revoke", "no-such-kid", *creds), "error: not_found"),
            (("keys", "revoke", "bad kid!", *creds), "error: invalid_request"),
            (
                (
                    "keys",
                    "revoke",
                    old,
                    "--client-id",
                    "demo",
                    "--client-secret",
                    suite.secrets["demo"],
                ),
                "error: insufficient_scope",
            ),
            (
                ("keys", "rotate", "--client-id", "admin", "--client-secret", "wrong"),
                "error: invalid_client",
            ),
        ):
            code, out, err = await tokenry(*args, env=env)
            wanted = 2 if expected == "error: invalid_request" else 1  # docs/spec.md §6
            assert code == wanted and err.startswith(expected), (args, err)
            assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    # The rotator is gone: unreachable, still one line.
    code, out, err = await tokenry("keys", "list", env=env)
    assert code == 3 and "unreachable" in err and "Traceback" not in err  # docs/spec.md §6: 3


async def test_rewrap_under_a_new_kek_without_downtime(
    settings: Settings, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The documented procedure: services hold both KEKs, rewrap, then drop the old one."""
    assert settings.kek is not None
    old, new = settings.kek, Kek.generate()
    both = KekRing(new, (old,))
    # Before the change: everything sealed under the old KEK.
    async with running_rotator(settings, rotator_config(settings)):
        pass
    # Step 1: every service holds both; the rotator seals new keys under the new one.
    issuer = ActiveKeys(KeyStore(pool), both, "ES256")
    await issuer.refresh()
    signing = issuer.current().kid
    async with (
        running_rotator(settings, rotator_config(settings, ring=both)) as addr,
        run_suite(settings, pool, services=()) as suite,
    ):
        env = _env(tmp_path, TOKENRY_KEYROTATOR_ADDR=addr)
        creds = ["--client-id", "admin", "--client-secret", suite.secrets["admin"]]
        code, out, err = await tokenry("keys", "rotate", "--force", *creds, env=env)
        assert code == 0, err
        kek_ids = await pool.fetch("SELECT kek_id FROM signing_keys ORDER BY created_at")
        assert {r["kek_id"] for r in kek_ids} == {old.id, new.id}
        under_old = sum(r["kek_id"] == old.id for r in kek_ids)

        # Step 2: rewrap (database access, both KEKs; the services keep running).
        rewrap_env = _env(
            tmp_path,
            TOKENRY_DATABASE_URL=settings.database_url,
            TOKENRY_KEK=old.encoded(),
            TOKENRY_KEK_NEW=new.encoded(),
        )
        code, out, err = await tokenry("keys", "rewrap", env=rewrap_env)
        assert code == 0, err
        report = json.loads(out)
        assert report == {
            "kek_id": new.id,
            "rewrapped": under_old,
            "unchanged": len(kek_ids) - under_old,
            "failed": [],
        }
        rows = await pool.fetch(
            "SELECT kid, kek_id, private_key_sealed FROM signing_keys"
            " WHERE private_key_sealed IS NOT NULL"
        )
        assert {r["kek_id"] for r in rows} == {new.id}
        for row in rows:
            open_sealed(new, row["kid"], bytes(row["private_key_sealed"]))
        # The issuer holding both never stopped signing; it follows the rotation.
        assert issuer.current().kid == signing
        await issuer.refresh()
        assert issuer.current().kid == await active_kid(pool)

        # Running it again changes nothing.
        code, out, err = await tokenry("keys", "rewrap", env=rewrap_env)
        assert json.loads(out)["rewrapped"] == 0 and code == 0

    # Step 3: services with only the new KEK open everything; the old KEK alone opens nothing.
    only_new = ActiveKeys(KeyStore(pool), new, "ES256")
    await only_new.refresh()
    assert only_new.current().kid == await active_kid(pool)
    only_old = ActiveKeys(KeyStore(pool), old, "ES256")
    await only_old.refresh()
    with pytest.raises(Exception, match="no active"):
        only_old.current()

    # Without the new KEK (or the old one): one-line errors, nothing changed.
    code, _, err = await tokenry(
        "keys",
        "rewrap",
        env=_env(tmp_path, TOKENRY_DATABASE_URL=settings.database_url, TOKENRY_KEK=old.encoded()),
    )
    assert code == 2 and "new KEK" in err  # a configuration error (docs/spec.md §6)
    newer = Kek.generate()
    newer_file = tmp_path / "newer-kek"
    newer_file.write_text(newer.encoded())
    code, out, err = await tokenry(
        "keys",
        "rewrap",
        "--new-kek-file",
        str(newer_file),
        env=_env(tmp_path, TOKENRY_DATABASE_URL=settings.database_url, TOKENRY_KEK=old.encoded()),
    )
    # Every row is under `new`, which was not given: reported, exit 1, nothing touched.
    assert code == 1 and "not given" in err
    assert json.loads(out)["rewrapped"] == 0 and len(json.loads(out)["failed"]) == len(rows)
    assert {r["kek_id"] for r in await pool.fetch("SELECT kek_id FROM signing_keys")} == {new.id}

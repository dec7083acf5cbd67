"""TOKENRY_REFRESH_GRACE (docs/flows.md §3): the refresh-retry grace is configurable, and 0 turns
it off — a confidential client presenting its just-spent refresh token again is then reuse, and
the family is revoked, exactly as for a public client."""

from __future__ import annotations

import secrets
from dataclasses import replace

import asyncpg
import pytest

from tokenry.servicekit import config
from tokenry.servicekit.config import Settings

from issuer_support import issuer_suite, oauth_error

pytestmark = pytest.mark.integration
REFRESH = "refresh_token"


def test_the_variable_reaches_the_settings() -> None:
    env = {
        "TOKENRY_DEV": "1",
        "TOKENRY_DATABASE_URL": "postgresql://tokenry@127.0.0.1/tokenry",
        "TOKENRY_NATS_URL": "nats://127.0.0.1:4222",
        "TOKENRY_SECRET_PEPPER": secrets.token_urlsafe(32),
    }
    assert config.load(env).refresh_grace == 10  # the default
    assert config.load({**env, "TOKENRY_REFRESH_GRACE": "0"}).refresh_grace == 0
    assert config.load({**env, "TOKENRY_REFRESH_GRACE": "3"}).refresh_grace == 3


@pytest.mark.parametrize("grace", [10, 0])
async def test_zero_turns_the_grace_off(settings: Settings, pool: asyncpg.Pool, grace: int) -> None:
    async with issuer_suite(replace(settings, refresh_grace=grace), pool) as s:
        first = await s.code_tokens("web", scope="read")  # a confidential client
        second = await s.token("web", grant_type=REFRESH, refresh_token=first.refresh_token)
        retry = s.token("web", grant_type=REFRESH, refresh_token=first.refresh_token)
        if grace:  # the control: inside the grace, the same successor again
            assert (await retry).refresh_token == second.refresh_token
            return
        _, error, _ = await oauth_error(retry)  # at once, yet reuse: the family is revoked
        assert error == "invalid_grant"
        _, error, _ = await oauth_error(
            s.token("web", grant_type=REFRESH, refresh_token=second.refresh_token)
        )
        assert error == "invalid_grant"

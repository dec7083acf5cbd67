"""docs/spec.md §4 watermark edge: subject/client revocations set not_before = ceil(now) + max clock
skew and compare the token's iat (whole seconds on the issuer clock): a token with iat just
before the watermark is rejected, one minted at or after it is accepted."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from tokenry.servicekit.config import Settings
from tokenry.verifier.errors import RevokedError

from pipeline_support import mint, stack

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("target", "claim"), [("subject", "sub"), ("client_id", "client_id")])
async def test_token_just_before_the_watermark_is_rejected_one_after_is_accepted(
    settings: Settings, pool: asyncpg.Pool, target: str, claim: str
) -> None:
    async with stack(settings, pool) as svc:
        runtime = await svc.verifier()
        resp = await svc.revoke(**{target: "alice"})
        await asyncio.wait_for(runtime.state.wait_for_seq(resp.seq), timeout=10)
        nbf = resp.not_before
        assert nbf > time.time()  # the skew puts it ahead of every clock that is not too far off

        just_before, _ = await mint(pool, settings, **{claim: "alice"}, iat=nbf - 1)
        with pytest.raises(RevokedError):
            await runtime.verifier.verify(just_before)
        # An issuer whose clock runs ahead by up to the skew still mints below the watermark.
        ahead, _ = await mint(pool, settings, **{claim: "alice"}, iat=int(time.time()) + 1)
        with pytest.raises(RevokedError):
            await runtime.verifier.verify(ahead)

        at_the_mark, _ = await mint(pool, settings, **{claim: "alice"}, iat=nbf)
        # iat may be at most the max clock skew (2 s) ahead of the verifier's clock: an issuer
        # within the bound stamps iat = nbf no earlier than nbf - 2 on the verifier's clock.
        await asyncio.sleep(max(0.0, nbf - 2 - time.time()))
        assert (await runtime.verifier.verify(at_the_mark))[claim] == "alice"
        # Another subject/client is untouched.
        other, _ = await mint(pool, settings, **{claim: "bob"}, iat=nbf - 100)
        assert (await runtime.verifier.verify(other))[claim] == "bob"

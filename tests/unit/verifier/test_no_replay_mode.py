"""Issue 11 finding 2: there is no snapshot-less replay mode. A verifier that could only replay
the event stream rebuilt its state from whatever the stream still held, so after a purge or a
JetStream store loss it accepted tokens PostgreSQL says are revoked, and logged nothing. Now
`start_verifier` without a revocation service refuses to start, with one clear line, before it
connects to anything."""

from __future__ import annotations

import pytest

from tokenry.verifier import start_verifier


@pytest.mark.parametrize("revocation_addr", [None, ""])
async def test_start_verifier_without_a_snapshot_source_refuses_to_start(
    revocation_addr: str | None,
) -> None:
    with pytest.raises(ValueError, match="revocation_addr") as err:
        await start_verifier(
            issuer="https://issuer.test",
            audience="demo-api",
            keyrotator_addr="127.0.0.1:1",  # never dialled: the refusal comes first
            nats_url="nats://127.0.0.1:1",
            revocation_addr=revocation_addr,
        )
    assert "\n" not in str(err.value)

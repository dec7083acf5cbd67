"""`tokenry token verify`: local verification with the resource-server library."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Annotated, Any

import typer

from tokenry.cli.common import fail
from tokenry.cli.context import CliError, service_addr, setting


def token_verify(
    token: Annotated[str, typer.Argument(help="The access token (JWT)")],
    audience: Annotated[str, typer.Option(help="This resource server's audience")],
    issuer: Annotated[
        str | None, typer.Option(help="Expected iss (default TOKENRY_ISSUER_URL)")
    ] = None,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for current revocation state")
    ] = 10.0,
) -> None:
    """Verify a token locally with the resource-server library: exit 0 and print its claims,
    or exit 1 with the reason."""
    from tokenry.bus.codec import Subjects
    from tokenry.verifier import VerificationError, start_verifier

    try:
        iss = issuer or setting("TOKENRY_ISSUER_URL", "issuer_url")
        nats_url = setting("TOKENRY_NATS_URL", "nats_url")
        prefix = setting("TOKENRY_NATS_PREFIX", "nats_prefix", "tokenry")
        stream = setting("TOKENRY_NATS_STREAM", "nats_stream", "TOKENRY_EVENTS")
    except CliError as exc:
        raise fail(str(exc)) from None

    async def go() -> dict[str, Any]:
        runtime = await asyncio.wait_for(
            start_verifier(
                issuer=iss,
                audience=audience,
                keyrotator_addr=service_addr("keyrotator"),
                nats_url=nats_url,
                subjects=Subjects(prefix),
                stream=stream,
            ),
            timeout=wait,
        )
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runtime.state.wait_current(), timeout=wait)
            return dict(await runtime.verifier.verify(token))
        finally:
            await runtime.close()

    try:
        claims = asyncio.run(go())
    except VerificationError as exc:
        typer.echo(f"invalid: {exc.reason}: {exc.description}", err=True)
        raise typer.Exit(1) from None
    except TimeoutError:
        raise fail("could not reach the key rotator or NATS in time") from None
    typer.echo(json.dumps(claims, indent=2, sort_keys=True))

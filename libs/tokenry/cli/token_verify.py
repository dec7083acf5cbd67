"""`tokenry token verify`: local verification with the resource-server library.

Against Tokenry (default): keys from the key rotator, revocations from NATS, exactly what an
embedded verifier does. With ``--jwks-url``: any issuer's HTTPS JWKS, signature and claims only
(such an issuer publishes no Tokenry revocation events).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
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
    jwks_url: Annotated[
        str | None,
        typer.Option(help="Verify against this HTTPS JWKS (a non-Tokenry issuer) instead"),
    ] = None,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for current revocation state")
    ] = 10.0,
) -> None:
    """Verify a token locally with the resource-server library: exit 0 and print its claims,
    or exit 1 with the reason."""
    from tokenry.verifier import VerificationError

    # The outcome is reported below, in one line; the library's retry warnings would add more.
    logging.getLogger("tokenry.verifier").setLevel(logging.ERROR)
    try:
        iss = issuer or setting("TOKENRY_ISSUER_URL", "issuer_url")
    except CliError as exc:
        raise fail(str(exc)) from None

    if jwks_url is not None:
        try:
            run = _with_jwks_url(token, audience, iss, jwks_url, wait)
        except ValueError as exc:  # not an https URL
            raise fail(str(exc)) from None
    else:
        try:
            run = _with_tokenry(token, audience, iss, wait)
        except CliError as exc:
            raise fail(str(exc)) from None

    try:
        claims = asyncio.run(run)
    except VerificationError as exc:
        typer.echo(f"invalid: {exc.reason}: {exc.description}", err=True)
        raise typer.Exit(1) from None
    except TimeoutError:
        raise fail("could not reach the key rotator or NATS in time") from None
    typer.echo(json.dumps(claims, indent=2, sort_keys=True))


async def _with_tokenry_runtime(
    token: str, audience: str, iss: str, wait: float, settings: dict[str, str]
) -> dict[str, Any]:
    from tokenry.bus.codec import Subjects
    from tokenry.verifier import start_verifier

    runtime = await asyncio.wait_for(
        start_verifier(
            issuer=iss,
            audience=audience,
            keyrotator_addr=settings["keyrotator"],
            revocation_addr=settings["revocation"],
            nats_url=settings["nats_url"],
            subjects=Subjects(settings["prefix"]),
            stream=settings["stream"],
        ),
        timeout=wait,
    )
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(runtime.state.wait_current(), timeout=wait)
        return dict(await runtime.verifier.verify(token))
    finally:
        await runtime.close()


def _with_tokenry(token: str, audience: str, iss: str, wait: float) -> Any:
    settings = {
        "nats_url": setting("TOKENRY_NATS_URL", "nats_url"),
        "prefix": setting("TOKENRY_NATS_PREFIX", "nats_prefix", "tokenry"),
        "stream": setting("TOKENRY_NATS_STREAM", "nats_stream", "TOKENRY_EVENTS"),
        "keyrotator": service_addr("keyrotator"),
        "revocation": service_addr("revocation"),
    }
    return _with_tokenry_runtime(token, audience, iss, wait, settings)


async def _jwks_run(token: str, audience: str, iss: str, jwks_url: str) -> dict[str, Any]:
    from tokenry.verifier import start_jwks_verifier

    runtime = await start_jwks_verifier(issuer=iss, audience=audience, jwks_url=jwks_url)
    try:
        return dict(await runtime.verifier.verify(token))
    finally:
        await runtime.close()


def _with_jwks_url(token: str, audience: str, iss: str, jwks_url: str, wait: float) -> Any:
    from urllib.parse import urlsplit

    if urlsplit(jwks_url).scheme != "https":
        raise ValueError("--jwks-url must be an https URL")
    return asyncio.wait_for(_jwks_run(token, audience, iss, jwks_url), timeout=wait)

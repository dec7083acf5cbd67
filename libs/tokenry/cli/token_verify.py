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

from tokenry.cli.common import NEGATIVE, UNREACHABLE, USAGE, fail
from tokenry.cli.context import CliError, stack
from tokenry.cli.secrets import token_argument
from tokenry.devstack.endpoints import Stack


def token_verify(  # noqa: PLR0917 - typer maps one parameter per option
    ctx: typer.Context,
    token: Annotated[str, typer.Argument(help="The access token (JWT); - reads it from stdin")],
    audience: Annotated[str, typer.Option(help="This resource server's audience")],
    issuer: Annotated[
        str | None,
        typer.Option(help="Expected iss (default: TOKENRY_ISSUER_URL, then the dev stack's)"),
    ] = None,
    jwks_url: Annotated[
        str | None,
        typer.Option(help="Verify against this HTTPS JWKS (a non-Tokenry issuer) instead"),
    ] = None,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for current revocation state")
    ] = 10.0,
) -> None:
    """Verify a token locally with the resource-server library.

    Exit codes: 0 valid (the claims are printed as JSON), 1 invalid (the reason on stderr),
    2 usage, 3 the key rotator or NATS did not answer within --wait seconds.
    """
    from tokenry.verifier import VerificationError

    # The outcome is reported below, in one line; the library's retry warnings would add more.
    logging.getLogger("tokenry.verifier").setLevel(logging.ERROR)
    try:
        token = token_argument(token)
    except CliError as exc:
        raise fail(str(exc), exc.code) from None
    found = stack(ctx, issuer_url=issuer)
    iss = found.issuer_url.value
    if jwks_url is not None:
        try:
            run = _with_jwks_url(token, audience, iss, jwks_url, wait)
        except ValueError as exc:  # not an https URL
            raise fail(str(exc), USAGE) from None
    else:
        run = _with_tokenry(token, audience, iss, wait, found)

    try:
        claims = asyncio.run(run)
    except VerificationError as exc:
        typer.echo(f"invalid: {exc.reason}: {exc.description}", err=True)
        raise typer.Exit(NEGATIVE) from None
    except (TimeoutError, OSError):
        where = (
            f"the key rotator at {found.addr('keyrotator')} or NATS at"
            f" {found.nats_url.value} ({found.nats_url.source})"
        )
        raise fail(
            f"{where} did not answer within {wait:g}s: unreachable; {found.hint()}", UNREACHABLE
        ) from None
    typer.echo(json.dumps(claims, indent=2, sort_keys=True))


async def _with_tokenry_runtime(
    token: str,
    audience: str,
    iss: str,
    wait: float,
    settings: dict[str, str],
    *,
    tls: tuple[Any, Any] = (None, None),
) -> dict[str, Any]:
    """``tls``: the channel credentials and the NATS ssl context (None, None: plaintext)."""
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
            channel_credentials=tls[0],
            nats_tls=tls[1],
        ),
        timeout=wait,
    )
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(runtime.state.wait_current(), timeout=wait)
        return dict(await runtime.verifier.verify(token))
    finally:
        await runtime.close()


def _with_tokenry(token: str, audience: str, iss: str, wait: float, found: Stack) -> Any:
    settings = {
        "nats_url": found.nats_url.value,
        "prefix": found.nats_prefix,
        "stream": found.nats_stream,
        "keyrotator": found.addr("keyrotator"),
        "revocation": found.addr("revocation"),
    }
    client_tls = found.client_tls()  # the dev CA, or TOKENRY_TLS_CA; None: plaintext
    creds = client_tls.channel_credentials() if client_tls is not None else None
    return _with_tokenry_runtime(
        token, audience, iss, wait, settings, tls=(creds, found.nats_tls())
    )


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

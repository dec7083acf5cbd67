"""Shared CLI plumbing: one-line errors, RPC calls with readable failures."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import grpc
import typer

from tokenry.cli.context import CliError

T = TypeVar("T")


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr; raise the returned Exit (code 1)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def rpc_error(exc: grpc.RpcError, addr: str) -> str:
    from tokenry.servicekit.status import oauth_error_of

    detail = oauth_error_of(exc)
    if detail is not None:
        return f"{detail.error}: {detail.error_description}"
    code = exc.code() if isinstance(exc, grpc.Call) else None
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return f"service at {addr} is unreachable ({code.name})"
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    return f"{code.name if code else 'RPC failed'}: {details}"


def call(addr: str, fn: Callable[[grpc.Channel], T]) -> T:
    """Run ``fn`` on a channel to ``addr``; RPC and CLI errors become one-line exits."""
    try:
        with grpc.insecure_channel(addr) as channel:
            return fn(channel)
    except grpc.RpcError as exc:
        raise fail(rpc_error(exc, addr)) from None
    except CliError as exc:
        raise fail(str(exc)) from None

"""Shared CLI plumbing: one-line errors with the documented exit codes, RPC calls.

Exit codes (docs/spec.md §6, README "The CLI"): 0 ok, 1 a negative answer (the service said no: an
invalid token, a refused credential, a missing scope, not found), 2 usage or configuration
error, 3 unreachable (nothing answered at the address).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import grpc
import typer

from tokenry.cli.context import CliError

T = TypeVar("T")

OK = 0
NEGATIVE = 1
USAGE = 2
UNREACHABLE = 3

# The caller of an admin API (an admin client). --admin-client-id/--admin-client-secret are
# the old names, kept as aliases.
AdminClientId = Annotated[
    str | None,
    typer.Option(
        "--client-id",
        "--admin-client-id",
        help="Admin client id (default: TOKENRY_CLIENT_ID, or the dev admin for the dev stack)",
    ),
]
AdminClientSecret = Annotated[
    str | None,
    typer.Option(
        "--client-secret",
        "--admin-client-secret",
        help="Admin client secret (default: TOKENRY_CLIENT_SECRET)",
    ),
]

_TLS_FAILURE = re.compile(r"handshake|CERTIFICATE_VERIFY_FAILED|WRONG_VERSION_NUMBER", re.I)
_UNREACHABLE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# The request itself was wrong: a usage error, not the service's answer about the world.
_USAGE_CODES = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE)


def fail(message: str, code: int = NEGATIVE) -> typer.Exit:
    """Print ``error: message`` (one line) on stderr; raise the returned Exit."""
    one_line = " ".join(message.split())
    typer.echo(f"error: {one_line}", err=True)
    return typer.Exit(code)


def cli_error(exc: CliError) -> typer.Exit:
    return fail(str(exc), exc.code)


def rpc_error(exc: grpc.RpcError, addr: str, hint: str = "") -> tuple[str, int]:
    """A one-line message and the exit code for a failed call to ``addr``."""
    from tokenry.servicekit.status import oauth_error_of

    detail = oauth_error_of(exc)
    code = exc.code() if isinstance(exc, grpc.Call) else None
    if detail is not None:
        exit_code = USAGE if detail.error == "invalid_request" else NEGATIVE
        return f"{detail.error}: {detail.error_description}", exit_code
    if code in _UNREACHABLE_CODES:
        assert code is not None
        where = f"; {hint}" if hint else ""
        details = exc.details() if isinstance(exc, grpc.Call) else ""
        if _TLS_FAILURE.search(details or ""):
            # The handshake comes before any metadata: no credential was sent.
            return (
                f"TLS handshake with {addr} failed: its certificate does not chain to the CA"
                f" the CLI trusts (TOKENRY_TLS_CA, else the dev CA of $TOKENRY_HOME), or it"
                f" does not speak TLS; nothing was sent{where}",
                UNREACHABLE,
            )
        return f"nothing answers at {addr} ({code.name}): unreachable{where}", UNREACHABLE
    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    exit_code = USAGE if code in _USAGE_CODES else NEGATIVE
    return f"{code.name if code else 'RPC failed'}: {details}", exit_code


def channel(addr: str) -> grpc.Channel:
    """A channel to ``addr``: TLS when a CA is known (``TOKENRY_TLS_CA``, or the dev CA of
    the running ``tokenry dev``), plaintext otherwise (devstack.endpoints has the rule).

    Raises:
        CliError: the TLS files cannot be read (exit 2).
    """
    import click

    from tokenry.cli.context import stack

    current = click.get_current_context(silent=True)
    tls = stack(current if isinstance(current, typer.Context) else None).client_tls()
    if tls is None:
        return grpc.insecure_channel(addr)
    try:
        return tls.secure_channel(addr)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def call(addr: str, fn: Callable[[grpc.Channel], T], *, hint: str = "") -> T:
    """Run ``fn`` on a channel to ``addr``; RPC and CLI errors become one-line exits."""
    try:
        with channel(addr) as open_channel:
            return fn(open_channel)
    except grpc.RpcError as exc:
        message, code = rpc_error(exc, addr, hint)
        raise fail(message, code) from None
    except CliError as exc:
        raise cli_error(exc) from None


def print_wide(table: Any) -> None:
    """Print a rich table without cutting a cell: a narrow terminal wraps the lines instead.

    Ids and timestamps must be copyable whole at any ``COLUMNS`` (80, 40, …).
    """
    from rich.console import Console

    for column in table.columns:
        column.overflow = "fold"
        column.no_wrap = True
    width = Console().width
    needed = Console(width=100_000).measure(table).maximum  # the table's natural width
    Console(width=max(width, needed), soft_wrap=True).print(table)


# asyncio's words when a StreamReaderProtocol's eof_received() returns True on a TLS transport.
_NATS_TLS_CLOSE = "returning true from eof_received() has no effect when using ssl"


class _QuietNatsTlsClose(logging.Filter):
    """Drops asyncio's one warning about nats-py's TLS upgrade, on every TLS connection's close.

    Why it is printed: nats-py upgrades its plaintext socket with ``loop.start_tls`` and hands
    the TLS transport a fresh ``StreamReaderProtocol`` whose ``connection_made`` asyncio never
    calls (``start_tls`` does not), so the protocol believes it is plaintext. When the server
    answers our close with its TLS close_notify, that protocol's ``eof_received`` returns True
    ("keep the transport half-open"), which TLS cannot do, and asyncio says so. The transport
    closes all the same (the warning itself says it has no effect): nothing is lost.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _NATS_TLS_CLOSE


def quiet_nats_tls_close(logger: logging.Logger | None = None) -> None:
    """Install :class:`_QuietNatsTlsClose` on the asyncio logger (once)."""
    target = logger or logging.getLogger("asyncio")
    if not any(isinstance(f, _QuietNatsTlsClose) for f in target.filters):
        target.addFilter(_QuietNatsTlsClose())

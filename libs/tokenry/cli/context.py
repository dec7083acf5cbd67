"""Where the CLI finds services and credentials (docs/spec.md §6).

Addresses: flags, then ``TOKENRY_*`` variables, then the running dev stack's
``$TOKENRY_HOME/dev.json``, then the default ports — the one rule of
:mod:`tokenry.devstack.endpoints`, which the examples use too.

Credentials: flags, then ``TOKENRY_CLIENT_ID`` / ``TOKENRY_CLIENT_SECRET``, then the dev admin
from ``$TOKENRY_HOME/credentials.json`` — sent only to an address of the stack that dev.json
describes, never to whatever else listens on a default port, and over TLS only on a channel that
trusts that stack's dev CA alone (:func:`trusts_only_dev_ca`).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus

import typer

from tokenry.core.errors import TokenryError
from tokenry.devstack.endpoints import CREDENTIALS_FILE, Stack, locate
from tokenry.devstack.endpoints import home as stack_home


class CliError(TokenryError):
    """A one-line error for the user, with its exit code (2: usage or configuration)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Flags:
    """The global options (``tokenry --issuer-addr … COMMAND``), kept on the root context."""

    home: str | None = None
    issuer: str | None = None
    introspector: str | None = None
    revocation: str | None = None
    keyrotator: str | None = None
    nats_url: str | None = None


def home(data_dir: str | None = None) -> Path:
    return stack_home(data_dir)


def stack(ctx: typer.Context | None = None, **overrides: str | None) -> Stack:
    """The stack this command talks to; ``overrides`` are the command's own flags."""
    root = ctx.find_root().obj if ctx is not None else None
    flags = root if isinstance(root, Flags) else Flags()
    given: dict[str, str | None] = {
        "issuer": flags.issuer,
        "introspector": flags.introspector,
        "revocation": flags.revocation,
        "keyrotator": flags.keyrotator,
        "nats_url": flags.nats_url,
    }
    given.update({k: v for k, v in overrides.items() if v})
    return locate(flags=given, dev=True, data_dir=flags.home)


def _same_file(a: str, b: str) -> bool:
    try:
        return (
            Path(a).resolve() == Path(b).resolve() or Path(a).read_bytes() == Path(b).read_bytes()
        )
    except OSError:
        return False


def trusts_only_dev_ca(target: Stack) -> bool:
    """Over TLS, the CLI's channels verify the server against the dev CA of ``target``'s
    dev.json and nothing else, so the dev admin's secret reaches only a stack whose certificate
    chains to it (a stack with another CA fails the handshake before any metadata is sent)."""
    dev = target.dev
    if dev is None or dev.tls_ca is None:
        return True  # `tokenry dev --insecure`: plaintext on loopback, said loudly at its start
    return target.tls_ca is not None and _same_file(target.tls_ca.value, dev.tls_ca)


@dataclass(frozen=True, slots=True)
class Credentials:
    client_id: str
    client_secret: str

    def __repr__(self) -> str:
        return f"Credentials(client_id={self.client_id!r})"

    def basic(self) -> str:
        # RFC 6749 §2.3.1: form-urlencode each part, then base64.
        raw = f"{quote_plus(self.client_id)}:{quote_plus(self.client_secret)}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def credentials(
    client_id: str | None,
    client_secret: str | None,
    *,
    target: Stack | None = None,
    service: str = "issuer",
    role: str = "admin",
) -> Credentials:
    """The credentials for a call to ``service`` of ``target``.

    Raises:
        CliError: none given and the dev admin may not be used here (exit 2), or the dev
            stack that would hold them is not running (exit 3).
    """
    cid = client_id or os.environ.get("TOKENRY_CLIENT_ID")
    secret = client_secret or os.environ.get("TOKENRY_CLIENT_SECRET")
    if cid and secret:
        return Credentials(cid, secret)
    if cid or secret:
        raise CliError("give both --client-id and --client-secret (or neither)")
    target = target or stack()
    path = target.home / CREDENTIALS_FILE
    given = "pass --client-id and --client-secret, or set TOKENRY_CLIENT_ID/TOKENRY_CLIENT_SECRET"
    if target.dev is None:
        if path.exists() and target.addrs[service].source == "default":
            raise CliError(
                f"the dev stack in {target.home} is not running (no live dev.json): start"
                f" `tokenry dev`, or {given} for another stack",
                code=3,
            )
        raise CliError(f"no client credentials: {given}, or run `tokenry dev` (TOKENRY_HOME)")
    if not target.is_dev_target(service):
        addr = target.addrs[service]
        raise CliError(
            f"{service} at {addr.value} (from {addr.source}) is not the dev stack of"
            f" {target.home}, so its admin credentials are not sent there: {given}"
        )
    if not trusts_only_dev_ca(target):
        trusted = target.tls_ca.value if target.tls_ca else "no CA (plaintext)"
        raise CliError(
            f"the CLI would trust {trusted}, not the dev CA of {target.home}"
            f" ({target.dev.tls_ca}): the dev admin credentials go only to a stack whose"
            f" certificate chains to it; unset TOKENRY_TLS_CA, or {given}"
        )
    try:
        data = json.loads(path.read_text())[role]
        return Credentials(data["client_id"], data["client_secret"])
    except (OSError, ValueError, KeyError):
        raise CliError(f"cannot read the dev credentials in {path}: {given}") from None

"""Secrets stay out of argv (issue 13 item 10), as in the Keycloak and Hydra CLIs.

A command line is visible to every user of the machine (``ps``, ``/proc/<pid>/cmdline``) and
lands in shell history, so a secret or a token should not travel in it:

- ``--client-secret-file PATH`` (or ``TOKENRY_CLIENT_SECRET_FILE``) reads the client secret
  from a file, ``-`` meaning standard input; one trailing newline is dropped;
- ``-`` as a TOKEN argument reads the token from standard input.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from tokenry.cli.context import CliError

__all__ = ["ClientSecretFile", "read_secret_file", "token_argument"]

SECRET_FILE_ENV = "TOKENRY_CLIENT_SECRET_FILE"
_MAX_SECRET = 4096
_MAX_TOKEN = 16 * 1024

ClientSecretFile = Annotated[
    str | None,
    typer.Option(
        "--client-secret-file",
        help="Read the client secret from this file ('-': standard input), keeping it out of"
        " argv (default: TOKENRY_CLIENT_SECRET_FILE)",
    ),
]


def _read_stdin(limit: int) -> str:
    data = sys.stdin.read(limit + 1)
    if len(data) > limit:
        raise CliError("standard input is too long", code=2)
    return data


def read_secret_file(path: str | None, client_secret: str | None) -> str | None:
    """The secret named by ``--client-secret-file`` (or its variable), else ``client_secret``.

    Raises:
        CliError: both a secret and a secret file were given, or the file cannot be read or
            is empty (exit 2). The message names the path, never the content.
    """
    path = path or (None if client_secret else os.environ.get(SECRET_FILE_ENV) or None)
    if not path:
        return client_secret
    if client_secret:
        raise CliError("give --client-secret or --client-secret-file, not both", code=2)
    try:
        if path == "-":
            text = _read_stdin(_MAX_SECRET)
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read(_MAX_SECRET + 1)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
        raise CliError(f"cannot read the client secret file {path}: {reason}", code=2) from None
    secret = text.removesuffix("\n").removesuffix("\r")
    if not secret or len(secret) > _MAX_SECRET:
        raise CliError(f"the client secret file {path} is empty or too long", code=2)
    return secret


def token_argument(token: str) -> str:
    """``token`` itself, or for ``-`` the token read from standard input (whitespace around it
    dropped).

    Raises:
        CliError: standard input held no token (exit 2).
    """
    if token != "-":
        return token
    text = _read_stdin(_MAX_TOKEN).strip()
    if not text:
        raise CliError("no token on standard input", code=2)
    return text

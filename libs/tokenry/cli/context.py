"""Where the CLI finds services and credentials: flags, then TOKENRY_* env, then the dev stack's
files in $TOKENRY_HOME (dev.json, credentials.json), then the default ports (SPEC §6)."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from tokenry.servicekit.config import DEFAULT_PORTS


class CliError(Exception):
    """A one-line error for the user (exit code 1)."""


def home(data_dir: str | None = None) -> Path:
    return Path(data_dir or os.environ.get("TOKENRY_HOME") or ".tokenry").resolve()


def _dev_json() -> dict[str, Any]:
    path = home() / "dev.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


def service_addr(service: str) -> str:
    env = os.environ.get(f"TOKENRY_{service.upper()}_ADDR")
    if env:
        return env
    dev = _dev_json().get("addrs", {}).get(service)
    return str(dev) if dev else f"127.0.0.1:{DEFAULT_PORTS[service]}"


def setting(env_name: str, dev_key: str, default: str | None = None) -> str:
    value = os.environ.get(env_name) or _dev_json().get(dev_key) or default
    if not value:
        raise CliError(f"{env_name} is not set and no running `tokenry dev` was found")
    return str(value)


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
    client_id: str | None, client_secret: str | None, *, role: str = "admin"
) -> Credentials:
    cid = client_id or os.environ.get("TOKENRY_CLIENT_ID")
    secret = client_secret or os.environ.get("TOKENRY_CLIENT_SECRET")
    if cid and secret:
        return Credentials(cid, secret)
    if cid or secret:
        raise CliError("give both --client-id and --client-secret (or neither)")
    path = home() / "credentials.json"
    try:
        data = json.loads(path.read_text())[role]
        return Credentials(data["client_id"], data["client_secret"])
    except (OSError, ValueError, KeyError):
        raise CliError(
            f"no client credentials: pass --client-id/--client-secret, set TOKENRY_CLIENT_ID/"
            f"TOKENRY_CLIENT_SECRET, or run `tokenry dev` (which writes {path})"
        ) from None

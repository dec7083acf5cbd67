"""Configuration from ``TOKENRY_*`` environment variables, validated at start-up.

Each bad value gets its own clear error naming the variable; no config file is needed.
Secret values (KEK, pepper) are read from the variable or from a ``*_FILE`` path and never
echoed back in an error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from tokenry.bus.codec import Subjects
from tokenry.bus.nats_conn import StreamSettings
from tokenry.core.client_secrets import Pepper, pepper_id
from tokenry.core.keywrap import Kek, secret_text
from tokenry.core.signing import SUPPORTED_ALGS

DEFAULT_PORTS = {"issuer": 50051, "introspector": 50052, "revocation": 50053, "keyrotator": 50054}


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    dev: bool
    database_url: str
    nats_url: str
    issuer_url: str
    subjects: Subjects
    stream: StreamSettings
    log_level: str
    access_token_alg: str
    kek: Kek | None
    peppers: dict[str, Pepper]

    def __repr__(self) -> str:  # the URLs may carry passwords; keys never print
        return f"Settings(dev={self.dev}, issuer_url={self.issuer_url!r})"


def _get(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = env.get(name, default)
    if value is None or value == "":
        raise ConfigError(f"{name} is required")
    return value


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """A secret from NAME or from the file named by NAME_FILE."""
    try:
        return secret_text(env, name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise ConfigError(f"{name} must be 1/0, true/false or yes/no")


def parse_addr(value: str, name: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{name} must be host:port, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - explicit host wins


def load(env: Mapping[str, str] | None = None, *, need_kek: bool = False) -> Settings:
    env = os.environ if env is None else env
    dev = _bool(env, "TOKENRY_DEV")
    kek_text = _secret(env, "TOKENRY_KEK")
    if need_kek and kek_text is None:
        raise ConfigError("TOKENRY_KEK (or TOKENRY_KEK_FILE) is required: a base64url 32-byte key")
    try:
        kek = Kek.parse(kek_text) if kek_text else None
    except ValueError:
        raise ConfigError("TOKENRY_KEK must be a base64url-encoded 32-byte key") from None
    peppers: dict[str, Pepper] = {}
    pepper_text = _secret(env, "TOKENRY_SECRET_PEPPER")
    if pepper_text is None:
        raise ConfigError(
            "TOKENRY_SECRET_PEPPER (or _FILE) is required: ≥ 32 random bytes, base64url"
        )
    key = pepper_text.encode()
    if len(key) < 32:
        raise ConfigError("TOKENRY_SECRET_PEPPER must be at least 32 characters of random data")
    peppers[pepper_id(key)] = Pepper(pepper_id(key), key)
    alg = env.get("TOKENRY_ACCESS_TOKEN_ALG", "ES256")
    if alg not in SUPPORTED_ALGS:
        raise ConfigError(f"TOKENRY_ACCESS_TOKEN_ALG must be one of {', '.join(SUPPORTED_ALGS)}")
    replicas_raw = env.get("TOKENRY_STREAM_REPLICAS", "1")
    if not replicas_raw.isdigit() or not 1 <= int(replicas_raw) <= 5:
        raise ConfigError("TOKENRY_STREAM_REPLICAS must be an integer from 1 to 5")
    prefix = env.get("TOKENRY_NATS_PREFIX", "tokenry")
    if not prefix.replace("_", "").replace("-", "").isalnum():
        raise ConfigError("TOKENRY_NATS_PREFIX must be a single NATS subject token")
    return Settings(
        dev=dev,
        database_url=_get(env, "TOKENRY_DATABASE_URL"),
        nats_url=_get(env, "TOKENRY_NATS_URL"),
        issuer_url=_get(env, "TOKENRY_ISSUER_URL", "http://127.0.0.1:8080" if dev else None),
        subjects=Subjects(prefix),
        stream=StreamSettings(
            name=env.get("TOKENRY_NATS_STREAM", "TOKENRY_EVENTS"), replicas=int(replicas_raw)
        ),
        log_level=env.get("TOKENRY_LOG_LEVEL", "INFO"),
        access_token_alg=alg,
        kek=kek,
        peppers=peppers,
    )


def listen_addr(service: str, env: Mapping[str, str] | None = None) -> tuple[str, int]:
    """Where a service listens: ``TOKENRY_<SERVICE>_LISTEN`` or its default port."""
    env = os.environ if env is None else env
    name = f"TOKENRY_{service.upper()}_LISTEN"
    default_host = "127.0.0.1" if _bool(env, "TOKENRY_DEV") else "0.0.0.0"  # noqa: S104
    return parse_addr(env.get(name, f"{default_host}:{DEFAULT_PORTS[service]}"), name)

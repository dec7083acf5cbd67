"""Configuration from ``TOKENRY_*`` environment variables, validated at start-up.

One small reader, not pydantic-settings: every variable is declared once in
:mod:`tokenry.servicekit.variables` (the table docs/operations.md prints, kept equal by a test),
and a :class:`Reader` collects every bad value before anything starts, so a service reports all of
them in one go and exits 2 (docs/spec.md §6) instead of failing on the first. Secret values (KEK,
pepper) come from the variable or from a ``*_FILE`` path and are never echoed back; neither are
URLs, which may carry passwords.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from tokenry.bus.codec import Subjects
from tokenry.bus.nats_conn import StreamSettings
from tokenry.core.client_secrets import Pepper, pepper_id
from tokenry.core.errors import TokenryError
from tokenry.core.keywrap import Kek, secret_text
from tokenry.servicekit import tls as transport
from tokenry.servicekit import variables as v
from tokenry.servicekit.variables import DEFAULT_PORTS, Var, parse_addr_text

__all__ = [
    "DEFAULT_PORTS",
    "ConfigError",
    "Reader",
    "Settings",
    "listen_addr",
    "load",
    "parse_addr",
    "read",
    "read_listen",
]

T = TypeVar("T")


class ConfigError(TokenryError, ValueError):
    """One or more configuration values are missing or invalid; each problem names its variable.

    Attributes:
        problems: one line per bad value, in the order of the table.
    """

    def __init__(self, *problems: str) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


class Reader:
    """Reads declared variables from ``env`` and collects every problem instead of raising.

    A bad value is recorded and its default returned, so reading goes on; :meth:`check` raises
    one :class:`ConfigError` listing all of them.
    """

    __slots__ = ("env", "problems")

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.problems: list[str] = []

    def get(self, var: Var[T]) -> T:
        raw = self.env.get(var.name, "").strip()
        if not raw:
            if var.required:
                self.problem(f"{var.name} is required: {var.doc}")
            return var.default
        try:
            return var.parse(raw)
        except ValueError as exc:
            self.problem(f"{var.name} {exc}")
            return var.default

    def secret(self, var: Var[T]) -> str | None:
        """The text of a secret from ``NAME`` or the file ``NAME_FILE`` names (never echoed)."""
        try:
            return secret_text(self.env, var.name)
        except ValueError as exc:
            self.problem(str(exc))
            return None

    def problem(self, text: str) -> None:
        """Record a problem once (a variable may be read by several parts)."""
        if text not in self.problems:
            self.problems.append(text)

    def check(self) -> None:
        """Raise one ConfigError with every problem found so far.

        Raises:
            ConfigError: at least one value was bad.
        """
        if self.problems:
            raise ConfigError(*self.problems)


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
    #: TLS of the listener and of the connection to NATS (servicekit.tls); plaintext if unset
    tls: transport.Transport = transport.PLAINTEXT
    #: TOKENRY_REFRESH_GRACE: the refresh-retry grace of the issuer and the gateway's flows
    refresh_grace: int = v.REFRESH_GRACE.default

    def __repr__(self) -> str:  # the URLs may carry passwords; keys never print
        return f"Settings(dev={self.dev}, issuer_url={self.issuer_url!r})"


def _kek(reader: Reader, *, need_kek: bool) -> Kek | None:
    text = reader.secret(v.KEK)
    if text is None:
        if need_kek and not reader.env.get(v.KEK.name + "_FILE"):
            reader.problem(f"{v.KEK.name} (or {v.KEK.name}_FILE) is required: {v.KEK.doc}")
        return None
    try:
        return Kek.parse(text)
    except ValueError:
        reader.problem(f"{v.KEK.name} must be a base64url-encoded 32-byte key")
        return None


def _peppers(reader: Reader) -> dict[str, Pepper]:
    text = reader.secret(v.SECRET_PEPPER)
    name = v.SECRET_PEPPER.name
    if text is None:
        if not reader.env.get(name + "_FILE"):
            reader.problem(f"{name} (or {name}_FILE) is required: {v.SECRET_PEPPER.doc}")
        return {}
    key = text.encode()
    if len(key) < 32:
        reader.problem(f"{name} must be at least 32 characters of random data")
        return {}
    return {pepper_id(key): Pepper(pepper_id(key), key)}


def read(reader: Reader, *, need_kek: bool = False) -> Settings:
    """The settings every service shares; problems are collected in ``reader``."""
    dev = reader.get(v.DEV)
    issuer_url = reader.get(v.ISSUER_URL)
    if not issuer_url:
        if dev:
            issuer_url = v.DEV_ISSUER_URL
        elif not reader.env.get(v.ISSUER_URL.name, "").strip():
            reader.problem(f"{v.ISSUER_URL.name} is required outside dev mode: {v.ISSUER_URL.doc}")
    # Read where they are used (servicekit.verifier_access, servicekit.grpcmeta); checked here
    # so that a bad value is one more line of the start-up report, not a failure later.
    for checked in (v.VERIFIER_ALLOWED_IDS, v.VERIFIER_AUTH, v.TRUSTED_PROXY_HEADER):
        reader.get(checked)
    return Settings(
        dev=dev,
        database_url=reader.get(v.DATABASE_URL),
        nats_url=reader.get(v.NATS_URL),
        issuer_url=issuer_url,
        subjects=Subjects(reader.get(v.NATS_PREFIX)),
        stream=StreamSettings(name=reader.get(v.NATS_STREAM), replicas=reader.get(v.REPLICAS)),
        log_level=reader.get(v.LOG_LEVEL),
        access_token_alg=reader.get(v.ACCESS_TOKEN_ALG),
        kek=_kek(reader, need_kek=need_kek),
        peppers=_peppers(reader),
        tls=transport.read_transport(reader),
        refresh_grace=reader.get(v.REFRESH_GRACE),
    )


def load(env: Mapping[str, str] | None = None, *, need_kek: bool = False) -> Settings:
    """The shared settings from ``env`` (default ``os.environ``).

    Raises:
        ConfigError: every bad or missing value, each naming its variable.
    """
    reader = Reader(env)
    settings = read(reader, need_kek=need_kek)
    reader.check()
    return settings


def parse_addr(value: str, name: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6); an empty host means every interface."""
    try:
        return parse_addr_text(value)
    except ValueError as exc:
        raise ConfigError(f"{name} {exc}") from None


def read_listen(reader: Reader, service: str) -> tuple[str, int]:
    """Where ``service`` listens: ``TOKENRY_<SERVICE>_LISTEN`` or its default port.

    Loopback in dev mode, every interface otherwise.
    """
    var = v.LISTEN[service]
    addr = reader.get(var)
    if addr is not None:
        return addr
    default_host = "127.0.0.1" if reader.get(v.DEV) else "0.0.0.0"  # noqa: S104
    return default_host, DEFAULT_PORTS[service]


def listen_addr(service: str, env: Mapping[str, str] | None = None) -> tuple[str, int]:
    """Where a service listens (see :func:`read_listen`).

    Raises:
        ConfigError: the variable is not ``host:port``.
    """
    reader = Reader(env)
    addr = read_listen(reader, service)
    reader.check()
    return addr

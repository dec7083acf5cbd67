"""Every ``TOKENRY_*`` variable the services read, declared once: name, parser, default, meaning.

This table is the documentation: docs/operations.md prints :func:`markdown_table` (regenerate it
with ``python -m tokenry.servicekit.variables``), and tests/unit/test_config.py fails when the two
differ or when a service reads a variable that is not declared here. The reader that applies it
is :mod:`tokenry.servicekit.config`.

Each parser raises ``ValueError("must be …")``; the reader prefixes the variable's name. A
message never repeats a secret or a URL (URLs may carry passwords).

Size: the one table of every setting (issue 12 item 5) and its parsers; split, it would no longer
be one table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from tokenry.core.clients import MAX_ACCESS_TOKEN_TTL
from tokenry.core.keylifecycle import KeySet, parse_keysets
from tokenry.core.refresh import DEFAULT_GRACE
from tokenry.core.revocations import DEFAULT_MAX_CLOCK_SKEW
from tokenry.core.signing import SUPPORTED_ALGS

T = TypeVar("T")

DEFAULT_PORTS = {"issuer": 50051, "introspector": 50052, "revocation": 50053, "keyrotator": 50054}
DEV_ISSUER_URL = "http://127.0.0.1:8080"
EVENT_LOOPS = ("asyncio", "uvloop")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# The key rotator's timing (docs/keys.md).
DEFAULT_ROTATION_INTERVAL = 7 * 86400.0
# What the gateway lets HTTP caches keep /.well-known/jwks.json (Cache-Control max-age), and
# the longest a third-party verifier is expected to cache it. Tokenry's own verifiers refetch on
# the key event and on an unknown kid, far sooner.
DEFAULT_JWKS_CACHE_TTL = 15 * 60.0
DEFAULT_PUBLISH_LEAD = 3600.0
# Past the maximum token lifetime: the verifiers' exp leeway (30 s), clock skew, and the
# issuers' periodic key check (5 s) — an issuer that missed the event signs a little longer.
RETENTION_LEEWAY = 5 * 60.0
# ID tokens share the global maximum (10 min by default, never above an hour).
MAX_TOKEN_TTL = float(MAX_ACCESS_TOKEN_TTL)
DEFAULT_RETENTION = MAX_TOKEN_TTL + RETENTION_LEEWAY
DEFAULT_KEYROTATOR_LEASE_TTL = 10.0
DEFAULT_ID_TOKEN_KEYSETS = "id:RS256,id:ES256"  # OIDC Core §15.1: RS256 by default
# A connection re-handshakes at least this often, so certificates rotate into it (issue 13).
DEFAULT_MAX_CONNECTION_AGE = 3600.0


@dataclass(frozen=True, slots=True)
class Var(Generic[T]):
    """One environment variable.

    Attributes:
        name: the variable, ``TOKENRY_…``.
        parse: text → value; raises ``ValueError("must be …")``.
        default: the value when unset or empty.
        doc: one line for the table.
        used_by: which services read it (``all`` or a list).
        shown_default: the default as the table prints it.
        required: unset is an error.
    """

    name: str
    parse: Callable[[str], T]
    default: T
    doc: str
    used_by: str = "all"
    shown_default: str = ""
    required: bool = False


# --- parsers ---------------------------------------------------------------------------------


def integer(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"must be an integer from {low} to {high}, got {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}, got {value}")
        return value

    return parse


def number(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"must be a number from {low:g} to {high:g}, got {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(f"must be from {low:g} to {high:g}, got {text}")
        return value

    return parse


def flag(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes"):
        return True
    if lowered in ("0", "false", "no"):
        return False
    raise ValueError(f"must be 1/0, true/false or yes/no, got {text!r}")


def choice(options: tuple[str, ...], *, upper: bool = False) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.upper() if upper else text
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {text!r}")
        return value

    return parse


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def duration(text: str) -> float:
    """Seconds, or a number with a unit: ``90s``, ``15m``, ``1h``, ``7d``."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"must be a duration such as 90s, 15m, 1h or 7d, got {text!r}")
    value = float(match.group(1)) * _UNITS[match.group(2)]
    if not (math.isfinite(value) and value > 0):
        raise ValueError("must be positive")
    return value


def parse_addr_text(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"must be host:port, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an explicit host wins


def listen(text: str) -> tuple[str, int] | None:
    return parse_addr_text(text)


def _url(text: str, schemes: tuple[str, ...], example: str) -> None:
    """A URL with one of ``schemes`` and a valid port; the message never holds the URL."""
    wanted = f"must be a URL such as {example}"
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        raise ValueError(f"{wanted} (its port is not a number)") from None
    if parts.scheme not in schemes:
        got = f"scheme {parts.scheme!r}" if parts.scheme and "://" in text else "no scheme"
        raise ValueError(f"{wanted} ({got})")


def postgres_url(text: str) -> str:
    """asyncpg's DSN syntax; the host may be in the query (``?host=/socket/dir``)."""
    _url(text, ("postgresql", "postgres"), "postgresql://user:password@host:5432/dbname")
    return text


def nats_url(text: str) -> str:
    _url(text, ("nats", "tls", "ws", "wss"), "nats://user:password@host:4222")
    if not urlsplit(text).hostname:
        raise ValueError("must be a URL such as nats://user:password@host:4222 (no host)")
    return text


def http_url(text: str) -> str:
    _url(text, ("https", "http"), "https://auth.example.com")
    if not urlsplit(text).hostname:
        raise ValueError(f"must be a URL such as https://auth.example.com, got {text!r}")
    return text


def subject_token(text: str) -> str:
    if not text.replace("_", "").replace("-", "").isalnum():
        raise ValueError(
            f"must be a single NATS subject token (letters, digits, _ -), got {text!r}"
        )
    return text


def stream_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise ValueError(f"must be a JetStream stream name (letters, digits, _ -), got {text!r}")
    return text


def keysets(text: str) -> tuple[KeySet, ...]:
    try:
        return parse_keysets(text)
    except ValueError as exc:
        raise ValueError(f"must be use:alg pairs such as access:ES256,id:RS256 ({exc})") from None


def path(text: str) -> str:
    return text  # checked where the file is read (servicekit.tls), with the path in the message


def spiffe_patterns(text: str) -> str:
    """Comma- or space-separated ``spiffe://`` ID patterns (``*`` stands for one segment)."""
    for part in re.split(r"[\s,]+", text.strip()):
        if part and (not part.startswith("spiffe://") or len(part) <= len("spiffe://")):
            raise ValueError("must be spiffe:// ID patterns, e.g. spiffe://example.org/ns/*/sa/x")
    return text


def metadata_key(text: str) -> str:
    """A gRPC metadata / HTTP header name (RFC 9110 token, lower-cased by gRPC)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", text.strip().lower()):
        raise ValueError("must be a header name such as x-forwarded-for")
    return text.strip().lower()


def _unchecked(text: str) -> str:
    return text  # secrets: read and checked by the reader, never echoed


# --- the table -------------------------------------------------------------------------------

DEV = Var(
    "TOKENRY_DEV", flag, False, "dev mode: human-chosen secrets, plaintext allowed", "all", "0"
)
DATABASE_URL = Var(
    "TOKENRY_DATABASE_URL",
    postgres_url,
    "",
    "PostgreSQL URL (asyncpg syntax), postgresql://user:password@host:5432/dbname",
    required=True,
)
NATS_URL = Var(
    "TOKENRY_NATS_URL",
    nats_url,
    "",
    "NATS URL with JetStream, credentials in the URL (nats://user:pass@host:4222)",
    required=True,
)
ISSUER_URL = Var(
    "TOKENRY_ISSUER_URL",
    http_url,
    "",
    "the `iss` of every token, one per deployment (required outside dev mode)",
    shown_default=f"dev: {DEV_ISSUER_URL}",
)
KEK = Var(
    "TOKENRY_KEK",
    _unchecked,
    "",
    "32-byte key-encryption key, base64url; or `TOKENRY_KEK_FILE`",
    "issuer, keyrotator",
)
KEK_NEW = Var(
    "TOKENRY_KEK_NEW",
    _unchecked,
    "",
    "the next KEK during a rewrap (docs/keys.md); or `TOKENRY_KEK_NEW_FILE`",
    "keyrotator",
)
SECRET_PEPPER = Var(
    "TOKENRY_SECRET_PEPPER",
    _unchecked,
    "",
    "≥ 32 random characters, the key of client-secret hashes; or `TOKENRY_SECRET_PEPPER_FILE`",
)
ACCESS_TOKEN_ALG = Var(
    "TOKENRY_ACCESS_TOKEN_ALG",
    choice(tuple(SUPPORTED_ALGS)),
    "ES256",
    f"access-token signing algorithm: {', '.join(SUPPORTED_ALGS)}",
    shown_default="ES256",
)
NATS_PREFIX = Var(
    "TOKENRY_NATS_PREFIX",
    subject_token,
    "tokenry",
    "first token of every subject",
    "all",
    "tokenry",
)
NATS_STREAM = Var(
    "TOKENRY_NATS_STREAM",
    stream_name,
    "TOKENRY_EVENTS",
    "JetStream stream of the events",
    "all",
    "TOKENRY_EVENTS",
)
REPLICAS = Var(
    "TOKENRY_STREAM_REPLICAS",
    integer(1, 5),
    1,
    "replicas of the stream, 1–5 (3 in production)",
    "all",
    "1",
)
LOG_LEVEL = Var(
    "TOKENRY_LOG_LEVEL",
    choice(LOG_LEVELS, upper=True),
    "INFO",
    f"{', '.join(LOG_LEVELS)} (any case)",
    "all",
    "INFO",
)
WORKERS = Var(
    "TOKENRY_WORKERS",
    integer(1, 64),
    1,
    "processes sharing the port, 1–64 (also `--workers N`)",
    "all",
    "1",
)
EVENT_LOOP = Var(
    "TOKENRY_EVENT_LOOP",
    choice(EVENT_LOOPS),
    "asyncio",
    "`asyncio` or `uvloop` (the server extra installs it)",
    "all",
    "asyncio",
)
METRICS_LISTEN = Var(
    "TOKENRY_METRICS_LISTEN",
    listen,
    None,
    "`host:port` of the Prometheus scrape endpoint; worker i of `--workers` uses port + i "
    "(docs/observability.md)",
    "all",
    "off",
)
LISTEN = {
    service: Var(
        f"TOKENRY_{service.upper()}_LISTEN",
        listen,
        None,
        f"`host:port` the {service} listens on (dev mode: 127.0.0.1, else 0.0.0.0)",
        service,
        f":{port}",
    )
    for service, port in DEFAULT_PORTS.items()
}
GATEWAY_PORT = 8080
GATEWAY_LISTEN = Var(
    "TOKENRY_GATEWAY_LISTEN",
    listen,
    None,
    "`host:port` the HTTP gateway listens on (dev mode: 127.0.0.1, else 0.0.0.0); "
    "TOKENRY_ISSUER_URL is its external URL (docs/gateway.md)",
    "gateway",
    f":{GATEWAY_PORT}",
)


def _absolute_path(text: str) -> str:
    if not text.startswith("/"):
        raise ValueError("must be an absolute path")
    return text


GATEWAY_USERS = Var(
    "TOKENRY_GATEWAY_USERS",
    _absolute_path,
    "",
    "the dev user store of the built-in login page (JSON, scrypt hashes; docs/gateway.md)",
    "gateway",
    "none",
)
LOGIN_URL = Var(
    "TOKENRY_LOGIN_URL",
    http_url,
    "",
    "an external login app: /oauth2/authorize redirects the browser there with a"
    " login_challenge, and it completes through the issuer's CompleteAuthorization"
    " (docs/gateway.md)",
    "gateway",
    "the built-in pages",
)
MAX_CLOCK_SKEW = Var(
    "TOKENRY_MAX_CLOCK_SKEW",
    integer(0, 300),
    DEFAULT_MAX_CLOCK_SKEW,
    "seconds added to subject/client revocation watermarks; issuers off PostgreSQL's clock by"
    " more stop minting, 0–300 (docs/events.md)",
    "issuer, revocation",
    str(DEFAULT_MAX_CLOCK_SKEW),
)
REFRESH_GRACE = Var(
    "TOKENRY_REFRESH_GRACE",
    integer(0, 60),
    DEFAULT_GRACE,
    "seconds in which a confidential client presenting its just-rotated refresh token again gets"
    " the same successor instead of a family revocation; 0 = off; public clients never"
    " (docs/flows.md §3, with its threat)",
    "issuer, gateway",
    str(DEFAULT_GRACE),
)
HEARTBEAT_INTERVAL = Var(
    "TOKENRY_HEARTBEAT_INTERVAL",
    number(0.05, 60),
    2.0,
    "seconds between publisher heartbeats, 0.05–60",
    "revocation",
    "2",
)
PUBLISHER_LEASE_TTL = Var(
    "TOKENRY_PUBLISHER_LEASE_TTL",
    number(0.3, 60),
    5.0,
    "seconds of the event publisher's lease, 0.3–60",
    "revocation",
    "5",
)
SWEEP_INTERVAL = Var(
    "TOKENRY_SWEEP_INTERVAL",
    number(0.1, 86_400),
    60.0,
    "seconds between sweeps of expired revocations and old outbox rows",
    "revocation",
    "60",
)
RELAY = Var(
    "TOKENRY_RELAY", flag, True, "run an outbox relay (event publisher) here", "revocation", "1"
)
KEY_ROTATION_INTERVAL = Var(
    "TOKENRY_KEY_ROTATION_INTERVAL",
    duration,
    DEFAULT_ROTATION_INTERVAL,
    "how long a key signs (a duration: 90s, 15m, 1h, 7d)",
    "keyrotator",
    "7d",
)
KEY_PUBLISH_LEAD = Var(
    "TOKENRY_KEY_PUBLISH_LEAD",
    duration,
    DEFAULT_PUBLISH_LEAD,
    "how long a key is published before it signs",
    "keyrotator",
    "1h",
)
KEY_RETENTION = Var(
    "TOKENRY_KEY_RETENTION",
    duration,
    DEFAULT_RETENTION,
    "how long a key stays published after it stopped signing",
    "keyrotator",
    "15m",
)
JWKS_CACHE_TTL = Var(
    "TOKENRY_JWKS_CACHE_TTL",
    duration,
    DEFAULT_JWKS_CACHE_TTL,
    "the longest a third-party verifier caches the JWKS",
    "keyrotator",
    "15m",
)
KEYROTATOR_LEASE_TTL = Var(
    "TOKENRY_KEYROTATOR_LEASE_TTL",
    duration,
    DEFAULT_KEYROTATOR_LEASE_TTL,
    "the rotation leader's lease",
    "keyrotator",
    "10s",
)
KEY_SETS: Var[tuple[KeySet, ...]] = Var(
    "TOKENRY_KEY_SETS",
    keysets,
    (),
    "key sets as use:alg pairs, the first is the default",
    "keyrotator",
    f"access:<ACCESS_TOKEN_ALG>,{DEFAULT_ID_TOKEN_KEYSETS}",
)

TLS_CERT = Var(
    "TOKENRY_TLS_CERT",
    path,
    "",
    "path of the listener's PEM certificate chain; turns TLS on (reloaded when the file changes)",
    "all",
)
TLS_KEY = Var("TOKENRY_TLS_KEY", path, "", "path of the PEM private key of `TOKENRY_TLS_CERT`")
TLS_CA = Var(
    "TOKENRY_TLS_CA",
    path,
    "",
    "path of the PEM CA bundle client certificates are verified against (reloaded too)",
)
TLS_CLIENT_AUTH = Var(
    "TOKENRY_TLS_CLIENT_AUTH",
    flag,
    False,
    "require a client certificate from `TOKENRY_TLS_CA` on the listener (mTLS)",
    "all",
    "0",
)
TLS_TERMINATED = Var(
    "TOKENRY_TLS_TERMINATED",
    flag,
    False,
    "TLS terminates in front of every listener (sidecar, proxy): plaintext on a non-loopback"
    " address is then allowed outside dev mode",
    "all",
    "0",
)
MAX_CONNECTION_AGE = Var(
    "TOKENRY_MAX_CONNECTION_AGE",
    duration,
    DEFAULT_MAX_CONNECTION_AGE,
    "a connection is closed (GOAWAY) after this long and re-handshakes; capped at the"
    " listener certificate's lifetime",
    "all",
    "1h",
)
NATS_TLS_CA = Var(
    "TOKENRY_NATS_TLS_CA",
    path,
    "",
    "path of the CA bundle NATS's certificate is checked against (default `TOKENRY_TLS_CA`);"
    " setting any `TOKENRY_NATS_TLS_*` turns TLS to NATS on",
)
NATS_TLS_CERT = Var(
    "TOKENRY_NATS_TLS_CERT", path, "", "path of the client certificate presented to NATS"
)
NATS_TLS_KEY = Var("TOKENRY_NATS_TLS_KEY", path, "", "path of the key of `TOKENRY_NATS_TLS_CERT`")

VERIFIER_ALLOWED_IDS = Var(
    "TOKENRY_VERIFIER_ALLOWED_IDS",
    spiffe_patterns,
    "",
    "SPIFFE ID patterns (`*` one segment, comma-separated) of client certificates that may read"
    " the control plane (docs/security.md)",
    "revocation, keyrotator",
)
VERIFIER_AUTH = Var(
    "TOKENRY_VERIFIER_AUTH",
    choice(("required", "optional")),
    "",
    "`required` (default outside dev mode) or `optional`: whether ListRevocations, GetHead and"
    " GetJwks need an authenticated verifier",
    "revocation, keyrotator",
    "required",
)
TRUSTED_PROXY_HEADER = Var(
    "TOKENRY_TRUSTED_PROXY_HEADER",
    metadata_key,
    "",
    "metadata/header naming the client's address, set by a trusted proxy in front (failure"
    " limiter key); unset: the transport peer",
    "all",
)

VARIABLES: tuple[Var[Any], ...] = (
    DATABASE_URL,
    NATS_URL,
    ISSUER_URL,
    KEK,
    KEK_NEW,
    SECRET_PEPPER,
    DEV,
    *LISTEN.values(),
    GATEWAY_LISTEN,
    GATEWAY_USERS,
    LOGIN_URL,
    WORKERS,
    EVENT_LOOP,
    TLS_CERT,
    TLS_KEY,
    TLS_CA,
    TLS_CLIENT_AUTH,
    TLS_TERMINATED,
    MAX_CONNECTION_AGE,
    NATS_TLS_CA,
    NATS_TLS_CERT,
    NATS_TLS_KEY,
    LOG_LEVEL,
    METRICS_LISTEN,
    ACCESS_TOKEN_ALG,
    NATS_PREFIX,
    NATS_STREAM,
    REPLICAS,
    MAX_CLOCK_SKEW,
    REFRESH_GRACE,
    VERIFIER_ALLOWED_IDS,
    VERIFIER_AUTH,
    TRUSTED_PROXY_HEADER,
    HEARTBEAT_INTERVAL,
    PUBLISHER_LEASE_TTL,
    SWEEP_INTERVAL,
    RELAY,
    KEY_ROTATION_INTERVAL,
    KEY_PUBLISH_LEAD,
    KEY_RETENTION,
    JWKS_CACHE_TTL,
    KEYROTATOR_LEASE_TTL,
    KEY_SETS,
)


def markdown_table() -> str:
    """The table docs/operations.md holds, one row per variable."""
    rows = ["| variable | default | used by | meaning |", "|---|---|---|---|"]
    for var in VARIABLES:
        default = f"`{var.shown_default}`" if var.shown_default else "required"
        if not var.shown_default and not var.required:
            default = "—"
        rows.append(f"| `{var.name}` | {default} | {var.used_by} | {var.doc} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")

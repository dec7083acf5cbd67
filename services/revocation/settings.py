"""Settings of the revocation service beyond the shared ones (``TOKENRY_*``), validated at
start-up with one clear error per bad value."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from tokenry.core.revocations import DEFAULT_MAX_CLOCK_SKEW
from tokenry.servicekit.config import ConfigError


@dataclass(frozen=True, slots=True)
class RevocationSettings:
    #: SPEC §4: subject/client watermarks are ceil(now) + this many seconds
    max_clock_skew: int = DEFAULT_MAX_CLOCK_SKEW
    #: heartbeats on <prefix>.heartbeat, carrying the last seq committed (SPEC §4.4)
    heartbeat_interval: float = 2.0
    #: the publisher lease: a dead leader is replaced within about this long
    lease_ttl: float = 5.0
    #: the sweeper's period (expired revocations, published outbox rows past the stream age)
    sweep_interval: float = 60.0
    #: run the outbox relay (the event publisher) in this process
    relay: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RevocationSettings:
        env = os.environ if env is None else env
        return cls(
            max_clock_skew=int(_number(env, "TOKENRY_MAX_CLOCK_SKEW", 2, 0, 300, integer=True)),
            heartbeat_interval=_number(env, "TOKENRY_HEARTBEAT_INTERVAL", 2.0, 0.05, 60),
            lease_ttl=_number(env, "TOKENRY_PUBLISHER_LEASE_TTL", 5.0, 0.3, 60),
            sweep_interval=_number(env, "TOKENRY_SWEEP_INTERVAL", 60.0, 0.1, 86_400),
            relay=_flag(env, "TOKENRY_RELAY", default=True),
        )


def _number(
    env: Mapping[str, str],
    name: str,
    default: float,
    low: float,
    high: float,
    *,
    integer: bool = False,
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name} must be {kind} from {low:g} to {high:g}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be from {low:g} to {high:g}, got {raw}")
    return value


def _flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes"):
        return True
    if raw in ("0", "false", "no"):
        return False
    raise ConfigError(f"{name} must be 1/0, true/false or yes/no")

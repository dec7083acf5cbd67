"""The key rotator's own settings, from ``TOKENRY_*`` environment variables (docs/keys.md).

Durations are seconds, or a number with a unit: ``90s``, ``15m``, ``1h``, ``7d``. The variables
and their defaults are declared in :mod:`tokenry.servicekit.variables`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from tokenry.core.keylifecycle import KeySet, Policy, parse_keysets, timing_problems
from tokenry.core.keywrap import KekRing, kek_ring
from tokenry.servicekit import variables as v
from tokenry.servicekit.config import ConfigError, Reader, Settings
from tokenry.servicekit.variables import (
    DEFAULT_ID_TOKEN_KEYSETS,
    DEFAULT_JWKS_CACHE_TTL,
    DEFAULT_PUBLISH_LEAD,
    DEFAULT_RETENTION,
    DEFAULT_ROTATION_INTERVAL,
    MAX_TOKEN_TTL,
    RETENTION_LEEWAY,
)
from tokenry.servicekit.variables import DEFAULT_KEYROTATOR_LEASE_TTL as DEFAULT_LEASE_TTL

__all__ = [
    "DEFAULT_ID_TOKEN_KEYSETS",
    "DEFAULT_JWKS_CACHE_TTL",
    "DEFAULT_LEASE_TTL",
    "DEFAULT_PUBLISH_LEAD",
    "DEFAULT_RETENTION",
    "DEFAULT_ROTATION_INTERVAL",
    "MAX_TOKEN_TTL",
    "RETENTION_LEEWAY",
    "RotatorConfig",
    "load",
    "parse_duration",
    "read",
]

log = logging.getLogger(__name__)


def parse_duration(text: str, name: str) -> float:
    """Seconds from ``90s``, ``15m``, ``1h``, ``7d`` or a plain number.

    Raises:
        ConfigError: naming ``name``.
    """
    try:
        return v.duration(text)
    except ValueError as exc:
        raise ConfigError(f"{name} {exc}") from None


@dataclass(frozen=True, slots=True)
class RotatorConfig:
    policy: Policy
    keysets: tuple[KeySet, ...]
    ring: KekRing
    lease_ttl: float = DEFAULT_LEASE_TTL
    # Timing rules broken but tolerated (dev mode only); logged loudly at start.
    warnings: tuple[str, ...] = ()

    @property
    def default_keyset(self) -> KeySet:
        return self.keysets[0]


def read(reader: Reader, settings: Settings) -> RotatorConfig | None:
    """Read and check the rotator's settings; problems are collected in ``reader``.

    Returns None when a problem leaves no config to build (the reader holds why).
    """
    interval = reader.get(v.KEY_ROTATION_INTERVAL)
    lead = reader.get(v.KEY_PUBLISH_LEAD)
    retention = reader.get(v.KEY_RETENTION)
    jwks_ttl = reader.get(v.JWKS_CACHE_TTL)
    lease_ttl = reader.get(v.KEYROTATOR_LEASE_TTL)
    keysets = reader.get(v.KEY_SETS) or parse_keysets(
        f"access:{settings.access_token_alg},{DEFAULT_ID_TOKEN_KEYSETS}"
    )
    ring = None
    if settings.kek is None:
        if not any("TOKENRY_KEK" in p for p in reader.problems):
            reader.problem("TOKENRY_KEK (or TOKENRY_KEK_FILE) is required by the key rotator")
    else:
        try:
            ring = kek_ring(settings.kek, reader.env)
        except ValueError as exc:
            reader.problem(str(exc))
    try:
        policy = Policy(interval, lead, retention)
    except ValueError as exc:
        reader.problem(f"TOKENRY_KEY_ROTATION_INTERVAL / TOKENRY_KEY_PUBLISH_LEAD: {exc}")
        return None
    problems = timing_problems(
        policy,
        jwks_cache_ttl=jwks_ttl,
        max_token_ttl=MAX_TOKEN_TTL,
        leeway=RETENTION_LEEWAY,
    )
    if problems and not settings.dev:
        reader.problem("unsafe key timing: " + "; ".join(problems))
    if ring is None:
        return None
    return RotatorConfig(policy, keysets, ring, lease_ttl, tuple(problems))


def load(env: Mapping[str, str], settings: Settings) -> RotatorConfig:
    """Read and check the rotator's settings.

    Raises:
        ConfigError: every invalid value, or the timing breaks a rule of docs/keys.md outside
            dev mode.
    """
    reader = Reader(env)
    config = read(reader, settings)
    reader.check()
    assert config is not None  # check() raised otherwise
    return config

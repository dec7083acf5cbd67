"""The key rotator's own settings, from ``TOKENRY_*`` environment variables (docs/keys.md).

Durations are seconds, or a number with a unit: ``90s``, ``15m``, ``1h``, ``7d``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from tokenry.core.clients import MAX_ACCESS_TOKEN_TTL
from tokenry.core.keylifecycle import KeySet, Policy, parse_keysets, timing_problems
from tokenry.core.keywrap import KekRing, kek_ring
from tokenry.servicekit.config import ConfigError, Settings

log = logging.getLogger(__name__)

DEFAULT_ROTATION_INTERVAL = 7 * 86400.0
# What the gateway lets HTTP caches keep /.well-known/jwks.json (Cache-Control max-age), and
# the longest a third-party verifier is expected to cache it. Tokenry's own verifiers refetch on
# the key event and on an unknown kid, far sooner.
DEFAULT_JWKS_CACHE_TTL = 15 * 60.0
DEFAULT_PUBLISH_LEAD = 3600.0
# Past the maximum token lifetime: the verifiers' exp leeway (30 s), clock skew, and the
# issuers' periodic key check (5 s) — an issuer that missed the event signs a little longer.
RETENTION_LEEWAY = 5 * 60.0
# ID tokens share the global maximum (SPEC §2: 10 min by default, never above an hour).
MAX_TOKEN_TTL = float(MAX_ACCESS_TOKEN_TTL)
DEFAULT_RETENTION = MAX_TOKEN_TTL + RETENTION_LEEWAY
DEFAULT_LEASE_TTL = 10.0
DEFAULT_ID_TOKEN_KEYSETS = "id:RS256,id:ES256"  # OIDC Core §15.1: RS256 by default

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str, name: str) -> float:
    match = _DURATION.match(text)
    if match is None:
        raise ConfigError(f"{name} must be a duration such as 90s, 15m, 1h or 7d, not {text!r}")
    value = float(match.group(1)) * _UNITS[match.group(2)]
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} must be positive")
    return value


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


def _duration(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    return parse_duration(raw, name) if raw else default


def load(env: Mapping[str, str], settings: Settings) -> RotatorConfig:
    """Read and check the rotator's settings.

    Raises:
        ConfigError: a value is invalid, or the timing breaks a SPEC §5 rule outside dev mode.
    """
    if settings.kek is None:
        raise ConfigError("TOKENRY_KEK (or TOKENRY_KEK_FILE) is required by the key rotator")
    try:
        ring = kek_ring(settings.kek, env)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    interval = _duration(env, "TOKENRY_KEY_ROTATION_INTERVAL", DEFAULT_ROTATION_INTERVAL)
    lead = _duration(env, "TOKENRY_KEY_PUBLISH_LEAD", DEFAULT_PUBLISH_LEAD)
    retention = _duration(env, "TOKENRY_KEY_RETENTION", DEFAULT_RETENTION)
    jwks_ttl = _duration(env, "TOKENRY_JWKS_CACHE_TTL", DEFAULT_JWKS_CACHE_TTL)
    lease_ttl = _duration(env, "TOKENRY_KEYROTATOR_LEASE_TTL", DEFAULT_LEASE_TTL)
    try:
        policy = Policy(interval, lead, retention)
    except ValueError as exc:
        raise ConfigError(
            f"TOKENRY_KEY_ROTATION_INTERVAL / TOKENRY_KEY_PUBLISH_LEAD: {exc}"
        ) from None
    default_sets = f"access:{settings.access_token_alg},{DEFAULT_ID_TOKEN_KEYSETS}"
    try:
        keysets = parse_keysets(env.get("TOKENRY_KEY_SETS", "") or default_sets)
    except ValueError as exc:
        raise ConfigError(f"TOKENRY_KEY_SETS: {exc}") from None
    problems = timing_problems(
        policy,
        jwks_cache_ttl=jwks_ttl,
        max_token_ttl=MAX_TOKEN_TTL,
        leeway=RETENTION_LEEWAY,
    )
    if problems and not settings.dev:
        raise ConfigError("unsafe key timing: " + "; ".join(problems))
    return RotatorConfig(policy, keysets, ring, lease_ttl, tuple(problems))

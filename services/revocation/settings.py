"""Settings of the revocation service beyond the shared ones (``TOKENRY_*``), validated at
start-up with every bad value reported at once (declared in tokenry.servicekit.variables)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tokenry.core.revocations import DEFAULT_MAX_CLOCK_SKEW
from tokenry.servicekit import variables as v
from tokenry.servicekit.config import Reader


@dataclass(frozen=True, slots=True)
class RevocationSettings:
    #: docs/spec.md §4: subject/client watermarks are ceil(now) + this many seconds
    max_clock_skew: int = DEFAULT_MAX_CLOCK_SKEW
    #: heartbeats on <prefix>.heartbeat, carrying the last seq committed (docs/spec.md §4.4)
    heartbeat_interval: float = 2.0
    #: the publisher lease: a dead leader is replaced within about this long
    lease_ttl: float = 5.0
    #: the sweeper's period (expired revocations, published outbox rows past the stream age)
    sweep_interval: float = 60.0
    #: run the outbox relay (the event publisher) in this process
    relay: bool = True

    @classmethod
    def read(cls, reader: Reader) -> RevocationSettings:
        """The settings; bad values are collected in ``reader``."""
        return cls(
            max_clock_skew=reader.get(v.MAX_CLOCK_SKEW),
            heartbeat_interval=reader.get(v.HEARTBEAT_INTERVAL),
            lease_ttl=reader.get(v.PUBLISHER_LEASE_TTL),
            sweep_interval=reader.get(v.SWEEP_INTERVAL),
            relay=reader.get(v.RELAY),
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RevocationSettings:
        """The settings from ``env`` (default ``os.environ``).

        Raises:
            ConfigError: every bad value, each naming its variable.
        """
        reader = Reader(env)
        options = cls.read(reader)
        reader.check()
        return options

"""Who the built-in login page lets in: a pluggable :class:`Authenticator`, the dev user store
(:mod:`tokenry.core.users`, shared with ``tokenry user``), and the login throttle.

Login attempts are throttled per user and per client address (:class:`LoginThrottle`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from tokenry.core.users import UserStore, hash_password

__all__ = ["Authenticator", "LoginThrottle", "UserStore", "hash_password"]


class Authenticator(Protocol):
    def authenticate(self, username: str, password: str) -> str | None:
        """The subject for these credentials, or None. Must cost the same for an unknown user
        as for a wrong password (no user enumeration by timing)."""
        ...


class LoginThrottle:
    """At most ``limit`` failed attempts per user and per address in ``window`` seconds."""

    def __init__(
        self,
        limit: int = 5,
        window: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def allowed(self, *keys: str) -> bool:
        now = self._clock()
        for key in keys:
            seen = self._failures.get(key)
            if seen is None:
                continue
            while seen and seen[0] <= now - self._window:
                seen.popleft()
            if len(seen) >= self._limit:
                return False
        return True

    def failed(self, *keys: str) -> None:
        if len(self._failures) >= self._max_keys:
            self._failures.clear()  # bounded memory; an attacker resets only its own counts too
        now = self._clock()
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, user_key: str) -> None:
        self._failures.pop(user_key, None)

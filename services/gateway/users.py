"""Who the built-in login page lets in: a pluggable :class:`Authenticator` and the dev user store.

The dev store is a JSON file of ``{"users": {name: {"hash": ..., "salt": ...}}}`` whose passwords
are hashed with scrypt (``hashlib.scrypt``, memory-hard: n=2^14, r=8, p=1, 16 MiB per guess), so
a stolen file does not give the passwords away cheaply. A deployment with real users points
the gateway at its own login app instead, or plugs its own Authenticator.

Login attempts are throttled per user and per client address (:class:`LoginThrottle`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from tokenry.core import b64url

__all__ = ["Authenticator", "LoginThrottle", "UserStore", "hash_password"]

_N, _R, _P = 2**14, 8, 1
_NAME = re.compile(r"[A-Za-z0-9._@+-]{1,64}")


def hash_password(password: str, salt: bytes | None = None) -> tuple[str, str]:
    """(hash, salt), both base64url; scrypt with the parameters above."""
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=64 * 1024 * 1024, dklen=32
    )
    return b64url.encode(digest), b64url.encode(salt)


class Authenticator(Protocol):
    def authenticate(self, username: str, password: str) -> str | None:
        """The subject for these credentials, or None. Must cost the same for an unknown user
        as for a wrong password (no user enumeration by timing)."""
        ...


class UserStore:
    """The dev user store: users and their scrypt hashes, in memory and optionally in a file."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._users: dict[str, tuple[str, str]] = {}
        if path is not None and path.exists():
            data = json.loads(path.read_text())
            for name, entry in data.get("users", {}).items():
                self._users[name] = (entry["hash"], entry["salt"])
        self._dummy = hash_password("not a password")

    def add(self, username: str, password: str) -> None:
        if not _NAME.fullmatch(username):
            raise ValueError("a username is 1-64 letters, digits or . _ @ + -")
        if len(password) < 8:
            raise ValueError("a password has at least 8 characters")
        self._users[username] = hash_password(password)
        self._save()

    def delete(self, username: str) -> bool:
        found = self._users.pop(username, None) is not None
        self._save()
        return found

    def list(self) -> list[str]:
        return sorted(self._users)

    def authenticate(self, username: str, password: str) -> str | None:
        stored, salt = self._users.get(username, self._dummy)
        digest, _ = hash_password(password, b64url.decode(salt))
        ok = hmac.compare_digest(digest, stored)
        return username if ok and username in self._users else None

    def _save(self) -> None:
        if self._path is None:
            return
        users = {n: {"hash": h, "salt": s} for n, (h, s) in self._users.items()}
        self._path.write_text(json.dumps({"users": users}, indent=2))
        self._path.chmod(0o600)


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

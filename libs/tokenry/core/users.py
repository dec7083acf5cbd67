"""The dev user store of the gateway's built-in login page (and of ``tokenry user``).

A JSON file of ``{"users": {name: {"hash": ..., "salt": ...}}}`` whose passwords are hashed
with scrypt (``hashlib.scrypt``, memory-hard: n=2^14, r=8, p=1, 16 MiB per guess), so a stolen
file does not give the passwords away cheaply. Written atomically with mode 0600; re-read when
the file changes, so ``tokenry user add`` takes effect on a running gateway at the next sign-in.
A deployment with real users points the gateway at its own login app (``TOKENRY_LOGIN_URL``) or
plugs its own authenticator (docs/gateway.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
from pathlib import Path

from tokenry.core import b64url

__all__ = ["MIN_PASSWORD", "UserStore", "check_username", "hash_password"]

_N, _R, _P = 2**14, 8, 1
_NAME = re.compile(r"[A-Za-z0-9._@+-]{1,64}")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024


def hash_password(password: str, salt: bytes | None = None) -> tuple[str, str]:
    """(hash, salt), both base64url; scrypt with the parameters above."""
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=64 * 1024 * 1024, dklen=32
    )
    return b64url.encode(digest), b64url.encode(salt)


def check_username(username: str) -> None:
    if not _NAME.fullmatch(username):
        raise ValueError("a username is 1-64 letters, digits or . _ @ + -")


class UserStore:
    """Users and their scrypt hashes, in memory and optionally in a file."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._users: dict[str, tuple[str, str]] = {}
        self._stamp: tuple[int, int] | None = None
        self._load()
        self._dummy: tuple[str, str] | None = None  # made at the first sign-in, not per CLI run

    def _file_stamp(self) -> tuple[int, int] | None:
        if self._path is None:
            return None
        try:
            st = self._path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _load(self) -> None:
        stamp = self._file_stamp()
        if stamp is None or stamp == self._stamp or self._path is None:
            return
        try:
            data = json.loads(self._path.read_text())
            users = {
                name: (entry["hash"], entry["salt"])
                for name, entry in data.get("users", {}).items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise ValueError(f"{self._path.name} is not a user store file") from None
        self._users = users
        self._stamp = stamp

    def add(self, username: str, password: str) -> None:
        check_username(username)
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise ValueError(f"a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters")
        self._load()
        self._users[username] = hash_password(password)
        self._save()

    def delete(self, username: str) -> bool:
        self._load()
        found = self._users.pop(username, None) is not None
        if found:
            self._save()
        return found

    def list(self) -> list[str]:
        self._load()
        return sorted(self._users)

    def authenticate(self, username: str, password: str) -> str | None:
        """The username for right credentials, else None; an unknown user costs one scrypt
        too (no user enumeration by timing)."""
        with contextlib.suppress(ValueError):  # a half-written file: keep the last good copy
            self._load()
        if len(password) > MAX_PASSWORD:
            return None
        if self._dummy is None:
            self._dummy = hash_password("not a password")
        stored, salt = self._users.get(username, self._dummy)
        digest, _ = hash_password(password, b64url.decode(salt))
        ok = hmac.compare_digest(digest, stored)
        return username if ok and username in self._users else None

    def _save(self) -> None:
        if self._path is None:
            return
        users = {n: {"hash": h, "salt": s} for n, (h, s) in sorted(self._users.items())}
        tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps({"users": users}, indent=2))
        os.replace(tmp, self._path)
        self._stamp = self._file_stamp()

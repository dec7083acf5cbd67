"""Identifiers: ``jti`` and ``gid`` are 128 random bits, base64url without padding
(docs/spec.md §2)."""

from __future__ import annotations

import os
import secrets
import struct
from binascii import b2a_base64
from typing import Final

from tokenry.core.b64url import URLSAFE_TRANSLATION

ID_BYTES = 16  # 128 bits -> 22 base64url characters
ID_CHARS = 22
#: jti/gid pairs drawn at once by :func:`new_jti_and_gid` (one CSPRNG read, one encoding pass).
PAIRS_PER_READ = 64
#: Two zero bytes after each 16-byte id close its last 3-byte group (see new_jti_and_gid).
_GAP: Final = b"\0\0"
# Every id of a draw: 16 raw bytes each; in the base64 text, 22 characters then "AA" each.
_SPLIT_RAW: Final = struct.Struct(f"{ID_BYTES}s" * (2 * PAIRS_PER_READ))
_SPLIT_TEXT: Final = struct.Struct(f"{ID_CHARS}s2x" * (2 * PAIRS_PER_READ))
_ascii: Final = bytes.decode
_pairs: list[tuple[str, str]] = []
# A forked child must never hand out ids its parent already holds (os.fork and multiprocessing's
# fork start method both run this).
os.register_at_fork(after_in_child=_pairs.clear)


def new_jti() -> str:
    return secrets.token_urlsafe(ID_BYTES)


def new_gid() -> str:
    return secrets.token_urlsafe(ID_BYTES)


def new_jti_and_gid() -> tuple[str, str]:
    """A fresh jti and gid, each 16 bytes of the OS CSPRNG as :func:`b64url.encode` writes them.

    Drawn :data:`PAIRS_PER_READ` pairs at a time: one ``os.urandom`` read and one base64 pass
    for them all (the issuance hot path's ids cost a list pop). 16 bytes are 5 whole 3-byte
    groups and one byte, so two zero bytes after each id close its last group: each id's 22
    characters are then exactly its own encoding (the zeros only add "AA") and the next id
    starts on a group boundary, 24 characters on.
    """
    try:
        return _pairs.pop()
    except IndexError:
        _draw()
        return _pairs.pop()


def _draw() -> None:
    # struct splits and decodes in C: no Python-level slicing per id.
    raw = os.urandom(_SPLIT_RAW.size)
    encoded = b2a_base64(_GAP.join(_SPLIT_RAW.unpack(raw)) + _GAP).translate(URLSAFE_TRANSLATION)
    ids = list(map(_ascii, _SPLIT_TEXT.unpack_from(encoded)))
    _pairs.extend(zip(ids[::2], ids[1::2], strict=True))

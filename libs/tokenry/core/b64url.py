"""Unpadded base64url (RFC 4648 §5 without ``=``, as JOSE uses it: RFC 7515 §2), in one place.

Encoding is what every token, id and thumbprint in Tokenry uses. Decoding is strict: only the
*canonical* encoding is accepted (alphabet, no padding, no remainder of one character, and the
unused low bits of the last character zero), so every byte string has exactly one accepted text.
"QQ" decodes to ``b"A"``; "QR" would decode to the same byte and is refused.

The decoder's two halves (:func:`canonical_tail`, :func:`decode_canonical`) are separate so the
JWS parser can check the alphabet of three segments with one precompiled regex and skip a second
alphabet scan (docs/design.md §7).
"""

from __future__ import annotations

import binascii
import re
from typing import Final

__all__ = [
    "canonical_tail",
    "decode",
    "decode_canonical",
    "encode",
    "encode_bytes",
    "is_canonical",
    "URLSAFE_TRANSLATION",
]

#: One character of the base64url alphabet (a regex class).
ALPHABET: Final = "[A-Za-z0-9_-]"
_SEGMENT_RE: Final = re.compile(f"{ALPHABET}*")
#: ``bytes.translate`` table from standard base64 to base64url (for encoders written out inline).
URLSAFE_TRANSLATION: Final = bytes.maketrans(b"+/", b"-_")
_URLSAFE_TO_STANDARD: Final = bytes.maketrans(b"-_", b"+/")
_PADDING: Final = (b"", b"", b"==", b"=")  # indexed by len % 4; a remainder of 1 never matches
# After a 2-character remainder 4 bits are unused (A Q g w); after 3 characters, 2 bits.
_TAIL_2: Final = frozenset("AQgw")
_TAIL_3: Final = frozenset("AEIMQUYcgkosw048")


def encode_bytes(data: bytes) -> bytes:
    """Unpadded base64url of ``data``, as ASCII bytes."""
    return binascii.b2a_base64(data, newline=False).translate(URLSAFE_TRANSLATION).rstrip(b"=")


def encode(data: bytes) -> str:
    """Unpadded base64url of ``data``."""
    return encode_bytes(data).decode("ascii")


def canonical_tail(text: str) -> bool:
    """The length and last-character rule, for a string already known to be of the alphabet."""
    rest = len(text) & 3
    if rest == 0:
        return True
    if rest == 2:
        return text[-1] in _TAIL_2
    return rest == 3 and text[-1] in _TAIL_3


def is_canonical(text: str) -> bool:
    """True if ``text`` is the canonical unpadded base64url encoding of some byte string."""
    return _SEGMENT_RE.fullmatch(text) is not None and canonical_tail(text)


def decode_canonical(text: str) -> bytes:
    """Decode a string that :func:`is_canonical` accepted (unchecked: the padding is computed)."""
    return binascii.a2b_base64(
        text.encode("ascii").translate(_URLSAFE_TO_STANDARD) + _PADDING[len(text) & 3]
    )


def decode(text: str) -> bytes:
    """Decode canonical unpadded base64url.

    Raises:
        ValueError: ``text`` is not a str holding a canonical unpadded base64url encoding.
    """
    if type(text) is not str or not is_canonical(text):
        raise ValueError("not canonical unpadded base64url")
    return decode_canonical(text)

"""Strict JSON and canonical base64url for JOSE (RFC 7515 §2, RFC 8725 §3.7, RFC 7519 §4).

JSON: UTF-8 only, duplicate member names refused (RFC 7515 §4, RFC 7519 §4), no NaN or
Infinity. Base64url: only the canonical unpadded encoding (:mod:`tokenry.core.b64url`). Every
failure is a :class:`~tokenry.jose.errors.MalformedTokenError`.
"""

from __future__ import annotations

import json
from json.scanner import make_scanner
from typing import Any, Final

from tokenry.core import b64url
from tokenry.jose.errors import MalformedTokenError, VerificationError

__all__ = ["DECODE_ERRORS", "b64url_decode", "is_canonical_b64url", "loads_strict"]

# Exceptions that decoding hostile input can raise from the standard library or cryptography
# (ValueError covers JSONDecodeError, UnicodeDecodeError and binascii.Error). They are turned
# into MalformedTokenError; the original is dropped (``from None``) because its message can quote
# bytes of the token.
DECODE_ERRORS: Final = (ValueError, TypeError, RecursionError, OverflowError)

#: True if the text is the canonical unpadded base64url encoding of some byte string.
is_canonical_b64url: Final = b64url.is_canonical


def b64url_decode(text: str) -> bytes:
    """Decode canonical unpadded base64url; anything else is ``MalformedTokenError(bad_base64)``."""
    if type(text) is not str or not b64url.is_canonical(text):
        raise MalformedTokenError("bad_base64", "not canonical unpadded base64url")
    return b64url.decode_canonical(text)


def _no_duplicate_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise MalformedTokenError("duplicate_member", "duplicate JSON member name")
    return obj


def _no_constant(_name: str) -> Any:
    raise MalformedTokenError("malformed", "NaN and Infinity are not JSON")


# One decoder object, built once: json.loads(..., object_pairs_hook=...) would build a new
# JSONDecoder on every call. It holds no state between calls.
_JSON: Final = json.JSONDecoder(
    object_pairs_hook=_no_duplicate_members, parse_constant=_no_constant
)


# The C scanner that JSONDecoder.decode runs; typeshed types its duck-typed context too narrowly.
_SCAN: Final = make_scanner(_JSON)  # type: ignore[arg-type]


def loads_strict(data: bytes | str) -> Any:
    """Parse strict JSON: UTF-8 only, no duplicate member names, no NaN/Infinity.

    Raises:
        MalformedTokenError: ``duplicate_member`` or ``malformed``.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        try:
            # Fast path: the scanner alone, for a document with no surrounding whitespace.
            value, end = _SCAN(text, 0)
            if end == len(text):
                return value
        except StopIteration:
            pass
        return _JSON.decode(text)  # whitespace around the value, or the precise error
    except VerificationError:
        raise
    except DECODE_ERRORS:
        raise MalformedTokenError("malformed", "not valid UTF-8 JSON") from None

"""One base64url helper (tokenry.core.b64url), and no copies of it elsewhere (issue 12 item 10)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenry.core import b64url

ROOT = Path(__file__).resolve().parents[2]


@given(st.binary(max_size=200))
def test_round_trip_and_the_standard_library_agree(data: bytes) -> None:
    text = b64url.encode(data)
    assert text == base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
    assert b64url.encode_bytes(data) == text.encode("ascii")
    assert b64url.is_canonical(text)
    assert b64url.decode(text) == data


@given(st.binary(min_size=1, max_size=60))
def test_only_the_canonical_encoding_is_accepted(data: bytes) -> None:
    text = b64url.encode(data)
    if len(text) % 4:
        # The same bytes with a non-zero unused low bit in the last character: refused.
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        last = alphabet.index(text[-1])
        tweaked = text[:-1] + alphabet[last | 1]
        if tweaked != text:
            assert not b64url.is_canonical(tweaked)
            with pytest.raises(ValueError, match="canonical"):
                b64url.decode(tweaked)


@pytest.mark.parametrize("text", ["a", "QR", "QQ==", "Q Q", "QQ\n", "+/", "ab=c"])
def test_refused_texts(text: str) -> None:
    assert not b64url.is_canonical(text)
    with pytest.raises(ValueError, match="canonical"):
        b64url.decode(text)


def test_no_copy_of_the_encoder_in_libs_or_services() -> None:
    # A hand-rolled "urlsafe_b64encode(...).rstrip(b'=')" or a translate-based copy drifts.
    copies = []
    pattern = re.compile(r"urlsafe_b64encode|maketrans\(b\"\+/\", b\"-_\"\)")
    for path in [*(ROOT / "libs").rglob("*.py"), *(ROOT / "services").rglob("*.py")]:
        if path.name == "b64url.py" or "v1" in path.parts:
            continue
        if pattern.search(path.read_text()):
            copies.append(str(path.relative_to(ROOT)))
    assert copies == []

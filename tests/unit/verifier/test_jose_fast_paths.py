"""The first sight's shortcuts agree with the rules they shortcut (issue 12, first-sight figure).

- the claim check's one-expression fast accept (``tokenry.jose._claims.check``) never accepts
  claims that the rule-by-rule check (``_check_each``) refuses, and refuses with the same reason;
- the ES256 raw → DER conversion is byte for byte ``cryptography``'s ``encode_dss_signature``;
- the strict segment decoder accepts exactly the canonical unpadded base64url strings.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenry.core import b64url
from tokenry.jose._claims import _check_each, check
from tokenry.jose._decoder import _decode_segment
from tokenry.jose._keys import raw_to_der
from tokenry.jose.errors import VerificationError

NOW = 1_767_225_600.25
ISSUER = "https://issuer.tokenry.test"
AUDIENCE = "demo-api"
SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_ABSENT = object()

# Values near every boundary the rules draw, and of every JSON type.
NUMBERS = st.one_of(
    st.integers(min_value=int(NOW) - 400, max_value=int(NOW) + 400),
    st.integers(min_value=int(NOW) - 32, max_value=int(NOW) + 32),  # the leeways' edges
    st.floats(min_value=NOW - 400, max_value=NOW + 400),
    st.sampled_from([math.nan, math.inf, -math.inf, True, False, None, "1767225600", 0]),
)
STRINGS = st.one_of(
    st.sampled_from(["", "x", ISSUER, AUDIENCE, ISSUER + "/", "svc"]),
    st.text(max_size=5),
    st.sampled_from([None, 1, 1.5, True, [AUDIENCE], [], ["other"], [AUDIENCE, 3], {"a": 1}]),
)


def _member(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(_ABSENT), values)


CLAIMS = st.fixed_dictionaries(
    {
        "exp": _member(NUMBERS),
        "iat": _member(NUMBERS),
        "nbf": _member(NUMBERS),
        "jti": _member(STRINGS),
        "iss": _member(STRINGS),
        "aud": _member(STRINGS),
        "sub": _member(STRINGS),
        "client_id": _member(STRINGS),
        "scope": _member(STRINGS),
    }
).map(lambda d: {k: v for k, v in d.items() if v is not _ABSENT})

# A valid token's claims, so that the search also starts from the accepted side.
VALID = {
    "exp": int(NOW) + 60,
    "iat": int(NOW) - 1,
    "jti": "j-1",
    "iss": ISSUER,
    "aud": AUDIENCE,
    "sub": "svc",
    "client_id": "svc",
    "scope": "demo.read",
}

NAMES = [*VALID, "nbf"]
#: One or two members of the valid claims changed (set to any value, or removed): what a search
#: from random dictionaries almost never reaches, the near-miss of a single rule.
NEAR_MISSES = st.builds(
    lambda changes: {k: v for k, v in {**VALID, **dict(changes)}.items() if v is not _ABSENT},
    st.lists(
        st.tuples(st.sampled_from(NAMES), st.one_of(st.just(_ABSENT), NUMBERS, STRINGS)),
        min_size=1,
        max_size=2,
    ),
)


def _verdict(fn: Any, claims: dict[str, Any], audience: Any, leeway: float) -> str | None:
    try:
        fn(claims, ISSUER, audience, NOW, leeway, iat_leeway=min(leeway, 2.0))
    except VerificationError as exc:
        return exc.reason
    except (OverflowError, TypeError) as exc:  # the same programming-level errors, if any
        return type(exc).__name__
    return None


@SETTINGS
@given(
    claims=st.one_of(NEAR_MISSES, NEAR_MISSES, CLAIMS),
    audience=st.sampled_from([AUDIENCE, AUDIENCE, frozenset({AUDIENCE, "x"}), frozenset({"x"})]),
    leeway=st.sampled_from([0.0, 30.0, 300.0]),
)
def test_the_fast_accept_agrees_with_every_rule(
    claims: dict[str, Any], audience: Any, leeway: float
) -> None:
    assert _verdict(check, claims, audience, leeway) == _verdict(
        _check_each, claims, audience, leeway
    )


#: The edges of every leeway (0, the 2 s skew, 30 s, 300 s) around NOW, and values of each type.
EDGE_VALUES = [
    _ABSENT,
    *(int(NOW) + k for k in (-301, -300, -299, -31, -30, -29, -3, -2, -1, 0, 1, 2, 3, 4)),
    *(int(NOW) + k for k in (29, 30, 31, 32, 299, 300, 301, 302)),
    NOW,
    NOW + 2.0,
    NOW + 2.5,
    math.nan,
    math.inf,
    True,
    None,
    "",
    "x",
    ISSUER,
    AUDIENCE,
    [AUDIENCE],
    ["other"],
    [],
    {"x": 1},
]


@pytest.mark.parametrize("leeway", [0.0, 2.0, 30.0, 300.0])
@pytest.mark.parametrize("audience", [AUDIENCE, frozenset({AUDIENCE, "x"})])
def test_every_single_change_gets_the_same_verdict(audience: Any, leeway: float) -> None:
    # Exhaustive over one member changed to each edge value: the boundaries a random search
    # rarely lands on exactly.
    for name in NAMES:
        for value in EDGE_VALUES:
            claims = {**VALID, name: value}
            if value is _ABSENT:
                del claims[name]
            fast = _verdict(check, claims, audience, leeway)
            assert fast == _verdict(_check_each, claims, audience, leeway), (name, value)


def test_the_fast_accept_takes_the_common_token_and_refuses_an_expired_one() -> None:
    # Negative control for the property above: both verdicts on each side of the line.
    assert _verdict(check, dict(VALID), AUDIENCE, 30.0) is None
    expired = {**VALID, "exp": int(NOW) - 31}
    assert _verdict(check, expired, AUDIENCE, 30.0) == "expired"
    assert _verdict(check, {**VALID, "aud": "other"}, AUDIENCE, 30.0) == "bad_audience"
    assert _verdict(check, {**VALID, "exp": True}, AUDIENCE, 30.0) == "bad_claim_type"


EDGES = [
    bytes(64),
    b"\x80" * 64,
    bytes(31) + b"\x01" + bytes(31) + b"\x80",
    b"\x00\x80" + bytes(62),
    b"\xff" * 64,
]


@SETTINGS
@given(signature=st.one_of(st.binary(min_size=64, max_size=64), st.sampled_from(EDGES)))
def test_raw_to_der_is_encode_dss_signature(signature: bytes) -> None:
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    assert raw_to_der(signature) == encode_dss_signature(r, s)


@SETTINGS
@given(text=st.one_of(st.text(max_size=12), st.text(alphabet="AQgw_-+/=QUJD \n", max_size=9)))
def test_the_strict_segment_decoder_accepts_only_canonical_base64url(text: str) -> None:
    # _decode_segment runs after the tail check (b64url.canonical_tail), as in the decoder.
    try:
        decoded: bytes | None = _decode_segment(text) if b64url.canonical_tail(text) else None
    except ValueError:
        decoded = None
    if b64url.is_canonical(text):
        assert decoded == b64url.decode(text)
    else:
        assert decoded is None


@pytest.mark.parametrize("data", [b"", b"A", b"AB", b"ABC", bytes(range(256))])
def test_the_strict_segment_decoder_round_trips(data: bytes) -> None:
    text = base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    assert _decode_segment(text) == data

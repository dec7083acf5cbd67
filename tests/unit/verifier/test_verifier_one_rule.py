"""One revocation-and-expiry rule on the verifier's three paths (issue 12, item 1).

The cache-hit path (``Verifier.check_cached``) is written inline for speed (see the comment in
``_verifier.Verifier._hot_path``); the first sight and the full path for a cached entry
(``_admit``) call the same ``RevocationSet.check``. Over random revocation sets, tokens and
elapsed times, all three must give the answer of the rule itself: revoked iff
``RevocationSet.check`` names a kind, expired iff ``now >= exp + leeway``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenry.core.clock import FakeClock
from tokenry.core.revocations import Revocation, RevocationKind, RevocationSet
from tokenry.jose import JwksCache
from tokenry.verifier._verifier import Verifier, VerifierConfig
from tokenry.verifier.errors import RevokedError, TokenExpiredError

from .minting import AUDIENCE, ISSUER, NOW, FakeState, Minter, make_verifier

MINTER = Minter()
LEEWAY = 30.0  # VerifierConfig's default
EXP = int(NOW) + 600

# Few values and close times, so that draws collide: a revoked jti, gid, subject or client,
# a watermark equal to the token's iat or one second either side of it.
_values = st.sampled_from(["a", "b"])


def _revocations(min_size: int) -> st.SearchStrategy[list[Revocation]]:
    return st.lists(
        st.builds(
            Revocation,
            st.sampled_from(RevocationKind),
            _values,
            st.integers(min_value=int(NOW) - 4, max_value=int(NOW) + 1),
            st.just(int(NOW) + 3600),
        ),
        min_size=min_size,
        max_size=4,
    )


_tokens = st.fixed_dictionaries(
    {
        "jti": _values,
        "gid": st.none() | _values,
        "sub": _values,
        "client_id": _values,
        "iat": st.integers(min_value=int(NOW) - 3, max_value=int(NOW)),
    }
)
# Elapsed seconds after the first sight: around the expiry (exp + leeway - NOW = 630).
_elapsed = st.one_of(
    st.floats(min_value=0, max_value=700), st.sampled_from([629.0, 629.999, 630.0, 630.001])
)


_JWKS: list[JwksCache] = []


def _verifier() -> tuple[Verifier, FakeState, FakeClock]:
    """A fresh verifier (empty cache, empty revocation set, its own clock) over one key set."""
    if not _JWKS:
        verifier, *_ = asyncio.run(make_verifier(MINTER))
        _JWKS.append(verifier.jwks)
    clock, state = FakeClock(NOW), FakeState()
    config = VerifierConfig(issuer=ISSUER, audience=AUDIENCE)
    return Verifier(config, _JWKS[0], state, clock), state, clock


def _rule(revocations: RevocationSet, claims: dict[str, Any], now: float) -> str | None:
    if now >= EXP + LEEWAY:
        return "expired"
    kind = revocations.check(
        claims["jti"], claims.get("gid"), claims["sub"], claims["client_id"], claims["iat"]
    )
    return None if kind is None else "revoked"


def _full_path(verifier: Verifier, token: str) -> str | None:
    entry = verifier.cache.get(token)
    assert entry is not None
    try:
        verifier._admit(token, entry)  # the full path's own copy for a cached entry
    except TokenExpiredError:
        return "expired"
    except RevokedError:
        return "revoked"
    return None


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=_revocations(0), after=_revocations(1), claims=_tokens, elapsed=_elapsed)
def test_hot_path_full_path_and_first_sight_apply_one_rule(
    before: list[Revocation], after: list[Revocation], claims: dict[str, Any], elapsed: float
) -> None:
    verifier, state, clock = _verifier()
    state.revocations.apply_all(before)
    claims = {**claims, "exp": EXP}
    token = MINTER.token(**claims)

    expected = _rule(state.revocations, claims, clock.now())
    try:
        verifier.verify_blocking(token)
        first_sight = None
    except RevokedError:
        first_sight = "revoked"
    assert first_sight == expected
    if first_sight is not None:
        return

    # Each single revocation that could touch this token, at the edge of its iat (a random
    # search rarely lands on exactly these), then the drawn ones after the drawn time.
    for kind, value in _fields(claims):
        for not_before in (claims["iat"], claims["iat"] + 1):
            state.revocations = RevocationSet()
            state.revocations.apply_all([*before, Revocation(kind, value, not_before, EXP)])
            _assert_paths_agree(verifier, state.revocations, token, claims, clock.now())
    state.revocations = RevocationSet()
    state.revocations.apply_all([*before, *after])
    clock.advance(elapsed)
    _assert_paths_agree(verifier, state.revocations, token, claims, clock.now())


def _fields(claims: dict[str, Any]) -> list[tuple[RevocationKind, str]]:
    return [
        (RevocationKind.JTI, claims["jti"]),
        (RevocationKind.GRANT, claims["gid"] or "a"),
        (RevocationKind.SUBJECT, claims["sub"]),
        (RevocationKind.CLIENT, claims["client_id"]),
    ]


def _assert_paths_agree(
    verifier: Verifier, revs: RevocationSet, token: str, claims: dict[str, Any], now: float
) -> None:
    expected = _rule(revs, claims, now)
    assert (verifier.check_cached(token) is None) == (expected is not None)
    assert _full_path(verifier, token) == expected


def test_the_rule_sees_a_revocation_and_an_expiry() -> None:
    # Negative controls for the property: each verdict is reached on each path.
    verifier, state, clock = _verifier()
    claims = {"jti": "a", "gid": None, "sub": "a", "client_id": "a", "iat": int(NOW) - 1}
    token = MINTER.token(**claims, exp=EXP)
    assert verifier.check_cached(token) is None  # not seen yet
    verifier.verify_blocking(token)
    assert verifier.check_cached(token) is not None
    assert _full_path(verifier, token) is None
    state.revocations.apply(Revocation(RevocationKind.SUBJECT, "a", int(NOW), int(NOW) + 3600))
    assert verifier.check_cached(token) is None
    assert _full_path(verifier, token) == "revoked"
    state.revocations = RevocationSet()
    clock.advance(EXP + LEEWAY - NOW)
    assert verifier.check_cached(token) is None
    assert _full_path(verifier, token) == "expired"

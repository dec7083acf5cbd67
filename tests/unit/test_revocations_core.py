"""Pure revocation rules and the O(1) revocation set (docs/spec.md §4, §4.7)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenry import jose
from tokenry.core.clients import MAX_ACCESS_TOKEN_TTL
from tokenry.core.revocations import (
    EXPIRY_LEEWAY,
    MAX_FAMILY_LIFETIME,
    Revocation,
    RevocationKind,
    RevocationSet,
    SnapshotBatch,
    family_expiry,
    token_expiry,
    watermark,
)

NOW = 1_800_000_000.4


def test_expiry_leeway_covers_the_largest_verifier_leeway() -> None:
    # A verifier accepts a token until exp + leeway; its entry must live at least that long.
    assert jose.MAX_LEEWAY <= EXPIRY_LEEWAY


@pytest.mark.parametrize("now", [1_800_000_000.0, 1_800_000_000.001, 1_800_000_000.999])
def test_watermark_is_ceil_now_plus_skew(now: float) -> None:
    assert watermark(now, 2) == math.ceil(now) + 2
    # Every token minted up to now by an issuer up to (but not) 2 s ahead is below it:
    # iat is int(issuer clock), never rounded up.
    for ahead in (0.0, 1.0, 1.999):
        assert int(now + ahead) < watermark(now, 2)


def test_watermark_rejects_negative_skew() -> None:
    with pytest.raises(ValueError, match="skew"):
        watermark(NOW, -1)


def test_token_expiry_unknown_exp_is_the_maximum_lifetime() -> None:
    assert token_expiry(NOW, None) == int(NOW) + MAX_ACCESS_TOKEN_TTL + EXPIRY_LEEWAY
    assert token_expiry(NOW, 0) == int(NOW) + MAX_ACCESS_TOKEN_TTL + EXPIRY_LEEWAY


def test_token_expiry_is_the_tokens_exp_plus_leeway() -> None:
    exp = int(NOW) + 600
    assert token_expiry(NOW, exp) == exp + EXPIRY_LEEWAY


def test_token_expiry_caps_a_claimed_exp_beyond_any_token_lifetime() -> None:
    assert token_expiry(NOW, int(NOW) + 10 * 86400) == int(NOW) + MAX_ACCESS_TOKEN_TTL + (
        EXPIRY_LEEWAY
    )


def test_token_expiry_of_a_token_no_verifier_accepts_any_more_is_none() -> None:
    assert token_expiry(NOW, int(NOW) - EXPIRY_LEEWAY - 1) is None
    # Within the leeway it still matters.
    assert token_expiry(NOW, int(NOW) - 10) == int(NOW) - 10 + EXPIRY_LEEWAY


def test_family_expiry_defaults_extension_and_cap() -> None:
    nbf = watermark(NOW)
    default = nbf + MAX_ACCESS_TOKEN_TTL + EXPIRY_LEEWAY
    assert family_expiry(NOW, nbf, None) == default
    assert family_expiry(NOW, nbf, default - 100) == default  # never shorter than tokens live
    assert family_expiry(NOW, nbf, default + 100) == default + 100
    cap = math.ceil(NOW) + MAX_FAMILY_LIFETIME + EXPIRY_LEEWAY
    assert family_expiry(NOW, nbf, int(NOW) + 10 * MAX_FAMILY_LIFETIME) == cap


def _jti(value: str, exp: int = 2_000) -> Revocation:
    return Revocation(RevocationKind.JTI, value, 0, exp)


def test_each_kind_is_checked_on_its_claim() -> None:
    revs = RevocationSet()
    revs.apply(_jti("j1"))
    revs.apply(Revocation(RevocationKind.GRANT, "g1", 0, 2_000))
    revs.apply(Revocation(RevocationKind.SUBJECT, "alice", 100, 2_000))
    revs.apply(Revocation(RevocationKind.CLIENT, "svc", 200, 2_000))
    assert revs.check("j1", None, None, None, 0) == "jti"
    assert revs.check("x", "g1", None, None, 0) == "grant"
    assert revs.check("x", None, "alice", None, 99) == "subject"
    assert revs.check("x", None, "alice", None, 100) is None  # iat == not_before: minted after
    assert revs.check("x", None, None, "svc", 199) == "client"
    assert revs.check("x", None, None, "svc", 200) is None
    assert revs.check("x", "g2", "bob", "other", 0) is None
    assert len(revs) == 4
    assert revs.counts()[RevocationKind.JTI] == 1


def test_watermarks_and_expiries_only_rise() -> None:
    revs = RevocationSet()
    revs.apply(Revocation(RevocationKind.SUBJECT, "alice", 300, 5_000))
    revs.apply(Revocation(RevocationKind.SUBJECT, "alice", 100, 4_000))  # older event, later
    assert revs.check("x", None, "alice", None, 299) == "subject"
    assert next(iter(revs.entries())) == Revocation(RevocationKind.SUBJECT, "alice", 300, 5_000)
    revs.apply(_jti("j", 1_000))
    revs.apply(_jti("j", 900))
    assert revs.sweep(950) == 0 and revs.check("j", None, None, None, 0) == "jti"


def test_sweep_drops_entries_exactly_at_expires_at() -> None:
    revs = RevocationSet()
    revs.apply(_jti("a", 1_000))
    revs.apply(Revocation(RevocationKind.GRANT, "g", 0, 1_001))
    revs.apply(Revocation(RevocationKind.CLIENT, "c", 10, 1_000))
    assert revs.sweep(999) == 0
    assert revs.sweep(1_000) == 2  # the jti and the client watermark
    assert revs.check("a", None, None, None, 0) is None
    assert revs.check("x", "g", None, None, 0) == "grant"
    assert revs.sweep(1_001) == 1
    assert len(revs) == 0


def test_sweep_keeps_an_entry_whose_expiry_was_raised_to_a_later_slot() -> None:
    revs = RevocationSet()
    revs.apply(_jti("a", 1_000))
    revs.apply(_jti("a", 5_000))  # now in two wheel slots; the later one is the truth
    assert revs.sweep(4_999) == 0
    assert revs.check("a", None, None, None, 0) == "jti"
    assert revs.sweep(5_000) == 1
    assert len(revs) == 0


def test_duplicate_applies_in_one_slot_are_swept_once() -> None:
    revs = RevocationSet()
    for _ in range(3):
        revs.apply(_jti("a", 1_000))
    revs.apply(_jti("a", 1_001))
    assert revs.sweep(2_000) == 1


def test_load_denylist_bulk_matches_apply() -> None:
    bulk, one_by_one = RevocationSet(), RevocationSet()
    values = [f"j{i}" for i in range(100)]
    exps = [1_000 + i for i in range(100)]
    bulk.load_denylist(RevocationKind.JTI, values, exps)
    bulk.load_denylist(RevocationKind.JTI, values[:10], [1] * 10)  # lower: ignored
    for v, e in zip(values, exps, strict=True):
        one_by_one.apply(_jti(v, e))
    assert sorted(bulk.entries(), key=str) == sorted(one_by_one.entries(), key=str)
    assert bulk.sweep(1_049) == 50
    with pytest.raises(ValueError, match="length"):
        bulk.load_denylist(RevocationKind.JTI, ["a"], [])
    with pytest.raises(ValueError, match="denylist"):
        bulk.load_denylist(RevocationKind.SUBJECT, ["a"], [1])


def test_snapshot_batch_columns_load_every_kind() -> None:
    batch = SnapshotBatch.empty()
    batch.add("jti", "j", 0, 10)
    batch.add("grant", "g", 0, 11)
    batch.add("subject", "s", 5, 12)
    batch.add("client", "c", 6, 13)
    with pytest.raises(ValueError, match="kind"):
        batch.add("key", "k", 0, 1)
    assert len(batch) == 4
    revs = RevocationSet()
    batch.load_into(revs)
    assert set(revs.entries()) == {
        Revocation(RevocationKind.JTI, "j", 0, 10),
        Revocation(RevocationKind.GRANT, "g", 0, 11),
        Revocation(RevocationKind.SUBJECT, "s", 5, 12),
        Revocation(RevocationKind.CLIENT, "c", 6, 13),
    }


_revocations = st.lists(
    st.builds(
        Revocation,
        st.sampled_from(list(RevocationKind)),
        st.sampled_from(["a", "b", "c"]),
        st.integers(0, 50),
        st.integers(0, 300),
    ),
    max_size=30,
)


@given(_revocations, st.randoms(use_true_random=False))
def test_applying_is_commutative_and_idempotent(revs: list[Revocation], rnd: random.Random) -> None:
    # docs/design.md §4: events may be applied in any order, any number of times.
    first, second = RevocationSet(), RevocationSet()
    first.apply_all(revs)
    shuffled = revs + revs
    rnd.shuffle(shuffled)
    second.apply_all(shuffled)
    assert set(first.entries()) == set(second.entries())
    now = rnd.randint(0, 300)
    assert first.sweep(now) == second.sweep(now)
    assert set(first.entries()) == set(second.entries())
    assert all(r.expires_at > now for r in first.entries())

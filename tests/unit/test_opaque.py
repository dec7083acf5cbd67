"""Opaque token format (docs/spec.md §3): prefix, 256 random bits, checksum; only SHA-256 stored."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenry.core import opaque, refresh


@pytest.mark.parametrize("prefix", sorted(opaque.PREFIXES))
def test_new_token_shape(prefix: str) -> None:
    token = opaque.new_token(prefix)
    assert token.startswith(prefix)
    assert len(token) == opaque.TOKEN_LENGTH == 56
    assert opaque.kind_of(token) == prefix


def test_tokens_are_random() -> None:
    assert len({opaque.new_token(opaque.ACCESS) for _ in range(1000)}) == 1000


def test_only_sha256_is_stored() -> None:
    token = opaque.new_token(opaque.ACCESS)
    assert opaque.token_hash(token) == hashlib.sha256(token.encode()).digest()


@given(st.integers(min_value=7, max_value=55), st.sampled_from("AZaz09_-"))
def test_single_character_change_fails_the_checksum(position: int, char: str) -> None:
    token = opaque.new_token(opaque.REFRESH)
    mutated = token[:position] + char + token[position + 1 :]
    if mutated != token:
        assert opaque.kind_of(mutated) is None


@pytest.mark.parametrize(
    "garbage",
    ["", "tkr_at_", "Bearer x", "tkr_xx_" + "A" * 49, "eyJhbGciOiJFUzI1NiJ9.e30.sig", "é" * 56],
)
def test_garbage_is_rejected_without_a_lookup(garbage: str) -> None:
    assert opaque.kind_of(garbage) is None


def test_prefix_swap_is_rejected() -> None:
    token = opaque.new_token(opaque.ACCESS)
    assert opaque.kind_of(opaque.REFRESH + token[7:]) is None


def test_derived_tokens_are_deterministic_and_kind_separated() -> None:
    key = refresh.derivation_key(b"p" * 32)
    spent = opaque.new_token(opaque.REFRESH)
    a = refresh.successor_of(key, spent)
    assert a == refresh.successor_of(key, spent)
    assert opaque.kind_of(a) == opaque.REFRESH
    access = refresh.access_token_of(key, spent)
    assert opaque.kind_of(access) == opaque.ACCESS
    assert access[7:] != a[7:]
    assert refresh.successor_of(refresh.derivation_key(b"q" * 32), spent) != a
    assert refresh.successor_of(key, refresh.successor_of(key, spent)) != a


def test_unknown_prefix_cannot_be_minted() -> None:
    with pytest.raises(ValueError, match="prefix"):
        opaque.new_token("tkr_zz_")

"""Private keys at rest: AES-256-GCM with the kid as associated data, KEK rings, env loading."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tokenry.core.keywrap import (
    SEAL_MAGIC,
    Kek,
    KekRing,
    KeyUnwrapError,
    is_sealed,
    kek_from_env,
    kek_ring,
    open_sealed,
    seal,
)

SECRET = b"0\x82\x01\x00 a PKCS#8 DER private key, pretend"


def test_seal_then_open() -> None:
    kek = Kek.generate()
    sealed = seal(kek, "kid1", SECRET)
    assert sealed.startswith(SEAL_MAGIC) and is_sealed(sealed)
    assert SECRET not in sealed
    assert open_sealed(kek, "kid1", sealed) == SECRET


def test_each_seal_uses_a_fresh_nonce() -> None:
    kek = Kek.generate()
    assert seal(kek, "kid1", SECRET) != seal(kek, "kid1", SECRET)


def test_a_ciphertext_moved_to_another_kid_does_not_open() -> None:
    """The kid is associated data: swapping two rows' private keys is detected."""
    kek = Kek.generate()
    with pytest.raises(KeyUnwrapError):
        open_sealed(kek, "kid2", seal(kek, "kid1", SECRET))


def test_the_wrong_kek_does_not_open() -> None:
    with pytest.raises(KeyUnwrapError) as err:
        open_sealed(Kek.generate(), "kid1", seal(Kek.generate(), "kid1", SECRET))
    assert "kid1" in str(err.value)


@pytest.mark.parametrize("position", [0, 4, 10, 20, -1])
def test_any_flipped_byte_is_detected(position: int) -> None:
    kek = Kek.generate()
    sealed = bytearray(seal(kek, "kid1", SECRET))
    sealed[position] ^= 0x01
    with pytest.raises(KeyUnwrapError):
        open_sealed(kek, "kid1", bytes(sealed))


def test_truncated_blobs_are_refused() -> None:
    kek = Kek.generate()
    for blob in (b"", SEAL_MAGIC, SEAL_MAGIC + b"x" * 20):
        with pytest.raises(KeyUnwrapError, match="truncated"):
            open_sealed(kek, "kid1", blob)
        assert not is_sealed(blob)


def test_skeleton_format_without_magic_still_opens() -> None:
    kek = Kek.generate()
    nonce = os.urandom(12)
    legacy = nonce + AESGCM(kek.key).encrypt(nonce, SECRET, b"kid1")
    assert not is_sealed(legacy)
    assert open_sealed(kek, "kid1", legacy) == SECRET


def test_plaintext_keys_never_look_sealed() -> None:
    for plaintext in (b"-----BEGIN PRIVATE KEY-----\n...", b'{"kty":"EC","d":"..."}', SECRET):
        assert not is_sealed(plaintext)


def test_kek_repr_and_ring_repr_hide_the_key() -> None:
    kek = Kek.generate()
    assert kek.encoded() not in repr(kek)
    ring = KekRing(kek, (Kek.generate(),))
    assert kek.encoded() not in repr(ring) and kek.id in repr(ring)


def test_kek_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Kek.from_key(b"short")
    with pytest.raises(ValueError, match="base64url"):
        Kek.parse("not base64 !!!")


def test_a_ring_seals_with_its_primary_and_opens_with_any() -> None:
    old, new = Kek.generate(), Kek.generate()
    ring = KekRing(new, (old,))
    sealed, kek_id = ring.seal("kid1", SECRET)
    assert kek_id == new.id
    assert ring.open("kid1", kek_id, sealed) == SECRET
    assert ring.open("kid1", old.id, seal(old, "kid1", SECRET)) == SECRET
    assert ring.ids == (new.id, old.id)
    with pytest.raises(KeyUnwrapError, match="not held"):
        KekRing(old).open("kid1", new.id, sealed)


def test_ring_of_a_single_kek() -> None:
    kek = Kek.generate()
    assert KekRing.of(kek) == KekRing(kek)
    ring = KekRing(kek)
    assert KekRing.of(ring) is ring


def test_kek_from_env_and_file(tmp_path: Path) -> None:
    kek = Kek.generate()
    assert kek_from_env({"TOKENRY_KEK": kek.encoded()}, "TOKENRY_KEK") == kek
    path = tmp_path / "kek"
    path.write_text(kek.encoded() + "\n")
    assert kek_from_env({"TOKENRY_KEK_FILE": str(path)}, "TOKENRY_KEK") == kek
    assert kek_from_env({}, "TOKENRY_KEK") is None
    with pytest.raises(ValueError, match="cannot read"):
        kek_from_env({"TOKENRY_KEK_FILE": str(tmp_path / "missing")}, "TOKENRY_KEK")


def test_a_bad_kek_value_is_never_echoed() -> None:
    with pytest.raises(ValueError, match="TOKENRY_KEK_NEW must be") as err:
        kek_from_env({"TOKENRY_KEK_NEW": "c2VjcmV0LXZhbHVl"}, "TOKENRY_KEK_NEW")
    assert "c2VjcmV0LXZhbHVl" not in str(err.value)


def test_kek_ring_during_a_kek_change() -> None:
    old, new = Kek.generate(), Kek.generate()
    assert kek_ring(old, {}) == KekRing(old)
    assert kek_ring(old, {"TOKENRY_KEK_NEW": new.encoded()}) == KekRing(new, (old,))
    # The same KEK twice is just that KEK.
    assert kek_ring(old, {"TOKENRY_KEK_NEW": old.encoded()}) == KekRing(old)

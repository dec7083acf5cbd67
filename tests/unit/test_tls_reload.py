"""Pure parts of the reloading client channel (libs/tokenry/tls_reload.py): which files form a
usable set, how stubs' arguments are passed on, and the verifier's one-of rule."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from tokenry.devstack.ca import CertificateAuthority
from tokenry.tls import ClientTls
from tokenry.tls_reload import _positional, _signature, load_credentials
from tokenry.verifier import start_verifier

CA = CertificateAuthority.generate("reload unit CA")


def _files(tmp_path: Path) -> ClientTls:
    (tmp_path / "ca.pem").write_bytes(CA.cert_pem)
    CA.issue("a").write(tmp_path / "c.pem", tmp_path / "k.pem")
    return ClientTls(tmp_path / "ca.pem", tmp_path / "c.pem", tmp_path / "k.pem")


def test_a_consistent_set_loads_and_a_mismatched_key_is_named_not_shown(tmp_path: Path) -> None:
    tls = _files(tmp_path)
    assert isinstance(load_credentials(tls), grpc.ChannelCredentials)
    other = CA.issue("b")
    (tmp_path / "k.pem").write_bytes(other.key_pem)
    with pytest.raises(ValueError, match="is not the key of") as caught:
        load_credentials(tls)
    assert "BEGIN" not in str(caught.value)
    (tmp_path / "k.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n")
    with pytest.raises(ValueError, match="bad TLS material") as caught:
        load_credentials(tls)
    assert "garbage" not in str(caught.value)


def test_the_signature_sees_a_replaced_file_and_a_missing_one(tmp_path: Path) -> None:
    tls = _files(tmp_path)
    paths = [p for p in (tls.ca, tls.cert, tls.key) if p is not None]
    before = _signature(paths)
    CA.issue("a").write(tmp_path / "c.pem", tmp_path / "k.pem")
    assert _signature(paths) != before
    (tmp_path / "k.pem").unlink()
    assert _signature(paths)[2] == (-1, -1, -1, -1)


def test_stub_arguments_keep_grpcs_order() -> None:
    ser, de = bytes, str
    assert _positional(("/a.B/C",), {}) == ("/a.B/C", None, None, False)
    assert _positional(
        ("/a.B/C",),
        {"request_serializer": ser, "response_deserializer": de, "_registered_method": True},
    ) == ("/a.B/C", ser, de, True)


def test_check_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="check_interval"):
        ClientTls(check_interval=0)


async def test_start_verifier_takes_credentials_or_files_not_both(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        await start_verifier(
            issuer="https://i",
            audience="a",
            keyrotator_addr="127.0.0.1:1",
            revocation_addr="127.0.0.1:1",
            nats_url="nats://127.0.0.1:1",
            channel_credentials=grpc.ssl_channel_credentials(),
            channel_tls=_files(tmp_path),
        )

"""The dev CA of `tokenry dev` and how callers find it (issue 13 item 5), without servers."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tokenry.devstack.ca import dev_pki
from tokenry.devstack.endpoints import export_lines, locate, read_dev_file

NAMES = ["issuer", "nats", "demo-service"]


def test_dev_pki_writes_private_keys_0600_and_names_each_certificate(tmp_path: Path) -> None:
    pki = dev_pki(tmp_path / "tls", NAMES)
    assert (tmp_path / "tls").stat().st_mode & 0o777 == 0o700
    ca = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for name in NAMES:
        assert pki.key(name).stat().st_mode & 0o777 == 0o600
        cert = x509.load_pem_x509_certificate(pki.cert(name).read_bytes())
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)  # raises unless the dev CA signed it
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "localhost" in sans.get_values_for_type(x509.DNSName)
        assert f"spiffe://tokenry.dev/{name}" in sans.get_values_for_type(
            x509.UniformResourceIdentifier
        )
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)
    assert (tmp_path / "tls" / "ca-key.pem").stat().st_mode & 0o777 == 0o600


def test_dev_pki_keeps_its_ca_across_runs_and_renews_it_before_expiry(tmp_path: Path) -> None:
    first = dev_pki(tmp_path, ["issuer"]).ca.read_bytes()
    again = dev_pki(tmp_path, ["issuer"]).ca.read_bytes()
    assert again == first  # a CLI or browser trusting ca.pem keeps working
    late = dt.datetime.now(dt.UTC) + dt.timedelta(days=360)
    assert dev_pki(tmp_path, ["issuer"], now=late).ca.read_bytes() != first


def _dev_json(home: Path, **tls: str | None) -> None:
    home.mkdir(parents=True, exist_ok=True)
    data = {
        "pid": os.getpid(),
        "database_url": "postgresql://x@/y?host=/tmp",
        "nats_url": "nats://127.0.0.1:4222",
        "issuer_url": "http://127.0.0.1:8080",
        "addrs": {"issuer": "127.0.0.1:50051"},
        **tls,
    }
    (home / "dev.json").write_text(json.dumps(data))


def test_callers_find_the_dev_ca_from_dev_json_and_env_wins(tmp_path: Path) -> None:
    pki = dev_pki(tmp_path / "tls", ["tokenry-admin"])
    _dev_json(
        tmp_path,
        tls_ca=str(pki.ca),
        tls_cert=str(pki.cert("tokenry-admin")),
        tls_key=str(pki.key("tokenry-admin")),
        nats_tls_ca=str(pki.ca),
    )
    found = locate({}, dev=True, data_dir=tmp_path)
    tls = found.client_tls()
    assert tls is not None and tls.ca == pki.ca and tls.cert == pki.cert("tokenry-admin")
    assert found.nats_tls() is not None
    exported = "\n".join(export_lines(read_dev_file(tmp_path)))  # type: ignore[arg-type]
    assert f"export TOKENRY_TLS_CA={pki.ca}" in exported
    assert f"export TOKENRY_NATS_TLS_CA={pki.ca}" in exported
    other = tmp_path / "other-ca.pem"
    other.write_bytes(pki.ca.read_bytes())
    env_tls = locate({"TOKENRY_TLS_CA": str(other)}, dev=True, data_dir=tmp_path).client_tls()
    assert env_tls is not None and env_tls.ca == other and env_tls.cert is None


def test_insecure_dev_stack_means_plaintext_callers(tmp_path: Path) -> None:
    _dev_json(tmp_path)  # what `tokenry dev --insecure` writes: no tls_ca
    found = locate({}, dev=True, data_dir=tmp_path)
    assert found.client_tls() is None and found.nats_tls() is None
    exported = "\n".join(export_lines(read_dev_file(tmp_path)))  # type: ignore[arg-type]
    assert "TOKENRY_TLS_CA" not in exported

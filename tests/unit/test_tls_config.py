"""The start-up policy of servicekit.tls (issue 13 item 1): what refuses to start, and why."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tokenry.devstack.ca import CertificateAuthority
from tokenry.servicekit import tls
from tokenry.servicekit.config import Reader
from tokenry.servicekit.tls import ServerTls, Transport

ON = Transport(ServerTls(Path("c"), Path("k")))


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "example.com"])
def test_rejects_plaintext_on_non_loopback_outside_dev(host: str) -> None:
    reader = Reader({})
    tls.check_listener(reader, tls.PLAINTEXT, host, 50051, "TOKENRY_ISSUER_LISTEN", dev=False)
    assert len(reader.problems) == 1
    assert "without TLS" in reader.problems[0]
    assert "TOKENRY_TLS_TERMINATED=1" in reader.problems[0]


@pytest.mark.parametrize(
    ("host", "transport", "dev"),
    [
        ("127.0.0.1", tls.PLAINTEXT, False),  # loopback
        ("::1", tls.PLAINTEXT, False),
        ("localhost", tls.PLAINTEXT, False),
        ("0.0.0.0", Transport(terminated_in_front=True), False),  # a sidecar terminates TLS
        ("0.0.0.0", ON, False),  # TLS on
        ("0.0.0.0", tls.PLAINTEXT, True),  # dev mode says so loudly instead
    ],
)
def test_allows_listener(host: str, transport: Transport, dev: bool) -> None:
    reader = Reader({})
    tls.check_listener(reader, transport, host, 50051, "TOKENRY_ISSUER_LISTEN", dev=dev)
    assert reader.problems == []


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("postgresql://u:p@db.internal:5432/tokenry", False),
        ("postgresql://u:p@db.internal:5432/tokenry?sslmode=require", False),
        ("postgresql://u:p@db.internal:5432/tokenry?sslmode=verify-ca", False),
        ("postgresql://u:p@db.internal:5432/tokenry?sslmode=verify-full", True),
        ("postgresql://u:p@10.0.0.5,10.0.0.6/tokenry?sslmode=verify-full", True),
        ("postgresql://u:p@127.0.0.1,10.0.0.6/tokenry", False),  # one remote host is enough
        ("postgresql://u:p@127.0.0.1:5432/tokenry", True),
        ("postgresql://u:p@[::1]:5432/tokenry", True),
        ("postgresql://u@/tokenry?host=/var/run/postgresql", True),  # Unix socket
    ],
)
def test_database_url_needs_verify_full_off_loopback(url: str, ok: bool) -> None:
    reader = Reader({})
    tls.check_database_url(reader, url, dev=False)
    assert (reader.problems == []) is ok, reader.problems
    if not ok:
        assert "p@" not in reader.problems[0]  # the URL (and its password) is never echoed
    dev = Reader({})
    tls.check_database_url(dev, url, dev=True)
    assert dev.problems == []


def _pair(tmp_path: Path, lifetime: dt.timedelta) -> dict[str, str]:
    ca = CertificateAuthority.generate()
    ca.write(tmp_path / "ca.pem", tmp_path / "ca-key.pem")
    ca.issue("svc", lifetime=lifetime).write(tmp_path / "c.pem", tmp_path / "k.pem")
    return {
        "TOKENRY_TLS_CERT": str(tmp_path / "c.pem"),
        "TOKENRY_TLS_KEY": str(tmp_path / "k.pem"),
        "TOKENRY_TLS_CA": str(tmp_path / "ca.pem"),
    }


def test_reads_tls_and_caps_max_age_at_the_certificate_lifetime(tmp_path: Path) -> None:
    env = _pair(tmp_path, dt.timedelta(minutes=20))
    reader = Reader({**env, "TOKENRY_TLS_CLIENT_AUTH": "1"})
    transport = tls.read_transport(reader)
    assert reader.problems == []
    assert transport.server is not None and transport.server.client_auth
    # notBefore is 5 min back-dated: lifetime 25 min, under the 1 h default.
    assert transport.max_connection_age == pytest.approx(25 * 60, abs=2)
    long = Reader(_pair(tmp_path, dt.timedelta(days=30)))
    assert tls.read_transport(long).max_connection_age == 3600.0


def test_rejects_certificate_without_key_and_mismatched_key(tmp_path: Path) -> None:
    env = _pair(tmp_path, dt.timedelta(days=1))
    reader = Reader({"TOKENRY_TLS_CERT": env["TOKENRY_TLS_CERT"]})
    tls.read_transport(reader)
    assert any("go together" in p for p in reader.problems)
    other = CertificateAuthority.generate().issue("other")
    (tmp_path / "other-key.pem").write_bytes(other.key_pem)
    reader = Reader({**env, "TOKENRY_TLS_KEY": str(tmp_path / "other-key.pem")})
    tls.read_transport(reader)
    assert any("is not the key of" in p for p in reader.problems)
    assert not any("PRIVATE KEY" in p for p in reader.problems)


def test_client_auth_needs_a_ca(tmp_path: Path) -> None:
    env = _pair(tmp_path, dt.timedelta(days=1))
    del env["TOKENRY_TLS_CA"]
    reader = Reader({**env, "TOKENRY_TLS_CLIENT_AUTH": "1"})
    tls.read_transport(reader)
    assert any("TOKENRY_TLS_CLIENT_AUTH=1 needs" in p for p in reader.problems)


def test_nats_tls_defaults_its_ca_to_the_tls_ca(tmp_path: Path) -> None:
    env = _pair(tmp_path, dt.timedelta(days=1))
    reader = Reader({**env, "TOKENRY_NATS_URL": "tls://nats.internal:4222"})
    transport = tls.read_transport(reader)
    assert reader.problems == []
    assert transport.nats is not None and transport.nats.ca == tmp_path / "ca.pem"
    assert tls.read_transport(Reader(env)).nats is None  # nats:// and no NATS_TLS_*: off


def test_service_refuses_to_start_plaintext_on_all_interfaces(tmp_path: Path) -> None:
    """The one clear line and exit code 2 (docs/spec.md §6), before anything connects."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "TOKENRY_DATABASE_URL": "postgresql://u:p@127.0.0.1:1/x",
        "TOKENRY_NATS_URL": "nats://127.0.0.1:1",
        "TOKENRY_ISSUER_URL": "https://issuer.example",
        "TOKENRY_SECRET_PEPPER": "p" * 40,
        "TOKENRY_REVOCATION_LISTEN": "0.0.0.0:0",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tokenry.services.revocation"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "refusing to listen on 0.0.0.0:0" in lines[0]

"""`tokenry dev`'s URLs and trust exports (issue 14, 15, 16): the gateway's URL follows the port
it actually got, the CA exports let curl, Python and Node trust the dev CA without losing the
system's roots, and the scrape endpoints are on loopback unless telemetry is disabled."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tokenry.devstack.ca import CertificateAuthority
from tokenry.devstack.endpoints import export_lines, read_dev_file
from tokenry.devstack.stack import metrics_listen, served_url, write_ca_bundle


def test_the_gateway_url_follows_the_listen_address() -> None:
    assert served_url("127.0.0.1:8080", tls=True) == "https://localhost:8080"
    assert served_url("127.0.0.1:8080", tls=False) == "http://127.0.0.1:8080"  # --insecure
    assert served_url("0.0.0.0:41234", tls=True) == "https://localhost:41234"  # a fallback port
    assert served_url("10.1.2.3:9000", tls=False) == "http://10.1.2.3:9000"


def test_the_bundle_keeps_the_system_roots_and_adds_the_dev_ca(tmp_path: Path) -> None:
    ca = CertificateAuthority.generate()
    ca.write(tmp_path / "ca.pem", tmp_path / "ca-key.pem")
    write_ca_bundle(tmp_path / "ca.pem", tmp_path / "bundle.pem")
    bundle = (tmp_path / "bundle.pem").read_bytes()
    assert bundle.endswith(ca.cert_pem)
    assert bundle.count(b"BEGIN CERTIFICATE") > 1  # the system's roots are kept


def test_dev_env_exports_the_ca_for_curl_python_and_node(tmp_path: Path) -> None:
    dev = {
        "pid": os.getpid(),
        "database_url": "postgresql://postgres@/postgres?host=/tmp/s",
        "nats_url": "nats://127.0.0.1:4999",
        "issuer_url": "https://localhost:41234",
        "gateway_url": "https://localhost:41234",
        "addrs": {"issuer": "127.0.0.1:6001"},
        "tls_ca": "/h/tls/ca.pem",
        "ca_bundle": "/h/tls/ca-bundle.pem",
        "metrics": {"issuer": "http://127.0.0.1:9474/metrics"},
    }
    (tmp_path / "dev.json").write_text(json.dumps(dev))
    running = read_dev_file(tmp_path)
    assert running is not None
    lines = export_lines(running)
    assert "export NODE_EXTRA_CA_CERTS=/h/tls/ca.pem" in lines  # Node adds it to its roots
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # these replace them
        assert f"export {name}=/h/tls/ca-bundle.pem" in lines
    assert "# metrics: issuer http://127.0.0.1:9474/metrics" in lines
    assert "# gateway: https://localhost:41234/.well-known/openid-configuration" in lines
    # What `eval` makes of it: the comments are harmless.
    shell = subprocess.run(
        ["bash", "-c", "\n".join(lines) + '\necho "$TOKENRY_ISSUER_URL $SSL_CERT_FILE"'],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert shell.stdout.split() == ["https://localhost:41234", "/h/tls/ca-bundle.pem"]


def test_scrape_endpoints_are_on_loopback_unless_telemetry_is_disabled() -> None:
    listen = metrics_listen({})
    assert set(listen) == {"keyrotator", "issuer", "revocation", "introspector", "gateway"}
    addrs = [env["TOKENRY_METRICS_LISTEN"] for env in listen.values()]
    assert all(a.startswith("127.0.0.1:") for a in addrs) and len(set(addrs)) == 5
    assert metrics_listen({"OTEL_SDK_DISABLED": "true"}) == {}

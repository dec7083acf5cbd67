"""One rule finds a running stack: flags > TOKENRY_* variables > a live dev.json > defaults."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tokenry.devstack.endpoints import export_lines, locate, read_dev_file

SERVICES = ("issuer", "introspector", "revocation", "keyrotator")


def _dev_json(home: Path, pid: int | None = None) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dev.json").write_text(
        json.dumps(
            {
                "pid": pid or os.getpid(),
                "database_url": "postgresql://postgres@/postgres?host=/tmp/s",
                "nats_url": "nats://127.0.0.1:4999",
                "issuer_url": "http://127.0.0.1:8080",
                "nats_prefix": "dev",
                "nats_stream": "DEV_EVENTS",
                "addrs": {s: f"127.0.0.1:{6001 + i}" for i, s in enumerate(SERVICES)},
            }
        )
    )


def test_defaults_without_anything(tmp_path: Path) -> None:
    found = locate({"TOKENRY_HOME": str(tmp_path)}, dev=True)
    assert found.addr("issuer") == "127.0.0.1:50051"
    assert found.addrs["keyrotator"].source == "default"
    assert found.nats_url.value == "nats://127.0.0.1:4222"
    assert found.database_url is None and found.dev is None


def test_precedence(tmp_path: Path) -> None:
    _dev_json(tmp_path)
    env = {"TOKENRY_HOME": str(tmp_path), "TOKENRY_REVOCATION_ADDR": "10.0.0.1:1"}
    found = locate(env, flags={"issuer": "10.0.0.2:2"}, dev=True)
    assert (found.addr("issuer"), found.addrs["issuer"].source) == ("10.0.0.2:2", "--issuer-addr")
    assert found.addrs["revocation"].source == "TOKENRY_REVOCATION_ADDR"
    assert (found.addr("keyrotator"), found.addrs["keyrotator"].source) == (
        "127.0.0.1:6004",
        "dev.json",
    )
    assert found.nats_url.value == "nats://127.0.0.1:4999"
    assert (found.nats_prefix, found.nats_stream) == ("dev", "DEV_EVENTS")
    # The dev admin goes only where dev.json points.
    assert found.is_dev_target("keyrotator")
    assert not found.is_dev_target("issuer") and not found.is_dev_target("revocation")


def test_the_library_reads_dev_json_only_in_dev_mode(tmp_path: Path) -> None:
    _dev_json(tmp_path)
    env = {"TOKENRY_HOME": str(tmp_path)}
    assert locate(env).addrs["issuer"].source == "default"
    assert locate({**env, "TOKENRY_DEV": "1"}).addrs["issuer"].source == "dev.json"
    assert locate(env, dev=True).addrs["issuer"].source == "dev.json"


def test_a_dead_writer_makes_dev_json_stale(tmp_path: Path) -> None:
    import subprocess
    import sys

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    _dev_json(tmp_path, pid=int(gone.stdout))
    assert read_dev_file(tmp_path) is None
    assert locate({"TOKENRY_HOME": str(tmp_path)}, dev=True).dev is None


def test_export_lines(tmp_path: Path) -> None:
    _dev_json(tmp_path)
    running = read_dev_file(tmp_path)
    assert running is not None
    lines = export_lines(running)
    assert "export TOKENRY_ISSUER_ADDR=127.0.0.1:6001" in lines
    assert "export TOKENRY_NATS_URL=nats://127.0.0.1:4999" in lines
    assert f"export TOKENRY_HOME={tmp_path}" in lines
    assert "postgres@/postgres?host=/tmp/s" in "\n".join(lines)  # quoted for the shell
    assert "database_url" not in repr(running)

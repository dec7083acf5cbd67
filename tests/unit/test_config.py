"""Configuration is validated at start-up: every bad value named, all reported at once, exit 2."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tokenry.core.keywrap import Kek
from tokenry.servicekit import variables
from tokenry.servicekit.config import ConfigError, Reader, listen_addr, load, read_listen
from tokenry.servicekit.config import read as read_shared
from tokenry.services.keyrotator import config as rotator_config
from tokenry.services.revocation.settings import RevocationSettings

GOOD = {
    # Off loopback outside dev mode, PostgreSQL must be verify-full (tests/unit/test_tls_config)
    "TOKENRY_DATABASE_URL": "postgresql://db/tokenry?sslmode=verify-full",
    "TOKENRY_NATS_URL": "nats://127.0.0.1:4222",
    "TOKENRY_ISSUER_URL": "https://auth.example",
    "TOKENRY_SECRET_PEPPER": "p" * 43,
}


def test_good_environment_loads() -> None:
    kek = Kek.generate()
    settings = load({**GOOD, "TOKENRY_KEK": kek.encoded()}, need_kek=True)
    assert settings.kek is not None and settings.kek.id == kek.id
    assert settings.subjects.revocation.__name__ == "revocation"
    assert settings.stream.name == "TOKENRY_EVENTS"
    assert not settings.dev


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"TOKENRY_DATABASE_URL": ""}, "TOKENRY_DATABASE_URL"),
        ({"TOKENRY_NATS_URL": ""}, "TOKENRY_NATS_URL"),
        ({"TOKENRY_ISSUER_URL": ""}, "TOKENRY_ISSUER_URL"),
        ({"TOKENRY_SECRET_PEPPER": "short"}, "TOKENRY_SECRET_PEPPER"),
        ({"TOKENRY_KEK": "not base64!"}, "TOKENRY_KEK"),
        ({"TOKENRY_KEK": "AAAA"}, "TOKENRY_KEK"),
        ({"TOKENRY_ACCESS_TOKEN_ALG": "HS256"}, "TOKENRY_ACCESS_TOKEN_ALG"),
        ({"TOKENRY_STREAM_REPLICAS": "0"}, "TOKENRY_STREAM_REPLICAS"),
        ({"TOKENRY_DEV": "maybe"}, "TOKENRY_DEV"),
        ({"TOKENRY_NATS_PREFIX": "a.b"}, "TOKENRY_NATS_PREFIX"),
    ],
)
def test_each_bad_value_names_its_variable(change: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load({**GOOD, "TOKENRY_KEK": Kek.generate().encoded(), **change})


def test_secret_values_never_appear_in_errors() -> None:
    with pytest.raises(ConfigError) as err:
        load({**GOOD, "TOKENRY_KEK": "secret-kek-material"})
    assert "secret-kek-material" not in str(err.value)


def test_kek_is_required_where_needed() -> None:
    with pytest.raises(ConfigError, match="TOKENRY_KEK"):
        load(GOOD, need_kek=True)


def test_dev_mode_defaults_the_issuer_url_and_binds_loopback() -> None:
    env = {**GOOD, "TOKENRY_DEV": "1"}
    del env["TOKENRY_ISSUER_URL"]
    assert load(env).issuer_url == "http://127.0.0.1:8080"
    assert listen_addr("issuer", {"TOKENRY_DEV": "1"}) == ("127.0.0.1", 50051)
    assert listen_addr("revocation", {}) == ("0.0.0.0", 50053)
    with pytest.raises(ConfigError, match="TOKENRY_ISSUER_LISTEN"):
        listen_addr("issuer", {"TOKENRY_ISSUER_LISTEN": "nonsense"})


# --- one reader, every bad value at once (docs/operations.md) ---------------------------------


ROOT = Path(__file__).resolve().parents[2]

#: one malformed value for every variable of the table
BAD = {
    "TOKENRY_DATABASE_URL": "notaurl",
    "TOKENRY_NATS_URL": "garbage",
    "TOKENRY_ISSUER_URL": "auth.example",
    "TOKENRY_KEK": "AAAA",
    "TOKENRY_KEK_NEW": "not-a-key",
    "TOKENRY_SECRET_PEPPER": "short",
    "TOKENRY_DEV": "maybe",
    "TOKENRY_ISSUER_LISTEN": "nonsense",
    "TOKENRY_INTROSPECTOR_LISTEN": "host:port",
    "TOKENRY_REVOCATION_LISTEN": "1.2.3.4:99999",
    "TOKENRY_KEYROTATOR_LISTEN": "50054",
    "TOKENRY_GATEWAY_LISTEN": "gateway:port",
    "TOKENRY_GATEWAY_USERS": "relative/users.json",
    "TOKENRY_LOGIN_URL": "login.example",
    "TOKENRY_WORKERS": "abc",
    "TOKENRY_EVENT_LOOP": "trio",
    "TOKENRY_METRICS_LISTEN": "metrics:port",
    "TOKENRY_LOG_LEVEL": "loud",
    "TOKENRY_ACCESS_TOKEN_ALG": "HS256",
    "TOKENRY_NATS_PREFIX": "a.b",
    "TOKENRY_NATS_STREAM": "A B",
    "TOKENRY_STREAM_REPLICAS": "0",
    "TOKENRY_MAX_CLOCK_SKEW": "abc",
    "TOKENRY_REFRESH_GRACE": "-1",
    "TOKENRY_VERIFIER_ALLOWED_IDS": "https://not-a-spiffe-id",
    "TOKENRY_VERIFIER_AUTH": "sometimes",
    "TOKENRY_TRUSTED_PROXY_HEADER": "x forwarded for",
    "TOKENRY_HEARTBEAT_INTERVAL": "fast",
    "TOKENRY_PUBLISHER_LEASE_TTL": "0",
    "TOKENRY_SWEEP_INTERVAL": "nan",
    "TOKENRY_RELAY": "sometimes",
    "TOKENRY_KEY_ROTATION_INTERVAL": "weekly",
    "TOKENRY_KEY_PUBLISH_LEAD": "-1h",
    "TOKENRY_KEY_RETENTION": "1y",
    "TOKENRY_JWKS_CACHE_TTL": "0",
    "TOKENRY_KEYROTATOR_LEASE_TTL": "soon",
    "TOKENRY_KEY_SETS": "access",
    "TOKENRY_TLS_CERT": "/nonexistent/cert.pem",  # without its key
    "TOKENRY_TLS_KEY": "/nonexistent/key.pem",  # without its certificate
    "TOKENRY_TLS_CA": "/nonexistent/ca.pem",
    "TOKENRY_TLS_CLIENT_AUTH": "maybe",
    "TOKENRY_TLS_TERMINATED": "perhaps",
    "TOKENRY_MAX_CONNECTION_AGE": "forever",
    "TOKENRY_NATS_TLS_CA": "/nonexistent/nats-ca.pem",
    "TOKENRY_NATS_TLS_CERT": "/nonexistent/nats.pem",  # without its key
    "TOKENRY_NATS_TLS_KEY": "/nonexistent/nats-key.pem",  # without its certificate
}


def _read_everything(env: dict[str, str]) -> list[str]:
    """What `python -m tokenry.services.<name>` reads, for every service at once."""
    reader = Reader(env)
    settings = read_shared(reader, need_kek=True)
    for service in variables.DEFAULT_PORTS:
        read_listen(reader, service)
    reader.get(variables.GATEWAY_LISTEN)
    reader.get(variables.GATEWAY_USERS)
    reader.get(variables.LOGIN_URL)
    reader.get(variables.WORKERS)
    reader.get(variables.EVENT_LOOP)
    reader.get(variables.METRICS_LISTEN)
    RevocationSettings.read(reader)
    rotator_config.read(reader, settings)
    return reader.problems


def test_the_bad_values_cover_the_table() -> None:
    assert set(BAD) == {var.name for var in variables.VARIABLES}


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_variable_with_a_bad_value_is_one_problem_naming_it(name: str) -> None:
    env = {**GOOD, "TOKENRY_KEK": Kek.generate().encoded(), name: BAD[name]}
    problems = _read_everything(env)
    assert len(problems) == 1, problems
    assert name in problems[0]
    assert "\n" not in problems[0]
    if name in ("TOKENRY_DATABASE_URL", "TOKENRY_NATS_URL", "TOKENRY_KEK", "TOKENRY_KEK_NEW"):
        assert BAD[name] not in problems[0]  # URLs may hold passwords; keys are secret


def test_every_problem_is_reported_at_once() -> None:
    env = {
        **GOOD,
        "TOKENRY_DATABASE_URL": "notaurl",
        "TOKENRY_NATS_URL": "garbage",
        "TOKENRY_WORKERS": "abc",
        "TOKENRY_LOG_LEVEL": "loud",
    }
    with pytest.raises(ConfigError) as err:
        load(env)
    named = " ".join(err.value.problems)
    assert "TOKENRY_DATABASE_URL" in named and "TOKENRY_NATS_URL" in named
    assert "TOKENRY_LOG_LEVEL" in named
    assert len(_read_everything(env)) == 5  # the four, and the missing KEK


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://tokenry:pw@db:5432/tokenry",
        "postgres://db/tokenry",
        "postgresql://postgres@/postgres?host=/tmp/x",
    ],
)
def test_good_database_urls(url: str) -> None:
    assert load({**GOOD, "TOKENRY_DATABASE_URL": url}).database_url == url


@pytest.mark.parametrize(
    "url", ["nats://127.0.0.1:4222", "tls://u:p@nats:4222", "nats://publisher:x@nats-0.nats:4222"]
)
def test_good_nats_urls(url: str) -> None:
    assert load({**GOOD, "TOKENRY_NATS_URL": url}).nats_url == url


def test_log_level_in_any_case() -> None:
    assert load({**GOOD, "TOKENRY_LOG_LEVEL": "debug"}).log_level == "DEBUG"


def test_docs_hold_the_table() -> None:
    """docs/operations.md prints every variable, exactly as declared."""
    text = (ROOT / "docs" / "operations.md").read_text()
    assert variables.markdown_table() in text, (
        "regenerate the table: python -m tokenry.servicekit.variables"
    )


def _tokenry_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.update(re.findall(r"^TOKENRY_[A-Z_]+$", node.value))
    return names


def test_every_variable_a_service_reads_is_declared() -> None:
    declared = {var.name for var in variables.VARIABLES}
    declared |= {f"{name}_FILE" for name in declared}
    internal = {"TOKENRY_WORKER_INDEX"}  # set by the supervisor for its workers
    files = [*(ROOT / "services").rglob("*.py"), *(ROOT / "libs/tokenry/servicekit").rglob("*.py")]
    found = set().union(*(_tokenry_names(p) for p in files))
    # The stream's default name happens to look like a variable.
    assert found - declared - internal - {"TOKENRY_EVENTS"} == set()


# --- the real entry points: one line, no traceback, exit 2 -------------------------------------


def _run_service(module: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TOKENRY_")}
    # Services listen on 0.0.0.0 by default: declare TLS in front, so only the value under
    # test is bad (the plaintext-listener refusal is tests/unit/test_tls_config.py's).
    base["TOKENRY_TLS_TERMINATED"] = "1"
    return subprocess.run(
        [sys.executable, "-m", f"tokenry.services.{module}", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("issuer", "TOKENRY_WORKERS"),
        ("revocation", "TOKENRY_MAX_CLOCK_SKEW"),
        ("introspector", "TOKENRY_LOG_LEVEL"),
        ("keyrotator", "TOKENRY_DATABASE_URL"),
        ("revocation", "TOKENRY_NATS_URL"),
        ("keyrotator", "TOKENRY_KEY_ROTATION_INTERVAL"),
    ],
)
def test_service_entry_point_exits_2_with_one_line(module: str, name: str) -> None:
    env = {**GOOD, "TOKENRY_KEK": Kek.generate().encoded(), name: BAD[name]}
    result = _run_service(module, env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith(f"tokenry-{module}: configuration error: {name}")


def test_service_reports_every_bad_value_in_one_go() -> None:
    env = {"TOKENRY_WORKERS": "abc", "TOKENRY_LOG_LEVEL": "loud"}
    result = _run_service("issuer", env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    # database, NATS, issuer URL, KEK, pepper missing; workers and log level bad
    assert len(lines) == 7, result.stderr


def test_a_bad_flag_is_one_line_and_exit_2() -> None:
    result = _run_service("issuer", {}, "--workers", "abc")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_port_in_use_is_a_configuration_error() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **GOOD,
            "TOKENRY_DATABASE_URL": "postgresql://u@127.0.0.1:9/x",  # never reached
            "TOKENRY_INTROSPECTOR_LISTEN": f"127.0.0.1:{port}",
        }
        result = _run_service("introspector", env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "cannot listen" in last and "TOKENRY_INTROSPECTOR_LISTEN" in last

"""Every CLI command, on every bad input: one line on stderr, no traceback, the documented exit
code (0 ok, 1 a negative answer, 2 usage or configuration error, 3 unreachable; docs/spec.md §6).

"A stopped stack" is simulated without starting one: addresses where nothing listens, and a
TOKENRY_HOME that holds a dev stack's credentials but no live dev.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tokenry.devstack.ports import free_tcp_port

TOKENRY = str(Path(sys.executable).with_name("tokenry"))
USAGE, UNREACHABLE = 2, 3


def _dead() -> str:
    return f"127.0.0.1:{free_tcp_port()}"


@pytest.fixture(scope="module")
def dead_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Nothing listens anywhere; credentials are given, so the call is attempted."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TOKENRY_")}
    return {
        **base,
        "TOKENRY_HOME": str(tmp_path_factory.mktemp("empty-home")),
        "TOKENRY_ISSUER_ADDR": _dead(),
        "TOKENRY_INTROSPECTOR_ADDR": _dead(),
        "TOKENRY_REVOCATION_ADDR": _dead(),
        "TOKENRY_KEYROTATOR_ADDR": _dead(),
        "TOKENRY_NATS_URL": f"nats://{_dead()}",
        "TOKENRY_CLIENT_ID": "admin",
        "TOKENRY_CLIENT_SECRET": "secret",
        "COLUMNS": "80",
    }


def tokenry(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TOKENRY, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def assert_one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.returncode == code, (result.returncode, result.stderr)
    return lines[0]


BAD_INPUTS = [
    # usage
    (("--bogus",), {}, USAGE),
    (("token", "issue", "--bogus"), {}, USAGE),
    (("token", "issue", "--format", "xml"), {}, USAGE),
    (("token", "revoke"), {}, USAGE),
    (("token", "revoke", "--jti", "a", "--subject", "b"), {}, USAGE),
    (("token", "verify", "t"), {}, USAGE),  # --audience is required
    (("token", "verify", "t", "--audience", "a", "--jwks-url", "http://x"), {}, USAGE),
    (("keys", "revoke"), {}, USAGE),
    (("client", "show"), {}, USAGE),
    (("client", "create", "x", "--jwks-file", "/nonexistent"), {}, USAGE),
    (("token", "issue", "--client-id", "only-the-id"), {"TOKENRY_CLIENT_SECRET": ""}, USAGE),
    (("events", "watch", "--count", "many"), {}, USAGE),
    # configuration
    (("migrate",), {"TOKENRY_DATABASE_URL": "notaurl"}, USAGE),
    (("migrate",), {"TOKENRY_DATABASE_URL": ""}, USAGE),
    (("keys", "rewrap"), {"TOKENRY_DATABASE_URL": "notaurl"}, USAGE),
    (("keys", "rewrap"), {"TOKENRY_DATABASE_URL": "postgresql://db/x"}, USAGE),  # no KEK
    (("client", "create", "x", "--bootstrap-admin"), {"TOKENRY_DATABASE_URL": "notaurl"}, USAGE),
    (("events", "watch"), {"TOKENRY_NATS_URL": "garbage"}, USAGE),
    (("events", "watch", "--nats-url", "garbage"), {}, USAGE),
    (("dev",), {"TOKENRY_DATABASE_URL": "notaurl"}, USAGE),
    (("dev",), {"TOKENRY_ISSUER_LISTEN": "nonsense"}, USAGE),
    # unreachable: every command against a stack that is not there
    (("token", "issue"), {}, UNREACHABLE),
    (("token", "introspect", "t"), {}, UNREACHABLE),
    (("token", "revoke", "--jti", "j"), {}, UNREACHABLE),
    (("token", "verify", "t", "--audience", "a", "--wait", "1"), {}, UNREACHABLE),
    (("keys", "list"), {}, UNREACHABLE),
    (("keys", "rotate"), {}, UNREACHABLE),
    (("keys", "revoke", "kid-1"), {}, UNREACHABLE),
    # An RFC 7638 thumbprint kid may start with '-': it is the kid, not an unknown option.
    (("keys", "revoke", "-3xQ_thumbprint"), {}, UNREACHABLE),
    (("jwks",), {}, UNREACHABLE),
    (("client", "list"), {}, UNREACHABLE),
    (("client", "show", "x"), {}, UNREACHABLE),
    (("client", "create", "x"), {}, UNREACHABLE),
    (("client", "delete", "x"), {}, UNREACHABLE),
    (("events", "watch"), {}, UNREACHABLE),
    (("events", "watch", "--nats-url", "nats://127.0.0.1:1"), {}, UNREACHABLE),
    (("status",), {}, UNREACHABLE),
    (("dev", "env"), {}, UNREACHABLE),
]


@pytest.mark.parametrize(
    ("args", "extra", "code"), BAD_INPUTS, ids=[" ".join(a) for a, _, _ in BAD_INPUTS]
)
def test_bad_input_is_one_line_with_its_exit_code(
    dead_env: dict[str, str], args: tuple[str, ...], extra: dict[str, str], code: int
) -> None:
    assert_one_line(tokenry({**dead_env, **extra}, *args), code)


def test_migrate_against_a_postgres_that_is_not_there(dead_env: dict[str, str]) -> None:
    env = {**dead_env, "TOKENRY_DATABASE_URL": f"postgresql://u@{_dead()}/x"}
    line = assert_one_line(tokenry(env, "migrate", "--timeout", "3"), UNREACHABLE)
    assert "u@" not in line  # the URL is never printed


def test_the_unreachable_error_says_where_to_look(dead_env: dict[str, str]) -> None:
    line = assert_one_line(tokenry(dead_env, "keys", "list"), UNREACHABLE)
    assert dead_env["TOKENRY_KEYROTATOR_ADDR"] in line
    assert "TOKENRY_HOME" in line and "_ADDR" in line


# --- a dev stack that was stopped, and one that runs elsewhere -----------------------------------


@pytest.fixture
def stopped_home(tmp_path: Path, dead_env: dict[str, str]) -> dict[str, str]:
    """What a stopped `tokenry dev` leaves: credentials.json, no dev.json."""
    (tmp_path / "credentials.json").write_text(
        json.dumps({"admin": {"client_id": "tokenry-admin", "client_secret": "s"}})
    )
    # The default addresses, as a new user has them: the CLI stops before calling anything.
    env = {k: v for k, v in dead_env.items() if not k.endswith("_ADDR")}
    env["TOKENRY_HOME"] = str(tmp_path)
    for name in ("TOKENRY_CLIENT_ID", "TOKENRY_CLIENT_SECRET"):
        env.pop(name)
    return env


@pytest.mark.parametrize(
    "args",
    [
        ("token", "revoke", "--jti", "j"),
        ("token", "introspect", "t"),
        ("keys", "rotate"),
        ("client", "list"),
    ],
)
def test_admin_commands_against_a_stopped_dev_stack(
    stopped_home: dict[str, str], args: tuple[str, ...]
) -> None:
    line = assert_one_line(tokenry(stopped_home, *args), UNREACHABLE)
    assert "not running" in line


def _live_dev_json(home: Path, addrs: dict[str, str], nats_url: str) -> None:
    """A dev.json as `tokenry dev` writes it, owned by a live process (this test's)."""
    (home / "dev.json").write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "database_url": "postgresql://postgres@/postgres?host=/tmp/none",
                "nats_url": nats_url,
                "issuer_url": "http://127.0.0.1:8080",
                "nats_prefix": "tokenry",
                "nats_stream": "TOKENRY_EVENTS",
                "addrs": addrs,
            }
        )
    )


def test_dev_admin_credentials_go_only_to_the_dev_stack(stopped_home: dict[str, str]) -> None:
    home = Path(stopped_home["TOKENRY_HOME"])
    dev_addrs = {s: _dead() for s in ("issuer", "introspector", "revocation", "keyrotator")}
    _live_dev_json(home, dev_addrs, f"nats://{_dead()}")
    # The dev stack's own address (from dev.json): the credentials would be sent; it is down.
    env = dict(stopped_home)
    line = assert_one_line(tokenry(env, "client", "list"), UNREACHABLE)
    assert dev_addrs["issuer"] in line
    # Another address: the dev admin is not sent there.
    other = {**env, "TOKENRY_ISSUER_ADDR": _dead()}
    line = assert_one_line(tokenry(other, "client", "list"), USAGE)
    assert "not the dev stack" in line and other["TOKENRY_ISSUER_ADDR"] in line
    line = assert_one_line(tokenry(env, "--issuer-addr", _dead(), "client", "list"), USAGE)
    assert "--issuer-addr" in line


def test_dev_env_prints_export_lines(stopped_home: dict[str, str]) -> None:
    home = Path(stopped_home["TOKENRY_HOME"])
    addrs = {"issuer": "127.0.0.1:1", "introspector": "127.0.0.1:2"} | {
        "revocation": "127.0.0.1:3",
        "keyrotator": "127.0.0.1:4",
    }
    _live_dev_json(home, addrs, "nats://127.0.0.1:5")
    result = tokenry(stopped_home, "dev", "env")
    assert result.returncode == 0, result.stderr
    exports = dict(
        line.removeprefix("export ").split("=", 1) for line in result.stdout.splitlines()
    )
    assert exports["TOKENRY_ISSUER_ADDR"] == "127.0.0.1:1"
    assert exports["TOKENRY_KEYROTATOR_ADDR"] == "127.0.0.1:4"
    assert exports["TOKENRY_NATS_URL"] == "nats://127.0.0.1:5"
    assert exports["TOKENRY_HOME"] == str(home)


def test_status_shows_where_each_address_comes_from(stopped_home: dict[str, str]) -> None:
    home = Path(stopped_home["TOKENRY_HOME"])
    addrs = {s: _dead() for s in ("issuer", "introspector", "revocation", "keyrotator")}
    _live_dev_json(home, addrs, f"nats://{_dead()}")
    env = {**stopped_home, "TOKENRY_KEYROTATOR_ADDR": _dead()}
    result = tokenry(env, "--issuer-addr", _dead(), "status", "--json", "--timeout", "0.5")
    assert result.returncode == UNREACHABLE
    rows = {row["name"]: row for row in json.loads(result.stdout)["services"]}
    assert rows["issuer"]["from"] == "--issuer-addr"
    assert rows["keyrotator"]["from"] == "TOKENRY_KEYROTATOR_ADDR"
    assert rows["revocation"]["from"] == "dev.json"
    assert rows["revocation"]["address"] == addrs["revocation"]
    assert all(row["status"] == "UNREACHABLE" for row in rows.values())


def test_a_second_dev_on_the_same_home_leaves_the_running_one_alone(
    stopped_home: dict[str, str],
) -> None:
    home = Path(stopped_home["TOKENRY_HOME"])
    _live_dev_json(home, {"issuer": "127.0.0.1:1"}, "nats://127.0.0.1:5")
    before = (home / "dev.json").read_text()
    line = assert_one_line(tokenry(stopped_home, "dev"), USAGE)
    assert "already running" in line
    assert (home / "dev.json").read_text() == before


def test_a_stale_dev_json_is_ignored(stopped_home: dict[str, str]) -> None:
    home = Path(stopped_home["TOKENRY_HOME"])
    _live_dev_json(home, {"issuer": "127.0.0.1:1"}, "nats://127.0.0.1:5")
    data = json.loads((home / "dev.json").read_text())
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    data["pid"] = int(dead.stdout)
    (home / "dev.json").write_text(json.dumps(data))
    assert_one_line(tokenry(stopped_home, "dev", "env"), UNREACHABLE)


def test_version() -> None:
    result = tokenry(dict(os.environ), "--version")
    assert result.returncode == 0 and result.stdout.startswith("tokenry ")

"""A built wheel works on its own: installed into a fresh venv, `tokenry migrate` applies the
shipped migrations and `python -m tokenry.services.issuer` starts (issue 16, "Packaging").

Offline: the wheel is built from a copy of the source with the project's own setuptools
(``--no-build-isolation``) and installed with ``--no-deps``; the fresh venv finds the
third-party dependencies through a ``.pth`` line naming this interpreter's site-packages (whose
own ``.pth`` files, such as the editable install of tokenry, are not processed), so the only
``tokenry`` it can import is the wheel's.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from databases import new_database

from tokenry.devstack import EmbeddedPostgres

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _run(*cmd: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=120, check=False, **kwargs
    )  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("libs", "services"):
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    out = tmp_path_factory.mktemp("dist")
    built = _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", out, src,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert "absent from the `packages`" not in built.stderr
    (found,) = out.glob("tokenry-*.whl")
    return found


def test_the_wheel_ships_the_migrations(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).name for n in names if n.startswith("tokenry/store/migrations/")}
    in_tree = {p.name for p in (ROOT / "libs/tokenry/store/migrations").glob("*.sql")}
    assert in_tree and in_tree <= shipped
    assert "tokenry/services/issuer/__main__.py" in names
    assert "tokenry/py.typed" in names


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("venv")
    made = _run(sys.executable, "-m", "venv", "--without-pip", root)
    assert made.returncode == 0, made.stderr
    site = Path(
        _run(
            root / "bin/python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"
        ).stdout.strip()
    )
    # The dependencies, from this interpreter: one path, without its .pth files.
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    installed = _run(
        sys.executable, "-m", "pip", "--python", root / "bin/python", "install", "--no-deps",
        "--no-index", "-q", wheel,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    return root


def test_the_venv_imports_the_wheel_not_the_checkout(venv: Path) -> None:
    where = _run(venv / "bin/python", "-c", "import tokenry; print(tokenry.__file__)")
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(str(venv)), where.stdout


async def test_migrate_with_the_installed_wheel(venv: Path, pg_server: EmbeddedPostgres) -> None:
    dsn = await new_database(pg_server, template=None)
    env = {"PATH": "/usr/bin:/bin", "TOKENRY_DATABASE_URL": dsn, "HOME": str(venv)}
    first = _run(venv / "bin/tokenry", "migrate", env=env, cwd=venv)
    assert first.returncode == 0, first.stderr
    count = len(list((ROOT / "libs/tokenry/store/migrations").glob("*.sql")))
    assert first.stdout.startswith(f"applied {count} migration(s)"), first.stdout
    again = _run(venv / "bin/tokenry", "migrate", env=env, cwd=venv)
    assert again.returncode == 0 and again.stdout.startswith("applied 0"), again.stdout


def test_a_service_starts_from_the_wheel(venv: Path) -> None:
    helped = _run(venv / "bin/python", "-m", "tokenry.services.issuer", "--help", cwd=venv)
    assert helped.returncode == 0, helped.stderr
    assert "--workers" in helped.stdout
    # With no configuration: the one-line errors and exit 2, from the installed code.
    bare = _run(venv / "bin/python", "-m", "tokenry.services.issuer", env={}, cwd=venv)
    assert bare.returncode == 2 and "Traceback" not in bare.stderr, bare.stderr
    assert "TOKENRY_DATABASE_URL is required" in bare.stderr

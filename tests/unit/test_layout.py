"""The layout of docs/design.md §1 holds: packages listed, dependencies point one way."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBS = ROOT / "libs" / "tokenry"
SERVICES = ROOT / "services"

# docs/design.md §1: tokenry.core imports no grpc, asyncpg, nats or protobuf; the verifier (what
# backends embed) needs no asyncpg; a service never imports another service.
FORBIDDEN = {
    "tokenry.core": (
        "grpc",
        "asyncpg",
        "nats",
        "google.protobuf",
        "tokenry.v1",
        "tokenry.store",
        "tokenry.bus",
        "tokenry.verifier",
        "tokenry.servicekit",
        "tokenry.services",
        "tokenry.jose",
        "tokenry.client",
    ),
    # tokenry.jose is what services may import without the verifier's gRPC and NATS.
    "tokenry.jose": (
        "grpc",
        "asyncpg",
        "nats",
        "google.protobuf",
        "tokenry.v1",
        "tokenry.store",
        "tokenry.bus",
        "tokenry.verifier",
        "tokenry.client",
        "tokenry.servicekit",
        "tokenry.services",
    ),
    "tokenry.client": ("asyncpg", "nats", "tokenry.store", "tokenry.verifier", "tokenry.services"),
    # The use cases over storage ports: the gRPC servicers and the HTTP gateway adapt them.
    "tokenry.flows": (
        "grpc",
        "asyncpg",
        "nats",
        "google.protobuf",
        "tokenry.v1",
        "tokenry.bus",
        "tokenry.verifier",
        "tokenry.servicekit",
        "tokenry.services",
    ),
    "tokenry.verifier": ("asyncpg", "tokenry.store", "tokenry.services", "tokenry.client"),
    "tokenry.bus": ("tokenry.services",),
    "tokenry.store": ("grpc", "nats", "tokenry.services", "tokenry.verifier"),
    "tokenry.servicekit": ("tokenry.services",),
}


def _module_name(path: Path) -> str:
    if path.is_relative_to(SERVICES):
        parts = ("tokenry", "services", *path.relative_to(SERVICES).with_suffix("").parts)
    else:
        parts = ("tokenry", *path.relative_to(LIBS).with_suffix("").parts)
    return ".".join(p for p in parts if p != "__init__")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _sources() -> list[Path]:
    return [
        p
        for p in [*LIBS.rglob("*.py"), *SERVICES.rglob("*.py")]
        if "v1" not in p.relative_to(ROOT).parts
    ]


def test_every_package_is_listed_in_pyproject() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        _module_name(init) for init in [*LIBS.rglob("__init__.py"), *SERVICES.rglob("__init__.py")]
    }
    assert found == listed


def test_dependencies_point_one_way() -> None:
    violations = []
    for path in _sources():
        module = _module_name(path)
        for layer, banned in FORBIDDEN.items():
            if module == layer or module.startswith(layer + "."):
                for imported in _imports(path):
                    if any(imported == b or imported.startswith(b + ".") for b in banned):
                        violations.append(f"{module} imports {imported}")
    assert not violations, "\n".join(violations)


def test_a_service_never_imports_another_service() -> None:
    violations = []
    for path in SERVICES.rglob("*.py"):
        own = path.relative_to(SERVICES).parts[0]
        for imported in _imports(path):
            if imported.startswith("tokenry.services.") and imported.split(".")[2] != own:
                violations.append(f"{_module_name(path)} imports {imported}")
    assert not violations, "\n".join(violations)


def test_py_typed_marker_ships() -> None:
    assert (LIBS / "py.typed").exists()

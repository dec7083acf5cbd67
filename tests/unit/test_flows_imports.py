"""tokenry.flows and its storage ports load no transport or driver (docs/design.md §1): the HTTP
gateway and the gRPC servicer are both thin adapters over them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

LIBS = Path(__file__).resolve().parents[2] / "libs" / "tokenry"
BANNED = ("grpc", "google.protobuf", "asyncpg", "nats", "tokenry.v1", "tokenry.services")
PURE = ("tokenry.flows", "tokenry.store.ports", "tokenry.store.records", "tokenry.store.memory")

_PROBE = f"""
import sys
for name in {PURE!r}:
    __import__(name)
banned = {BANNED!r}
print("\\n".join(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in banned)))
"""


def test_importing_the_flows_loads_no_grpc_protobuf_asyncpg_or_nats() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return names


def test_the_flows_import_no_store_adapter_module() -> None:
    """Flows reach storage through tokenry.store.ports (and pure store modules such as its
    records), never through a module that runs SQL."""
    adapters = {
        f"tokenry.store.{p.stem}"
        for p in (LIBS / "store").glob("*.py")
        if any(n == "asyncpg" or n.startswith("asyncpg.") for n in _imports(p))
    }
    assert "tokenry.store.opaque_tokens" in adapters
    found = [
        f"{path.name}: {name}"
        for path in (LIBS / "flows").rglob("*.py")
        for name in _imports(path)
        if name in adapters or name == "tokenry.store" or name.startswith(BANNED)
    ]
    assert found == []

"""docs/security.md's threat model names, for each threat, the test that proves its mitigation
(issue 13 item 9): every named test must exist — its file, and a test function of that name in
it (read with ``ast``, so nothing is imported or run)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECURITY = ROOT / "docs" / "security.md"
NODE_ID = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
SERVICES = ("Issuer", "Introspector", "Revocation service", "Key rotator", "Gateway (HTTP)")


def _threat_model() -> str:
    text = SECURITY.read_text()
    start = text.index("## Threat model")
    return text[start:]


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith(
            "test_"
        ):
            names.add(node.name)
    return names


def test_every_named_test_exists() -> None:
    named = NODE_ID.findall(_threat_model())
    assert len(named) >= 30
    missing = []
    for file, name in named:
        path = ROOT / file
        if not path.is_file() or name not in _tests_in(path):
            missing.append(f"{file}::{name}")
    assert not missing, "threat model names tests that do not exist: " + ", ".join(missing)


def test_every_service_and_the_event_bus_has_a_stride_table() -> None:
    model = _threat_model()
    for section in (*SERVICES, "Event bus"):
        assert re.search(rf"^### {re.escape(section)}", model, re.MULTILINE), section
    for letter in ("Spoofing", "Tampering", "Information disclosure", "Elevation of privilege"):
        assert model.count(f"| {letter} |") >= 6, letter


def test_the_checker_catches_a_missing_test() -> None:
    """Negative control: a node id naming no test is reported."""
    file, name = "tests/unit/test_threat_model.py", "test_that_does_not_exist"
    assert name not in _tests_in(ROOT / file)
    assert NODE_ID.findall(f"| x | `{file}::{name}` |") == [(file, name)]

"""Names mean one thing (issue 12 item 9).

Two public classes with one name in two modules drifted apart before (two ``OpaqueTokens``, two
``RevocationChecks``, two ``PublishedKeys``, two ``SnapshotError``): each public class name is
defined once in libs/ and services/. And every exception Tokenry defines derives from
``TokenryError``, so a caller can catch them all at once.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections import defaultdict
from pathlib import Path

import pytest

from tokenry.core.errors import TokenryError

ROOT = Path(__file__).resolve().parents[2]
LIBS = ROOT / "libs" / "tokenry"
SERVICES = ROOT / "services"


def _sources() -> list[Path]:
    found = [*LIBS.rglob("*.py"), *SERVICES.rglob("*.py")]
    return sorted(p for p in found if "v1" not in p.relative_to(ROOT).parts)


def _module_name(path: Path) -> str:
    if path.is_relative_to(SERVICES):
        parts = ("tokenry", "services", *path.relative_to(SERVICES).with_suffix("").parts)
    else:
        parts = ("tokenry", *path.relative_to(LIBS).with_suffix("").parts)
    return ".".join(p for p in parts if p != "__init__")


def test_each_public_class_name_is_defined_once() -> None:
    defined: dict[str, list[str]] = defaultdict(list)
    for path in _sources():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                defined[node.name].append(str(path.relative_to(ROOT)))
    twice = {name: where for name, where in defined.items() if len(where) > 1}
    assert not twice, "\n".join(f"{n}: {', '.join(w)}" for n, w in sorted(twice.items()))


#: Every package of the library (services are applications: their exceptions are the
#: libraries').
PACKAGES = (
    "core",
    "jose",
    "bus",
    "store",
    "flows",
    "verifier",
    "client",
    "servicekit",
    "devstack",
    "cli",
)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_exception_derives_from_tokenry_error(package: str) -> None:
    outside = []
    for path in sorted((LIBS / package).rglob("*.py")):
        module = importlib.import_module(_module_name(path))
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == module.__name__
                and not name.startswith("_")
                and not issubclass(obj, TokenryError)
            ):
                outside.append(f"{module.__name__}.{name}")
    assert not outside, "not under TokenryError: " + ", ".join(outside)


#: Names renamed by issue 12 item 9: (module, old name, the object it now resolves to).
RENAMED = [
    ("tokenry.bus.codec", "SnapshotError", "tokenry.bus.errors.MalformedSnapshot"),
    ("tokenry.store.jwks_source", "PublishedKeys", "tokenry.store.jwks_source.PublishedKeyReader"),
    (
        "tokenry.store.presented_tokens",
        "PublishedKeys",
        "tokenry.store.jwks_source.PublishedKeyReader",
    ),
    ("tokenry.store.outbox_feed", "FeedSettings", "tokenry.store.outbox_feed.OutboxFeedSettings"),
    (
        "tokenry.store.introspection",
        "StoreOpaqueTokens",
        "tokenry.store.introspection.StoreOpaqueRecords",
    ),
    ("tokenry.flows.introspection", "OpaqueTokens", "tokenry.flows.introspection.OpaqueRecords"),
    ("tokenry.flows.introspection", "VerificationKeys", "tokenry.flows.introspection.KeyCache"),
]


@pytest.mark.parametrize(("module", "old", "new"), RENAMED)
def test_renamed_names_still_resolve_with_a_warning(module: str, old: str, new: str) -> None:
    new_module, _, new_name = new.rpartition(".")
    target = getattr(importlib.import_module(new_module), new_name)
    with pytest.warns(DeprecationWarning, match=old):
        assert getattr(importlib.import_module(module), old) is target

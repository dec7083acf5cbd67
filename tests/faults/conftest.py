"""The fault suite (issue 11): markers, tiers and the import path.

Quick tier: every test not marked ``chaos``; it runs in ``make test`` with short staleness
budgets and small volumes. ``make chaos`` sets ``TOKENRY_CHAOS=1`` and runs only the
``chaos``-marked long variants (default budgets, repeats). See docs/faults.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# The helpers of the integration tests (pipeline_support) and of this folder.
for path in (HERE, HERE.parent / "integration"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

CHAOS = os.environ.get("TOKENRY_CHAOS") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: long fault-suite variants; run by `make chaos` (TOKENRY_CHAOS=1)"
    )
    config.addinivalue_line("markers", "faults: the fault suite (tests/faults)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The chaos tier is deselected, not skipped: `make test` reports no skips, so a skip that
    # does show up is a real one (nothing is skipped in CI).
    keep: list[pytest.Item] = []
    chaos: list[pytest.Item] = []
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.faults)
            if "chaos" in item.keywords and not CHAOS:
                chaos.append(item)
                continue
        keep.append(item)
    if chaos:
        config.hook.pytest_deselected(items=chaos)
        items[:] = keep

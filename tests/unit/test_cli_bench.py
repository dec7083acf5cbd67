"""`tokenry bench list` names the benchmarks of docs/spec.md §8 and nothing else: every
``scripts/bench_<name>.py`` is a runnable benchmark (``make bench`` runs each one through
``tokenry bench all``); what the scripts share lives in a module outside that pattern."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenry.cli.main import app

ROOT = Path(__file__).resolve().parents[2]


def test_every_listed_benchmark_is_a_runnable_script(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(app, ["bench", "list"])
    assert result.exit_code == 0, result.output
    listed = result.output.split()
    assert {"issuance", "introspection", "verifier", "before_after"} <= set(listed)
    for name in listed:
        script = ROOT / "scripts" / f"bench_{name}.py"
        assert 'if __name__ == "__main__":' in script.read_text(), f"{script.name} runs nothing"


def test_an_unknown_benchmark_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(app, ["bench", "no-such-bench"])
    assert result.exit_code == 2
    assert "unknown benchmark" in result.output


def test_outside_a_checkout_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["bench", "list"])
    assert result.exit_code == 2
    assert "source checkout" in result.output

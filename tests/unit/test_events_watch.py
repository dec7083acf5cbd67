"""`tokenry events watch`'s readable line: the lag of each event, clock skew, 80 columns."""

from __future__ import annotations

import pytest

from tokenry.cli.events import fit, human, lag_text


@pytest.mark.parametrize(
    ("lag_ms", "text"),
    [
        (3.24, "lag 3.2 ms"),
        (12.6, "lag 13 ms"),
        (1500.0, "lag 1.5 s"),
        (180_000.0, "lag 3 min"),
        (7_200_000.0, "lag 2 h"),
        (-40.0, "skew -40 ms"),
        (-120_000.0, "skew -2 min"),
    ],
)
def test_lag_and_skew_are_human(lag_ms: float, text: str) -> None:
    assert lag_text(lag_ms) == text


def test_a_revocation_line_carries_its_lag_and_fits_80_columns() -> None:
    data = {
        "seq": 42,
        "occurred_at": "2026-12-03T19:00:00.123+00:00",
        "lag_ms": 4.0,
        "type": "revocation",
        "kind": "jti",
        "value": "x" * 43,
        "expires_at": "2026-12-03T20:00:00.000+00:00",
        "reason": "compromised laptop, ticket 4711, reported by the owner",
        "actor": "admin",
    }
    line = human(data)
    assert line.startswith("19:00:00.123Z #42") and "lag 4.0 ms" in line
    assert "until 2026-12-03 20:00Z" in line
    wrapped = fit(line, 80)
    assert all(len(part) <= 80 for part in wrapped.splitlines())
    assert " ".join(p.strip() for p in wrapped.splitlines()) == line
    assert fit(line, None) == line  # a pipe without COLUMNS: one line per event

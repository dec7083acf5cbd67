"""No module outside generated code grows past ~450 lines without saying why (issue 12).

A long module is usually two concerns in one file ("god modules"). One that is long
for a reason keeps the reason in its docstring, on a line starting ``Size:``, where a reviewer
reads it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 450


def _sources() -> list[Path]:
    found = [*(ROOT / "libs" / "tokenry").rglob("*.py"), *(ROOT / "services").rglob("*.py")]
    return sorted(p for p in found if "v1" not in p.relative_to(ROOT).parts)


def _gives_a_reason(path: Path) -> bool:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return any(line.strip().startswith("Size:") for line in doc.splitlines())


def test_long_modules_say_why() -> None:
    unexplained = [
        f"{path.relative_to(ROOT)}: {lines} lines"
        for path in _sources()
        if (lines := len(path.read_text().splitlines())) > LIMIT and not _gives_a_reason(path)
    ]
    assert not unexplained, (
        f"over {LIMIT} lines with no 'Size:' line in the module docstring (split the module,"
        " or say why it is one):\n" + "\n".join(unexplained)
    )


def test_the_check_sees_generated_code_as_exempt() -> None:
    sources = _sources()
    assert sources and not any("v1" in p.relative_to(ROOT).parts for p in sources)

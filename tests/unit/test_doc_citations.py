"""The repository is self-contained (issue 16): every `docs/<file>.md §N[.M]` citation in code,
tests, scripts, deploy files and docs names a heading of that file that starts with that number,
and nothing cites a document outside the repository (the original SPEC, ARCHITECTURE or STYLE
notes, or the shared folder beside the checkout)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("libs", "services", "tests", "scripts", "examples", "deploy", "docs", "protos")
SCANNED_FILES = ("README.md", "Makefile", "pyproject.toml")
TEXT = {".py", ".pyi", ".md", ".sql", ".proto", ".yaml", ".yml", ".conf", ".toml", ".sh", ".cfg"}
SKIPPED_DIRS = {"__pycache__", ".venv", "node_modules", ".tokenry", "uvloop"}
THIS = Path(__file__).resolve()
GENERATED = ROOT / "libs" / "tokenry" / "v1"

_NUM = r"\d+(?:\.\d+)*"
# `docs/spec.md §4.4`, also wrapped over a comment line (`docs/spec.md\n    # §4.4`), and the
# sections chained after it: `§3–4`, `§2-3`, `§4, §6`.
CITATION = re.compile(
    rf"docs/(?P<file>[\w./-]+?\.md)(?:\s|#|//|--|\*)*§\s?(?P<first>{_NUM})"
    rf"(?P<more>(?:\s?(?:,|–|-|and)\s?§?\s?{_NUM})*)"
)
MORE = re.compile(_NUM)
# A citation of a document that is not in the repository.
OUTSIDE = re.compile(r"\b(?:SPEC|ARCHITECTURE|STYLE)(?:\.md)?\b|\.\./shared\b|/work/shared\b")
HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*$", re.MULTILINE)


def _files() -> Iterator[Path]:
    for name in SCANNED_FILES:
        if (ROOT / name).is_file():
            yield ROOT / name
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            if SKIPPED_DIRS.intersection(path.relative_to(ROOT).parts):
                continue
            if path.is_file() and path.suffix in TEXT and path.resolve() != THIS:
                if path.is_relative_to(GENERATED):
                    continue  # generated from protos/, which is scanned
                yield path


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _numbers(doc: Path) -> set[str]:
    """The section numbers of a Markdown file's headings ("## 4. Events" → 4; "### 4.1 …")."""
    numbers = set()
    for match in HEADING.finditer(_read(doc)):
        first = match.group("title").split()[0].rstrip(".")
        if re.fullmatch(_NUM, first):
            numbers.add(first)
    return numbers


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def citations() -> list[tuple[str, str, str]]:
    """(where, cited file, section) for every citation of a docs/ file."""
    found = []
    for path in _files():
        text = _read(path)
        for match in CITATION.finditer(text):
            where = f"{path.relative_to(ROOT)}:{_line(text, match.start())}"
            sections = [match.group("first"), *MORE.findall(match.group("more"))]
            found.extend((where, match.group("file"), section) for section in sections)
    return found


def test_citations_are_found() -> None:
    # Guards the scanner itself: the code cites the rules it implements.
    cited = {file for _, file, _ in citations()}
    assert {"spec.md", "design.md"} <= cited


def test_every_docs_citation_names_a_heading() -> None:
    broken = []
    headings: dict[str, set[str]] = {}
    for where, file, section in citations():
        doc = ROOT / "docs" / file
        if file not in headings:
            headings[file] = _numbers(doc) if doc.is_file() else set()
        if not doc.is_file():
            broken.append(f"{where}: docs/{file} does not exist")
        elif section not in headings[file]:
            broken.append(f"{where}: docs/{file} has no heading numbered {section}")
    assert not broken, "\n".join(broken)


def test_nothing_cites_a_document_outside_the_repository() -> None:
    outside = []
    for path in _files():
        text = _read(path)
        for match in OUTSIDE.finditer(text):
            line = text.splitlines()[_line(text, match.start()) - 1].strip()
            outside.append(f"{path.relative_to(ROOT)}:{_line(text, match.start())}: {line}")
    assert not outside, "cite docs/spec.md or docs/design.md instead:\n" + "\n".join(outside)


def test_the_scanner_reads_wrapped_and_chained_citations() -> None:
    text = "see docs/design.md §4, §6 and (docs/spec.md\n    # §4.4) and docs/spec.md §2-3."
    got = [
        (m.group("file"), m.group("first"), MORE.findall(m.group("more")))
        for m in CITATION.finditer(text)
    ]
    assert got == [("design.md", "4", ["6"]), ("spec.md", "4.4", []), ("spec.md", "2", ["3"])]
    assert OUTSIDE.search("(SPEC §4.4)") and OUTSIDE.search("../" + "shared/vectors")
    assert not OUTSIDE.search("REVOCATION_KIND_UNSPECIFIED, INTROSPECT_SCOPE")

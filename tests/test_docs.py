"""The design lives in the repository: every docs/ page and #anchor that the code or the docs cite exists."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "src").rglob("*.py"))
PAGES = sorted((ROOT / "docs").glob("*.md"))
CITATION = re.compile(r"\b((?:docs|benchmarks)/[\w/-]+\.md)(?:#([\w-]+))?")
RULE = re.compile(r"\brules? C(?:10|[1-9])\b|\bC(?:10|[1-9])-C(?:10|[1-9])\b")


def slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", page.read_text(), flags=re.MULTILINE)}


def citations(paths: list[Path]) -> list[tuple[str, str, str | None]]:
    return [(str(p.relative_to(ROOT)), m.group(1), m.group(2)) for p in paths
            for m in CITATION.finditer(p.read_text())]


def test_slug_follows_github():
    assert slug("Shared rules C1-C10") == "shared-rules-c1-c10"
    assert slug("audits.json") == "auditsjson" and slug("NegGrad+") == "neggrad"
    assert slug("Summary scores E, U, H") == "summary-scores-e-u-h"


@pytest.mark.parametrize("where", ["src", "docs and README"])
def test_every_cited_page_and_anchor_exists(where):
    found = citations(SOURCES if where == "src" else [*PAGES, ROOT / "README.md"])
    assert len(found) > (30 if where == "src" else 10)  # the code does point at the docs
    missing = [(f, page, a) for f, page, a in found
               if not (ROOT / page).is_file() or (a is not None and a not in anchors(ROOT / page))]
    assert not missing, f"citations that resolve nowhere (file, page, anchor): {missing}"


def test_code_cites_no_document_outside_the_repository():
    outside = [(str(p.relative_to(ROOT)), n + 1, line.strip()) for p in SOURCES
               for n, line in enumerate(p.read_text().splitlines())
               if re.search(r"DESIGN\.md|BASELINES\.md|STYLE\.md|§|\.\./shared", line)]
    assert not outside, outside


def test_rules_cited_in_code_are_defined_in_docs_methods():
    methods = (ROOT / "docs" / "methods.md").read_text()
    defined = set(re.findall(r"^- \*\*(C\d+),", methods, flags=re.MULTILINE))
    assert defined == {f"C{i}" for i in range(1, 11)}
    citing = [p for p in SOURCES if RULE.search(p.read_text())]
    assert citing  # the baselines cite the rules
    unresolved = [str(p.relative_to(ROOT)) for p in citing if "docs/methods.md" not in p.read_text()]
    assert not unresolved, f"modules citing rules C1-C10 without pointing at docs/methods.md: {unresolved}"

"""
Regenerate the generated blocks of docs/report.md from the code: the verdict's bars, the timing stages, the glossary.

Usage: python scripts/render_report_docs.py [--check]
Each block sits between `<!-- NAME:start -->` and `<!-- NAME:end -->`. With --check nothing is written and
the exit code is 1 when a block differs from what the code says (the test suite runs this).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from faceforget.config import VerdictConfig
from faceforget.report.glossary import glossary_markdown
from faceforget.timings import STAGES

DOC = Path(__file__).resolve().parents[1] / "docs" / "report.md"


def thresholds_markdown() -> str:
    """The `verdict:` config section: every field, its default and what it bounds."""
    lines = ["| field | default | bar |", "|---|---:|---|"]
    for name, field in VerdictConfig.model_fields.items():
        lines.append(f"| `{name}` | {field.default:g} | {field.description.replace('|', chr(92) + '|')} |")
    return "\n".join(lines) + "\n"


def stages_markdown() -> str:
    """The timing stages in run order."""
    lines = ["| stage | what it covers |", "|---|---|"] + [f"| `{s}` | {what} |" for s, what in STAGES.items()]
    return "\n".join(lines) + "\n"


BLOCKS = {"thresholds": thresholds_markdown, "stages": stages_markdown, "glossary": glossary_markdown}


def render(text: str) -> str:
    """`text` with every generated block replaced by its current content."""
    for name, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.DOTALL)
        found = pattern.search(text)
        if found is None:
            raise ValueError(f"{DOC} lacks the <!-- {name}:start --> ... <!-- {name}:end --> block")
        text = text[:found.end(1)] + make() + text[found.start(2):]
    return text


def main(argv: list[str] | None = None) -> int:
    """Write (or with --check, compare) the generated blocks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/report.md is out of date")
    args = parser.parse_args(argv)
    text = DOC.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print(f"{DOC} is out of date: run python scripts/render_report_docs.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The HTML / Markdown / JSON report: same numbers everywhere, escaped text, self-contained, atomic writes."""
from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from faceforget.fileio import write_json_atomic
from faceforget.report import html as report_html
from faceforget.report.html import render_report, write_report
from faceforget.report.inputs import ReportInputs, report_data
from faceforget.report.tables import audit_rows, delta_rows, fmt, metrics_markdown

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
VOID = {"meta", "img", "br", "hr", "link", "input"}
MALICIOUS = "<script>alert('x')</script>"
SCRIPT = Path(__file__).parents[2] / "scripts" / "check_report_render.py"


class StrictParser(HTMLParser):
    """Records tags, cell texts and nesting errors (an end tag that does not close the open element)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: Counter[str] = Counter()
        self.srcs: list[str] = []
        self.cells: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self.srcs += [v or "" for k, v in attrs if k in ("src", "href")]
        if tag in ("td", "th"):
            self.cells.append("")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unexpected </{tag}>")

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.stack and self.stack[-1] in ("td", "th"):
            self.cells[-1] += data


def parse(page: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    return parser


@pytest.fixture(scope="module")
def page(report_run: dict) -> str:
    return render_report(report_run)


def _markdown_cells(text: str) -> list[str]:
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    return [cell.strip() for row in rows for cell in row.strip("|").split("|")]


def test_html_has_every_metric_cell_as_in_markdown(report_run: dict, page: str) -> None:
    cells = parse(page).cells
    markdown = metrics_markdown(report_run["metrics"])
    expected = _markdown_cells(markdown)
    assert len(expected) == 9 * 9 and "1.000 (0.054)" in " ".join(expected)
    assert all(c in cells for c in expected), [c for c in expected if c not in cells]
    text = "".join(parse(page).text)
    assert all(tar in text for tar in re.findall(r"^- (.*)$", markdown, flags=re.MULTILINE))
    for row in delta_rows(*report_run["metrics"].values())[1] + audit_rows(report_run["audits"])[1]:
        assert all(c in cells for c in row)


def test_html_escapes_text(page: str) -> None:
    parser = parse(page)
    assert "script" not in parser.tags and "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert MALICIOUS in parser.text and "report <test>" in parser.text


def test_html_is_self_contained(report_run: dict, page: str) -> None:
    parser = parse(page)
    assert re.search(r"https?://", page) is None and "url(" not in page
    assert parser.tags["img"] == len(report_run["figures"]) == 4 and parser.tags["link"] == 0
    prefix = "data:image/png;base64,"
    assert all(s.startswith(prefix) for s in parser.srcs)
    images = [base64.b64decode(s[len(prefix):]) for s in parser.srcs]
    assert images == list(report_run["figures"].values()) and all(i.startswith(PNG_MAGIC) for i in images)
    # verdict, metrics, 2 x deltas, audits, split, glossary, timings, environment, run, params
    assert parser.tags["table"] == 11
    sections = ("verdict", "summary", "metrics", "audits", "figures", "split", "glossary", "timings", "run")
    assert re.findall(r'<section id="([a-z]+)"', page) == list(sections)


def test_report_without_split_or_figures(report_inputs: ReportInputs) -> None:
    bare = ReportInputs(report_inputs.metrics)
    run = report_data(bare)
    assert run["figures"] == {} and run["split"]["hash"] == report_inputs.metrics["split_hash"]
    parser = parse(render_report(run))
    assert "(no figures)" in parser.text and "no audits were run" in parser.text


def test_manifest_must_be_the_runs_split(report_inputs: ReportInputs) -> None:
    wrong = replace(report_inputs, metrics={**report_inputs.metrics, "split_hash": "f" * 64})
    with pytest.raises(ValueError, match="not the run's"):
        report_data(wrong)


def test_write_report_same_numbers_in_all_files(tmp_path: Path, report_inputs: ReportInputs) -> None:
    write_report(report_inputs, tmp_path)
    names = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert names == ["figures", "figures/loss.png", "figures/projection.png", "figures/similarity.png",
                     "figures/tradeoff.png", "report.html", "report.json", "report.md"]

    def no_nan(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    body = json.loads((tmp_path / "report.json").read_text(), parse_constant=no_nan)
    markdown, page = (tmp_path / "report.md").read_text(), (tmp_path / "report.html").read_text()
    assert body["metrics"]["unlearned"]["forget"] == report_inputs.metrics["unlearned"]["forget"]
    table = [line for line in metrics_markdown(body["metrics"]).splitlines() if line.startswith("| ")]
    assert all(line in markdown.splitlines() for line in table)
    cells = parse(page).cells
    assert all(c in cells for c in _markdown_cells("\n".join(table)))
    for key in "EUH":
        assert fmt(body["summary"][key]) in markdown and fmt(body["summary"][key]) in page
    assert body["figures"]["loss"] == "figures/loss.png" and "](figures/loss.png)" in markdown
    assert (tmp_path / body["figures"]["loss"]).read_bytes().startswith(PNG_MAGIC)
    assert "<script>" not in markdown and "&lt;script&gt;" in markdown


def test_write_report_renders_before_writing(tmp_path: Path, report_inputs: ReportInputs,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "report.html").write_text("old")

    def crash(run: dict) -> str:
        raise RuntimeError("render failed")

    monkeypatch.setattr(report_html, "render_report", crash)
    with pytest.raises(RuntimeError, match="render failed"):
        write_report(ReportInputs(report_inputs.metrics), tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    assert (tmp_path / "report.html").read_text() == "old"


def test_inputs_from_run_folder(tmp_path: Path, report_inputs: ReportInputs) -> None:
    write_json_atomic(tmp_path / "metrics.json", report_inputs.metrics)
    write_json_atomic(tmp_path / "config.json", report_inputs.config)
    write_json_atomic(tmp_path / "history.json", report_inputs.history)
    np.save(tmp_path / "embeddings_original.npy", report_inputs.embeddings_original)
    np.save(tmp_path / "embeddings_unlearned.npy", report_inputs.embeddings_unlearned)
    loaded = ReportInputs.from_run_folder(tmp_path, report_inputs.manifest)
    assert loaded.metrics["summary"] == report_inputs.metrics["summary"]
    assert loaded.config == report_inputs.config and loaded.history == report_inputs.history
    np.testing.assert_array_equal(loaded.embeddings_unlearned, report_inputs.embeddings_unlearned)
    assert loaded.audits is None and loaded.points == []


def test_render_check_script_needs_chromium(tmp_path: Path) -> None:
    (tmp_path / "report.html").write_text("<html></html>")
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "report.html"), "--chromium",
                           str(tmp_path / "no-chromium")], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 2 and "chromium not found" in done.stderr

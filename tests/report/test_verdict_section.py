"""The report's verdict section: first in HTML / Markdown / JSON, rows and wording for passing and failing runs."""
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from faceforget.report.glossary import TERMS, glossary_markdown
from faceforget.report.html import render_report, write_report
from faceforget.report.inputs import report_data
from faceforget.report.markdown import render_markdown

DOCS = Path(__file__).parents[2] / "docs" / "report.md"
RENDER = Path(__file__).parents[2] / "scripts" / "render_report_docs.py"


def verdict_table_rows(page: str) -> list[list[str]]:
    """The cells of the first table of the page, row by row (the verdict table)."""
    section = page[page.index('<section id="verdict">'):page.index("</section>")]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", section)[1:]]


def test_failing_run_verdict_rows_and_wording(verdict_inputs):
    run = report_data(verdict_inputs("fail"))
    page = render_report(run)
    rows = {r[0]: r for r in verdict_table_rows(page)}
    assert list(rows) == ["held-out forget R@1", "held-out forget mAP", "seen forget R@1", "re-enrolment top-1",
                          "linear probe (output embedding)", "verification at the original threshold",
                          "membership inference |AUC - 0.5|", "retain mAP vs original", "retain R@1 drop",
                          "gallery top-1 after the rebuild"]
    assert rows["held-out forget R@1"][1:5] == ["0.557", "0.977", "≤ 0.100", "FAIL"]
    assert rows["held-out forget R@1"][5] == ("55.7 % of new photos of a forgotten person (never shown to the "
                                              "unlearning) still find that person first in a search; chance is 5.0 %.")
    assert rows["linear probe (output embedding)"][1:5] == ["0.714", "1.000", "≤ 2 × chance = 0.342", "FAIL"]
    assert rows["membership inference |AUC - 0.5|"][1:5] == ["0.343 (AUC 0.157)", "0.064 (AUC 0.564)", "≤ 0.100",
                                                             "FAIL"]
    assert rows["verification at the original threshold"][4] == "PASS"
    assert rows["retain mAP vs original"][1] == "0.961 × (0.894 vs 0.930)"
    assert rows["gallery top-1 after the rebuild"][1:5] == ["0.557", "0.986", "≤ 0.100", "FAIL"]
    headline = "FAIL: 9 of 10 measured checks fail (held-out forget R@1, held-out forget mAP, seen forget R@1"
    assert run["verdict"]["status"] == "fail" and run["verdict"]["headline"].startswith(headline)
    assert '<p class="headline fail">' + headline in page and '<td class="fail">FAIL</td>' in page


def test_passing_run_verdict(verdict_inputs):
    run = report_data(verdict_inputs("pass"))
    page = render_report(run)
    results = [r[4] for r in verdict_table_rows(page)]
    assert results == ["PASS"] * 10 and run["verdict"]["headline"] == "PASS: all 10 checks pass."
    assert '<p class="headline pass">PASS: all 10 checks pass.</p>' in page and "FAIL" not in page


def test_missing_audits_and_gallery_are_not_measured(verdict_inputs):
    run = report_data(verdict_inputs("pass", audits=False, gallery=False))
    rows = {r[0]: r for r in verdict_table_rows(render_report(run))}
    for name in ("re-enrolment top-1", "linear probe (output embedding)", "membership inference |AUC - 0.5|",
                 "gallery top-1 after the rebuild"):
        assert rows[name][1] == "not measured" and rows[name][4] == "not measured"
    assert rows["re-enrolment top-1"][5] == "Not measured: run `faceforget audit --run RUN` (audits.json)."
    assert run["verdict"]["status"] == "incomplete" and run["verdict"]["headline"].startswith("NOT COMPLETE")


def test_thresholds_come_from_the_runs_config(verdict_inputs):
    inputs = verdict_inputs("pass")
    inputs.config = {"config": {"verdict": {"forget_r1_max": 0.05}}}
    run = report_data(inputs)
    assert run["verdict"]["thresholds"]["forget_r1_max"] == 0.05
    assert [c["key"] for c in run["verdict"]["checks"] if c["status"] == "fail"] == ["forget_r1"]
    assert run["params"]["verdict.forget_r1_max"] == 0.05  # recorded with the configuration too


def test_verdict_comes_first_and_configuration_last(tmp_path, verdict_inputs):
    write_report(verdict_inputs("fail"), tmp_path)
    page, markdown = (tmp_path / "report.html").read_text(), (tmp_path / "report.md").read_text()
    body = json.loads((tmp_path / "report.json").read_text())
    assert page.index("<table>") > page.index('<section id="verdict">')
    assert page.index('<section id="verdict">') < page.index('<section id="summary">')
    assert page.rindex("<section") == page.index('<section id="run">')
    headings = re.findall(r"^## (.*)$", markdown, flags=re.MULTILINE)
    assert headings[0] == "Verdict" and headings[-1] == "Run and configuration"
    assert "| held-out forget R@1 | 0.557 | 0.977 | ≤ 0.100 | FAIL |" in markdown
    assert r"| membership inference \|AUC - 0.5\| | 0.343 (AUC 0.157) |" in markdown
    assert body["verdict"]["checks"][0]["shown"] == "0.557" and body["verdict"]["status"] == "fail"
    assert body["gallery"]["after"]["forget_top1_same_identity"] == 0.557


def test_glossary_explains_every_metric_audit_and_loss_term(verdict_inputs):
    run = report_data(verdict_inputs("fail", history=({"unif": -3.0, "keep": 0.01, "brand_new": 1.0, "total": 1.0},)))
    terms = {row[0]: row for row in run["glossary"]}
    for name in ("R@k", "mAP", "mAP@R", "CS", "TAR@FAR", "E", "U", "H", "reenrol", "probe", "threshold", "mia",
                 "gallery top-1", "unif", "keep", "total"):
        assert terms[name][2] and terms[name][2] != "(no glossary entry for this name)", name
    assert terms["brand_new"][1:] == ["loss", "(no glossary entry for this name)", "?", "?"]
    assert "hard" not in terms  # only the loss terms the run logged
    assert terms["mia"][3] == "|AUC - 0.5| lower (AUC closer to 0.5)" and terms["mia"][4] == "AUC 0.5"
    page = render_report(run)
    assert "<td>(no glossary entry for this name)</td>" in page and "<td>Cluster compactness: mean over" in page
    markdown = render_markdown(run)
    assert r"| mia | audit | Membership inference" in markdown


def test_docs_hold_the_glossary_as_the_code_has_it():
    text = DOCS.read_text()
    start, end = text.index("<!-- glossary:start -->\n") + len("<!-- glossary:start -->\n"), text.index(
        "<!-- glossary:end -->")
    assert text[start:end] == glossary_markdown()  # regenerate with scripts/render_report_docs.py
    assert len(TERMS) == len(glossary_markdown().splitlines()) - 2
    assert r"| mia | audit | Membership inference: AUC" in text and r"\|AUC - 0.5\| lower" in text
    spec = importlib.util.spec_from_file_location("render_report_docs", RENDER)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.render(text) == text  # the thresholds and stages blocks are current too
    assert "| `retain_map_ratio_min` | 0.97 |" in text and "| `cache_views` | augmented views" in text


@pytest.mark.skipif(shutil.which("chromium") is None or not os.environ.get("FACEFORGET_RENDER_CHECK"),
                    reason="opt-in (~15-50 s): set FACEFORGET_RENDER_CHECK=1 and install Debian's chromium")
def test_first_screen_shows_the_verdict_in_chromium(tmp_path, verdict_inputs):
    write_report(verdict_inputs("fail"), tmp_path)
    script = RENDER.with_name("check_report_render.py")
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "report.html"), "--screenshot",
                           str(tmp_path / "shot.png")], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    first = tmp_path / "shot_first_screen.png"
    assert first.read_bytes()[16:24] == (1280).to_bytes(4, "big") + (800).to_bytes(4, "big")  # PNG IHDR size

"""The Markdown report: the HTML report's tables as Markdown, its figures linked as PNG files."""
from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import replace

from faceforget.report.inputs import FIGURE_CAPTIONS
from faceforget.report.tables import Table, fmt, markdown_table, report_tables


def _md(text: object) -> str:
    """Text safe in a Markdown table cell: no raw HTML, no column breaks."""
    return html.escape(str(text), quote=False).replace("|", r"\|")


def _table(t: Table, empty: str = "(none)") -> str:
    if not t.rows:
        return f"### {t.title}\n\n{empty}\n"
    body = markdown_table([_md(h) for h in t.header], [[_md(c) for c in r] for r in t.rows], t.numeric_from)
    notes = "".join(f"- {_md(n)}\n" for n in t.notes)
    return f"### {t.title}\n\n{body}" + (f"\n{notes}" if notes else "")


def render_markdown(run: Mapping[str, object], figure_dir: str = "figures") -> str:
    """The report dict as Markdown; figures are referenced as `figure_dir/<name>.png`."""
    tables = report_tables(run)
    summary = dict(zip(tables["summary"].header, tables["summary"].rows[0], strict=True))
    split = run["split"]
    parts = [
        f"# {_md(run['title'])}\n",
        "## Verdict\n",
        f"**{_md(run['verdict']['headline'])}**\n",
        _table(replace(tables["verdict"], notes=())),
        "Thresholds are configuration (the run's `verdict:` section; defaults are the project's acceptance "
        "bars). A check whose input is missing is \"not measured\", never a pass.\n",
        "## Summary\n",
        f"- forgetting efficacy E = {summary['E']}\n- utility U = {summary['U']}\n- H = {summary['H']}\n",
        "## Metrics\n", _table(tables["metrics"]), _table(tables["deltas"]), _table(tables["deltas_seen"]),
        "## Audits\n", _table(tables["audits"], "(no audits were run)"),
        "## Figures\n",
        "".join(f"![{_md(FIGURE_CAPTIONS[name])}]({figure_dir}/{name}.png)\n\n" for name in run["figures"]),
        "## Split\n",
        f"- hash: `{_md(split['hash'])}`\n- seed: {fmt(run['run']['split_seed'])}\n"
        f"- forget identities ({len(split['forget_identities'])}): "
        + ", ".join(_md(n) for n in split["forget_identities"]) + "\n",
        _table(tables["split"]),
        "## Glossary\n", _table(tables["glossary"]),
        "## Timings and environment\n", _table(tables["timings"]), _table(tables["environment"]),
        "## Run and configuration\n", _table(tables["run"]), _table(tables["params"]),
    ]
    return "\n".join(parts)

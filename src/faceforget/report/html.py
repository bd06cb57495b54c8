"""
The HTML report: one self-contained file (inline CSS, PNGs as data URIs, no scripts, nothing external).

`write_report` builds the report dict once (`inputs.report_data`) and writes report.html, report.md,
report.json and figures/*.png from it, each atomically.
"""
from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from html import escape
from pathlib import Path
from string import Template

from faceforget import __version__
from faceforget.fileio import atomic_open, write_json_atomic, write_text_atomic
from faceforget.report.inputs import FIGURE_CAPTIONS, ReportInputs, report_data
from faceforget.report.markdown import render_markdown
from faceforget.report.tables import Table, report_tables
from faceforget.runs import RunFolder

CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #1d2430; background: #f4f6f9; margin: 0; }
header { background: #1f3a5f; color: #fff; padding: 20px 32px; }
header h1 { margin: 0 0 4px; font-size: 26px; }
header p { margin: 0; opacity: .85; }
main { max-width: 1180px; margin: 0 auto; padding: 8px 32px 32px; }
section { background: #fff; border: 1px solid #dde3ea; border-radius: 8px; padding: 4px 20px 16px;
          margin-top: 18px; }
h2 { font-size: 20px; border-bottom: 2px solid #e4e9f0; padding-bottom: 6px; }
h3 { font-size: 15px; margin: 18px 0 6px; color: #3a4a5e; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px; word-break: break-all; }
table { border-collapse: collapse; margin: 4px 0 8px; font-size: 13.5px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e6eaef; text-align: left; vertical-align: top; }
th { background: #eef2f7; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfd; }
.cards { display: flex; gap: 14px; flex-wrap: wrap; margin: 10px 0; }
.card { flex: 1 1 150px; border: 1px solid #dde3ea; border-radius: 8px; padding: 10px 14px;
        background: #fafbfd; }
.card .value { font-size: 28px; font-weight: 700; color: #1f3a5f; }
.card .label { font-size: 12.5px; color: #5a6878; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 0 24px; }
.chips span { display: inline-block; background: #fde8e8; color: #8a1f1f; border-radius: 12px;
              padding: 1px 10px; margin: 2px 4px 2px 0; font-size: 13px; }
.note { color: #5a6878; font-size: 13px; }
figure { margin: 16px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e6eaef; border-radius: 4px; }
figcaption { color: #5a6878; font-size: 13px; margin-top: 4px; }
.headline { font-size: 15px; font-weight: 600; padding: 8px 12px; border-radius: 6px; margin: 8px 0; }
#verdict h2 { margin: 10px 0 4px; }
#verdict table { font-size: 13px; width: 100%; }
#verdict th, #verdict td { padding: 3px 8px; }
#verdict td:first-child { white-space: nowrap; }
#verdict td.num { white-space: normal; }
.headline.fail, td.fail { background: #fde8e8; color: #8a1f1f; }
.headline.pass, td.pass { background: #e3f4e8; color: #17692f; }
.headline.incomplete, td.nm { background: #fff4cc; color: #6b5a00; }
td.fail, td.pass, td.nm { font-weight: 700; white-space: nowrap; }
#verdict td.meaning { font-size: 12px; line-height: 1.3; color: #3a4a5e; width: 40%; }
footer { text-align: center; color: #7a8694; font-size: 12px; padding: 16px; }
"""

TEMPLATE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>$css</style>
</head>
<body>
<header><h1>$title</h1><p>$subtitle</p></header>
<main>
<section id="verdict"><h2>Verdict</h2>$verdict</section>
<section id="summary"><h2>Summary</h2>$summary</section>
<section id="metrics"><h2>Retrieval metrics</h2>$metrics
<div class="grid"><div>$deltas</div><div>$deltas_seen</div></div></section>
<section id="audits"><h2>Audits</h2>$audits</section>
<section id="figures"><h2>Figures</h2>$figures</section>
<section id="split"><h2>Split</h2>$split</section>
<section id="glossary"><h2>Glossary</h2>$glossary</section>
<section id="timings"><h2>Timings and environment</h2>
<div class="grid"><div>$timings</div><div>$environment</div></div></section>
<section id="run"><h2>Run and configuration</h2>$run $params</section>
</main>
<footer>faceforget $version</footer>
</body>
</html>
""")

CARDS = (("E", "forgetting efficacy (1 = forget mAP down to chance)"),
         ("U", "utility (retain mAP after / before)"), ("H", "harmonic mean of E and U"))


def _table(t: Table, empty: str = "(none)") -> str:
    if not t.rows:
        return f"<h3>{escape(t.title)}</h3><p class=\"note\">{escape(empty)}</p>"
    cls = [' class="num"' if i >= t.numeric_from else "" for i in range(len(t.header))]
    head = "".join(f"<th{c}>{escape(h)}</th>" for c, h in zip(cls, t.header, strict=True))
    cells = ("".join(f"<td{c}>{escape(v)}</td>" for c, v in zip(cls, row, strict=True)) for row in t.rows)
    body = "".join(f"<tr>{r}</tr>\n" for r in cells)
    notes = "".join(f"<li>{escape(n)}</li>" for n in t.notes)
    return (f"<h3>{escape(t.title)}</h3><table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>"
            + (f"<ul class=\"note\">{notes}</ul>" if notes else ""))


STATUS_CLASS = {"PASS": "pass", "FAIL": "fail", "not measured": "nm"}


def _verdict(run: Mapping[str, object], t: Table) -> str:
    """The headline, coloured by the overall result, then one row per check with its result coloured."""
    status = str(run["verdict"]["status"])
    head = "".join(f"<th>{escape(h)}</th>" for h in t.header)
    body = []
    for name, value, original, bar, result, meaning in t.rows:
        cells = (f'<td>{escape(name)}</td><td class="num">{escape(value)}</td>'
                 f'<td class="num">{escape(original)}</td><td class="num">{escape(bar)}</td>'
                 f'<td class="{STATUS_CLASS[result]}">{escape(result)}</td><td class="meaning">{escape(meaning)}</td>')
        body.append(f"<tr>{cells}</tr>\n")
    return (f'<p class="headline {escape(status)}">{escape(t.notes[0])}</p>'
            f'<table><thead><tr>{head}</tr></thead><tbody>\n{"".join(body)}</tbody></table>'
            '<p class="note">Thresholds are configuration (the run\'s <code>verdict:</code> section; defaults are '
            'the project\'s acceptance bars). A check whose input is missing is "not measured", never a pass.</p>')


def _summary(t: Table) -> str:
    values = dict(zip(t.header, t.rows[0], strict=True))
    cards = "".join(f'<div class="card"><div class="value">{escape(values[k])}</div>'
                    f'<div class="label">{k}: {escape(label)}</div></div>' for k, label in CARDS)
    return f'<div class="cards">{cards}</div>'


def _split(run: Mapping[str, object], t: Table) -> str:
    split, seed = run["split"], run["run"]["split_seed"]
    names = "".join(f"<span>{escape(n)}</span>" for n in split["forget_identities"])
    return (f'<p>hash <code>{escape(str(split["hash"]))}</code>, seed {escape(str(seed))}</p>'
            f'<p>forget identities ({len(split["forget_identities"])}):</p><div class="chips">{names}</div>'
            + _table(t))


def _figures(figures: Mapping[str, bytes]) -> str:
    if not figures:
        return '<p class="note">(no figures)</p>'
    parts = []
    for name, png in figures.items():
        caption, data = escape(FIGURE_CAPTIONS[name]), base64.b64encode(png).decode("ascii")
        parts.append(f'<figure id="fig-{escape(name)}"><img alt="{caption}" '
                     f'src="data:image/png;base64,{data}"><figcaption>{caption}</figcaption></figure>\n')
    return "".join(parts)


def render_report(run: Mapping[str, object]) -> str:
    """The report dict (`inputs.report_data`) as one self-contained HTML page; all text is escaped."""
    t = report_tables(run)
    info = run["run"]
    subtitle = f"method {info['method']} · model {info['model']} · split {str(run['split']['hash'])[:12]}"
    return TEMPLATE.substitute(
        {key: _table(table) for key, table in t.items()},
        title=escape(str(run["title"])), css=CSS, subtitle=escape(subtitle), version=escape(__version__),
        verdict=_verdict(run, t["verdict"]), summary=_summary(t["summary"]), split=_split(run, t["split"]),
        audits=_table(t["audits"], "no audits were run"), figures=_figures(run["figures"]))


def write_report(inputs: ReportInputs, out_dir: str | os.PathLike, seed: int = 0) -> dict:
    """
    Write report.html, report.md, report.json and figures/<name>.png to `out_dir`; return the report dict.

    Everything is rendered before the first write, and each file is replaced atomically.
    """
    out = RunFolder(Path(out_dir))  # the run folder's file names, wherever the report goes
    run = report_data(inputs, seed=seed)
    paths = {name: f"{out.figures.name}/{name}.png" for name in run["figures"]}
    body = {**run, "figures": paths}  # write_json_atomic makes it strict JSON (NaN -> null)
    markdown, page = render_markdown(run), render_report(run)
    for name, png in run["figures"].items():
        with atomic_open(out.root / paths[name], "wb") as f:
            f.write(png)
    write_json_atomic(out.report_json, body)
    write_text_atomic(out.report_md, markdown)
    write_text_atomic(out.report_html, page)
    return run

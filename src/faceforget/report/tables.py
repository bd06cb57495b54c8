"""Tables from metric dicts: rows for people (Markdown, HTML) and flat rows for machines (CSV)."""
from __future__ import annotations

import csv
import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from faceforget.fileio import atomic_open
from faceforget.timings import stage_rows

GROUP_TITLES = {"forget": "forget (held-out)", "retain": "retain (held-out)",
                "forget_seen": "forget (seen)", "retain_seen": "retain (seen)"}
COLUMNS = ("R@1", "R@5", "R@10", "mAP", "mAP@R", "CS")
Row = list[str]


def fmt(x: object) -> str:
    """One number as every report shows it: floats to 3 decimals, integers as is, None as "n/a"."""
    if x is None:
        return "n/a"
    if isinstance(x, numbers.Real) and not isinstance(x, (bool, numbers.Integral)):
        return "nan" if math.isnan(x) else f"{float(x):.3f}"
    return str(x)


def fmt_delta(x: float) -> str:
    """A signed difference with 3 decimals ("+0.120", "-0.050"; never "-0.000")."""
    return "nan" if math.isnan(x) else f"{round(x, 3) + 0.0:+.3f}"


def metrics_rows(models: Mapping[str, dict]) -> tuple[Row, list[Row], list[str]]:
    """Header, one row per (model, group) with chance levels in brackets, and the retain TAR notes."""
    header = ["model", "group", "n_queries", *COLUMNS]
    rows = []
    for name, groups in models.items():
        for group, title in GROUP_TITLES.items():
            g = groups.get(group, {})
            if not g.get("n_queries"):
                continue
            chance = g.get("chance", {})
            cells = [f"{fmt(g[c])} ({fmt(chance[c])})" if c in chance else fmt(g.get(c, float("nan")))
                     for c in COLUMNS]
            rows.append([name, title, str(int(g["n_queries"])), *cells])
    notes = [f"{n}: retain {k} = {fmt(v)}" for n, g in models.items()
             for k, v in g.get("retain", {}).items() if k.startswith("TAR@")]
    return header, rows, notes


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1) -> str:
    """A Markdown table; columns from `numeric_from` on are right-aligned."""
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def metrics_markdown(models: dict[str, dict]) -> str:
    """One row per (model, group): the retrieval metrics with their chance levels in brackets."""
    header, rows, notes = metrics_rows(models)
    text = markdown_table(header, rows, numeric_from=2)
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return text + "\n(chance level in brackets)\n"


def delta_rows(before: Mapping[str, dict], after: Mapping[str, dict],
               groups: Sequence[str] = tuple(GROUP_TITLES)) -> tuple[Row, list[Row]]:
    """Header and one row per (group, metric): before, after, after - before and the chance level."""
    header = ["group", "metric", "before", "after", "delta", "chance"]
    rows = []
    for group in groups:
        title, b, a = GROUP_TITLES[group], before.get(group, {}), after.get(group, {})
        if not (b.get("n_queries") and a.get("n_queries")):
            continue
        keys = [*COLUMNS, *(k for k in a if k.startswith("TAR@"))]
        for key in (k for k in keys if k in a and k in b):
            chance = a.get("chance", {}).get(key)
            rows.append([title, key, fmt(b[key]), fmt(a[key]), fmt_delta(a[key] - b[key]), fmt(chance)])
    return header, rows


def audit_rows(audits: Mapping[str, Mapping[str, float | None]]) -> tuple[Row, list[Row]]:
    """Header and one row per audit (before / after / chance) from `audit_summary`'s dict."""
    rows = [[name, fmt(a["before"]), fmt(a["after"]), fmt(a["chance"])] for name, a in audits.items()]
    return ["audit", "before", "after", "chance"], rows


VERDICT_HEADER = ["check", "value", "original model", "bar", "result", "what it means"]
RESULT_TEXT = {"pass": "PASS", "fail": "FAIL", "not measured": "not measured"}


def verdict_rows(verdict: Mapping[str, object]) -> list[Row]:
    """One row per check of `Verdict.as_dict()`, in VERDICT_HEADER's columns."""
    return [[c["name"], c["shown"], c["original"] or "-", c["bar"], RESULT_TEXT[c["status"]], c["meaning"]]
            for c in verdict["checks"]]


def verdict_markdown(verdict: Mapping[str, object]) -> str:
    """The compact verdict the CLI prints: check, value, bar, result, then the headline."""
    rows = [[r[0], r[1], r[3], r[4]] for r in verdict_rows(verdict)]
    escaped = [[cell.replace("|", r"\|") for cell in row] for row in rows]
    return markdown_table(["check", "value", "bar", "result"], escaped) + f"\nverdict: {verdict['headline']}\n"


def audit_summary(audits: Mapping[str, Mapping[str, object]]) -> dict[str, dict]:
    """`run_audits`' {name: {before, after, chance}}, each AuditResult reduced to its value and details."""
    out = {}
    for name, entry in audits.items():
        before, after = entry["before"], entry["after"]
        chance = entry["chance"]
        out[name] = {"before": float(before.value), "after": float(after.value),
                     "chance": None if chance is None else float(chance),
                     "details_before": {k: float(v) for k, v in before.details.items()},
                     "details_after": {k: float(v) for k, v in after.details.items()}}
    return out


def flatten(tree: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    """Nested dicts to one level with dotted keys ({"a": {"b": 1}} -> {"a.b": 1})."""
    flat: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, name + ".")
        else:
            flat[name] = value
    return flat


def flatten_metrics(groups: Mapping[str, dict]) -> dict[str, float]:
    """Numeric metrics as {"forget.R@1": .., "forget.chance.mAP": .., "retain.TAR@FAR=0.001": ..}."""
    return {k: float(v) for k, v in flatten(groups).items()
            if isinstance(v, numbers.Real) and not isinstance(v, bool)}


def result_row(metrics: Mapping[str, object]) -> dict[str, object]:
    """One flat CSV row from a run's metrics.json: identity columns, E/U/H, original.* and unlearned.*."""
    row = {k: metrics.get(k) for k in ("method", "seed", "split_hash", "signature")}
    row |= dict(metrics.get("summary", {}))
    for model in ("original", "unlearned"):
        row |= {f"{model}.{k}": v for k, v in flatten_metrics(metrics.get(model, {})).items()}
    return row


def write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, object]]) -> None:
    """Write rows atomically; the columns are the union of the rows' keys in first-seen order."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_open(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


@dataclass(frozen=True)
class Table:
    """A titled table of formatted cells, rendered alike by the Markdown and the HTML report."""

    key: str
    title: str
    header: Row
    rows: list[Row]
    numeric_from: int = 1
    notes: tuple[str, ...] = ()


def _pairs(items: Mapping[str, object], show: Callable[[object], str] = fmt) -> list[Row]:
    return [[str(k), show(v)] for k, v in items.items()]


AUDIT_NOTES = ("What each audit does, which direction is better and what chance is: see the glossary.",
               "mia is an AUC: 0.5 = the request's photos cannot be told from new photos of the same people; an "
               "AUC far below 0.5 leaks as much as one far above (the verdict holds |AUC - 0.5| to its bar).")
TIMING_NOTES = ("Each stage of the command that made this run is measured once; total_s is their sum, the wall "
                "clock from its start to writing metrics.json (docs/report.md lists the stages).",)


def report_tables(run: Mapping[str, object]) -> dict[str, Table]:
    """Every table of a report, by key, from the report dict (see `faceforget.report.inputs.report_data`)."""
    summary = run["summary"]
    counts = run["split"]["counts"]
    metrics_header, metrics_body, tar = metrics_rows(run["metrics"])
    models = run["metrics"]["original"], run["metrics"]["unlearned"]
    tables = [
        Table("verdict", "Verdict: can the deletion request be closed?", VERDICT_HEADER,
              verdict_rows(run["verdict"]), len(VERDICT_HEADER), (run["verdict"]["headline"],)),
        Table("summary", "Summary", ["E", "U", "H"], [[fmt(summary[k]) for k in "EUH"]], 0),
        Table("split", "Split: images and identities per role", ["role", "images", "identities"],
              [[role, fmt(c["images"]), fmt(c["identities"])] for role, c in counts.items()]),
        Table("run", "Identifiers and seeds", ["field", "value"], _pairs(run["run"], str), 2),
        Table("params", "Resolved configuration", ["parameter", "value"], _pairs(run["params"], str), 2),
        Table("metrics", "Retrieval metrics (chance level in brackets)", metrics_header, metrics_body, 2,
              tuple(tar)),
        Table("deltas", "Held-out photos: before / after unlearning (delta = after - before)",
              *delta_rows(*models, ("forget", "retain")), 2),
        Table("deltas_seen", "Photos the unlearning saw: before / after unlearning",
              *delta_rows(*models, ("forget_seen", "retain_seen")), 2),
        Table("audits", "Attacks on the forgetting (before / after unlearning, chance level)",
              *audit_rows(run["audits"]), notes=AUDIT_NOTES),
        Table("glossary", "Glossary", ["term", "kind", "what it is", "better", "chance"], run["glossary"], 5),
        Table("timings", "Timings (seconds)", ["stage", "what it covers", "seconds"],
              [[stage, what, fmt(seconds)] for stage, what, seconds in stage_rows(run["timings"])], 2, TIMING_NOTES),
        Table("environment", "Environment", ["key", "value"], _pairs(run["environment"], str), 2),
    ]
    return {t.key: t for t in tables}

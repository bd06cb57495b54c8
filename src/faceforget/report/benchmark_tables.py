"""The benchmark's comparison table: one row per method, mean +- std over seeds."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from faceforget.report.tables import markdown_table
from faceforget.timings import unlearn_seconds


def _at(*path: str) -> Callable[[Mapping], float]:
    """Getter of the number at `path` in a run's metrics.json (NaN where it is missing or null)."""
    def get(run: Mapping) -> float:
        value: object = run
        for key in path:
            value = value.get(key, float("nan")) if isinstance(value, Mapping) else float("nan")
        return float("nan") if value is None else float(value)  # strict JSON stores NaN as null
    return get


# (header, getter from a run's metrics.json)
COLUMNS = (
    ("forget R@1", _at("unlearned", "forget", "R@1")), ("forget mAP", _at("unlearned", "forget", "mAP")),
    ("forget CS", _at("unlearned", "forget", "CS")), ("seen forget R@1", _at("unlearned", "forget_seen", "R@1")),
    ("retain R@1", _at("unlearned", "retain", "R@1")), ("retain mAP", _at("unlearned", "retain", "mAP")),
    ("retain CS", _at("unlearned", "retain", "CS")), ("E", _at("summary", "E")), ("U", _at("summary", "U")),
    ("H", _at("summary", "H")), ("wall s", lambda run: unlearn_seconds(run.get("timings", {}))),
)
# the attacks and the lookalike group (after unlearning), from each cell's audits.json and metrics.json
AUDIT_COLUMNS = (
    ("re-enrol top-1", _at("audits", "reenrol", "after")), ("probe", _at("audits", "probe", "after")),
    ("probe chance", _at("audits", "probe", "chance")),
    ("whitened probe", _at("audits", "probe_whitened", "after")),
    ("penultimate probe", _at("audits", "probe_penultimate", "after")),
    ("threshold accept", _at("audits", "threshold", "after")), ("MIA AUC", _at("audits", "mia", "after")),
    ("lookalike R@1", _at("unlearned", "lookalike", "R@1")), ("lookalike mAP", _at("unlearned", "lookalike", "mAP")),
)


def _cell(values: list[float], digits: int) -> str:
    arr = np.asarray(values, dtype=float)
    if np.isnan(arr).all():
        return "nan"
    mean = np.nanmean(arr)
    return f"{mean:.{digits}f}" if len(arr) == 1 else f"{mean:.{digits}f} ± {np.nanstd(arr):.{digits}f}"


def benchmark_rows(results: Sequence[Mapping]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: per row (method or named variant, first-seen order) the mean +- std over seeds."""
    methods = list(dict.fromkeys(r.get("row", r["method"]) for r in results))
    rows = []
    for method in methods:
        runs = [r for r in results if r.get("row", r["method"]) == method]
        cells = [_cell([get(r) for r in runs], 0 if name == "wall s" else 3) for name, get in COLUMNS]
        rows.append([method, str(len(runs)), *cells])
    chance = [r for r in results if "unlearned" in r][:1]
    if chance:
        c = chance[0]["unlearned"]
        rows.append(["(chance)", "", _cell([c["forget"]["chance"]["R@1"]], 3), _cell([c["forget"]["chance"]["mAP"]], 3),
                     "", _cell([c["forget_seen"]["chance"]["R@1"]], 3), _cell([c["retain"]["chance"]["R@1"]], 3),
                     _cell([c["retain"]["chance"]["mAP"]], 3), "", "", "", "", ""])
    return ["method", "seeds", *(name for name, _ in COLUMNS)], rows


def _mean_rows(results: Sequence[Mapping], columns: Sequence[tuple[str, Callable[[Mapping], float]]]) -> tuple[
        list[str], list[list[str]]]:
    """Header and rows: per row (method or named variant, first-seen order) the mean +- std of each column."""
    rows = []
    for method in dict.fromkeys(r.get("row", r["method"]) for r in results):
        runs = [r for r in results if r.get("row", r["method"]) == method]
        rows.append([method, str(len(runs)), *(_cell([get(r) for r in runs], 3) for _, get in columns)])
    return ["method", "seeds", *(name for name, _ in columns)], rows


def audit_rows(results: Sequence[Mapping]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the attacks table: per row the mean +- std over seeds of each audit (after)."""
    return _mean_rows(results, AUDIT_COLUMNS)


def request_rows(results: Sequence[Mapping]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of held-out forget R@1 / mAP per deletion request (sequential runs; no rows otherwise)."""
    n = max((int(g.removeprefix("forget_request")) for r in results for g in r.get("unlearned", {})
             if g.startswith("forget_request")), default=0)
    columns = [(f"request {k} {m}", _at("unlearned", f"forget_request{k}", m))
               for k in range(1, n + 1) for m in ("R@1", "mAP")]
    return _mean_rows(results if n else [], columns)


def benchmark_markdown(results: Sequence[Mapping]) -> str:
    """The comparison table and the attacks table in Markdown, with the legend of their columns."""
    header, rows = benchmark_rows(results)
    audit_header, audit_body = audit_rows(results)
    legend = ("forget/retain = held-out test photos as queries against all other test photos + distractors; "
              "seen = forget_train photos against the train pool; CS = cluster compactness (lower = more "
              "dispersed); E, U, H as in docs/metrics.md; mean ± std over seeds.")
    audit_legend = ("re-enrol top-1: held-out photos of a forgotten person enrolled, the others search them; probe: "
                    "held-out accuracy of a linear classifier of the forget identities on the output embedding "
                    "(whitened: after whitening it with the retain photos' covariance; penultimate: on the input "
                    "of the final linear layer); threshold accept: share of genuine "
                    "forget pairs above the original's FAR=1e-3 threshold; MIA AUC: seen vs held-out forget photos "
                    "(0.5 = indistinguishable); lookalike: the retain identities nearest to the forgotten ones "
                    "(docs/audits.md, docs/metrics.md).")
    text = (markdown_table(header, rows) + "\n" + legend + "\n\n" + markdown_table(audit_header, audit_body)
            + "\n" + audit_legend + "\n")
    request_header, request_body = request_rows(results)
    if request_body:
        text += ("\n" + markdown_table(request_header, request_body) + "\nrequest k: held-out forget photos of the "
                 "identities of the k-th deletion request, after the last request (docs/protocol.md).\n")
    return text

"""
Dispersion on LFW: the ablation table (issue "Unlearning engine + dispersion") and the bar check.

Usage:
  FACEFORGET_DATA=../shared/datasets/lfw python benchmarks/unlearn_lfw.py                      # ablation (tuning split)
  FACEFORGET_DATA=../shared/datasets/lfw python benchmarks/unlearn_lfw.py --config configs/lfw.yaml --rows dispersion

Runs (or resumes) every row of the config with `faceforget.benchmark.run_benchmark`, prints the table
and, for each row, the issue's bar: held-out forget R@1 <= 0.10 and mAP <= 0.10, seen forget R@1 <= 0.05,
retain mAP >= 0.97 x original, retain R@1 drop <= 0.01, unlearning wall time <= 600 s.
LFW is for research use only.
"""
from __future__ import annotations

import argparse

import numpy as np

from faceforget.benchmark import load_benchmark_config, run_benchmark
from faceforget.report.benchmark_tables import benchmark_markdown
from faceforget.timings import unlearn_seconds

BAR = (
    ("held-out forget R@1 <= 0.10", lambda r: r["unlearned"]["forget"]["R@1"] <= 0.10),
    ("held-out forget mAP <= 0.10", lambda r: r["unlearned"]["forget"]["mAP"] <= 0.10),
    ("seen forget R@1 <= 0.05", lambda r: r["unlearned"]["forget_seen"]["R@1"] <= 0.05),
    ("retain mAP >= 0.97 x original",
     lambda r: r["unlearned"]["retain"]["mAP"] >= 0.97 * r["original"]["retain"]["mAP"]),
    ("retain R@1 drop <= 0.01", lambda r: r["original"]["retain"]["R@1"] - r["unlearned"]["retain"]["R@1"] <= 0.01),
    ("wall time <= 600 s", lambda r: unlearn_seconds(r["timings"]) <= 600),
)


def bar_table(results: list[dict], rows: list[str] | None) -> str:
    """For each row: how many seeds meet each criterion of the bar."""
    names = [n for n in dict.fromkeys(r["row"] for r in results) if rows is None or n in rows]
    lines = ["| row | " + " | ".join(c for c, _ in BAR) + " |", "|---|" + "---:|" * len(BAR)]
    for name in names:
        runs = [r for r in results if r["row"] == name]
        cells = [f"{int(np.sum([ok(r) for r in runs]))}/{len(runs)}" for _, ok in BAR]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the config, print the comparison table and the bar check."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/dispersion_ablation.yaml")
    parser.add_argument("--rows", nargs="*", help="rows to check against the bar (default: all)")
    args = parser.parse_args()
    results = run_benchmark(load_benchmark_config(args.config))
    print(benchmark_markdown(results))
    print(bar_table([r for r in results if r["row"] not in ("original", "gallery_delete")], args.rows))


if __name__ == "__main__":
    main()

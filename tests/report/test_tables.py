"""Tables: number formatting, flattening, before/after deltas, audits, CSV rows and atomic CSV writing."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from faceforget.report import tables
from faceforget.report.inputs import ReportInputs


def test_fmt_numbers() -> None:
    assert tables.fmt(0.12345) == "0.123"
    assert tables.fmt(np.float32(0.5)) == "0.500"
    assert tables.fmt(float("nan")) == "nan"
    assert tables.fmt(7) == "7" and tables.fmt(np.int64(3)) == "3"
    assert tables.fmt(None) == "n/a"
    assert tables.fmt_delta(0.25) == "+0.250" and tables.fmt_delta(-0.0004) == "+0.000"


def test_metrics_markdown_layout() -> None:
    g = {"R@1": 0.5, "R@5": 0.75, "R@10": 1.0, "mAP": 0.4, "mAP@R": 0.3, "CS": 0.9, "n_queries": 4.0,
         "chance": {"R@1": 0.1, "R@5": 0.2, "R@10": 0.3, "mAP": 0.05, "mAP@R": 0.01}}
    text = tables.metrics_markdown({"m": {"forget": g, "retain": g | {"TAR@FAR=0.001": 0.875}}})
    assert text.splitlines() == [
        "| model | group | n_queries | R@1 | R@5 | R@10 | mAP | mAP@R | CS |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ("| m | forget (held-out) | 4 | 0.500 (0.100) | 0.750 (0.200) | 1.000 (0.300) | 0.400 (0.050) "
         "| 0.300 (0.010) | 0.900 |"),
        ("| m | retain (held-out) | 4 | 0.500 (0.100) | 0.750 (0.200) | 1.000 (0.300) | 0.400 (0.050) "
         "| 0.300 (0.010) | 0.900 |"),
        "", "- m: retain TAR@FAR=0.001 = 0.875", "", "(chance level in brackets)"]


def test_flatten_metrics(report_inputs: ReportInputs) -> None:
    flat = tables.flatten_metrics(report_inputs.metrics["unlearned"])
    groups = report_inputs.metrics["unlearned"]
    assert flat["forget.R@1"] == groups["forget"]["R@1"]
    assert flat["forget.chance.mAP"] == groups["forget"]["chance"]["mAP"]
    assert flat["retain.TAR@FAR=0.001"] == groups["retain"]["TAR@FAR=0.001"]
    assert all(isinstance(v, float) for v in flat.values())


def test_delta_rows(report_inputs: ReportInputs) -> None:
    before, after = report_inputs.metrics["original"], report_inputs.metrics["unlearned"]
    header, rows = tables.delta_rows(before, after)
    assert header == ["group", "metric", "before", "after", "delta", "chance"]
    row = next(r for r in rows if r[:2] == ["forget (held-out)", "mAP"])
    fb, fa = before["forget"]["mAP"], after["forget"]["mAP"]
    assert row[2:] == [tables.fmt(fb), tables.fmt(fa), tables.fmt_delta(fa - fb),
                       tables.fmt(after["forget"]["chance"]["mAP"])]
    assert any(r[1] == "TAR@FAR=0.001" for r in rows)
    assert not any(r[1].startswith("threshold@") for r in rows)
    assert {r[0] for r in tables.delta_rows(before, after, ("retain_seen",))[1]} == {"retain (seen)"}


def test_audit_rows(report_inputs: ReportInputs, raw_audits: dict) -> None:
    header, rows = tables.audit_rows(report_inputs.audits)  # audits.json's "audits" section
    assert header == ["audit", "before", "after", "chance"]
    assert [r[0] for r in rows] == list(raw_audits)
    name, entry = "threshold", raw_audits["threshold"]
    assert [name, tables.fmt(entry["before"].value), tables.fmt(entry["after"].value),
            tables.fmt(entry["chance"])] in rows


def test_write_csv_rows(tmp_path: Path, report_inputs: ReportInputs) -> None:
    rows = [tables.result_row(report_inputs.metrics), {"method": "extra", "note": "only here"}]
    path = tmp_path / "results.csv"
    tables.write_csv(path, rows)
    with path.open(newline="") as f:
        read = list(csv.DictReader(f))
    assert read[0]["method"] == "dispersion" and read[1]["note"] == "only here" and read[1]["E"] == ""
    assert float(read[0]["unlearned.forget.mAP"]) == report_inputs.metrics["unlearned"]["forget"]["mAP"]
    assert float(read[0]["H"]) == report_inputs.metrics["summary"]["H"]


def test_write_csv_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "results.csv"
    tables.write_csv(path, [{"a": 1}])
    before = path.read_text()

    def crash(self: csv.DictWriter, rows: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(csv.DictWriter, "writerows", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        tables.write_csv(path, [{"a": 2}])
    assert path.read_text() == before and [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_report_tables_share_metrics_rows(report_run: dict) -> None:
    t = tables.report_tables(report_run)
    header, rows, notes = tables.metrics_rows(report_run["metrics"])
    assert (t["metrics"].header, t["metrics"].rows, list(t["metrics"].notes)) == (header, rows, notes)
    assert t["summary"].rows == [[tables.fmt(report_run["summary"][k]) for k in "EUH"]]
    assert [r[0] for r in t["split"].rows] == ["forget_train", "forget_test", "retain_train", "retain_test",
                                               "distractor"]


def test_benchmark_tables_read_null_audits_as_nan() -> None:
    # K = 1: the probe has one identity to name, its value is NaN, stored as null in audits.json
    from faceforget.report.benchmark_tables import audit_rows

    run = {"row": "dispersion", "method": "dispersion", "audits": {"probe": {"after": None, "chance": 1.0},
                                                                  "mia": {"after": 0.25, "chance": 0.5}}}
    header, rows = audit_rows([run])
    cells = dict(zip(header, rows[0], strict=True))
    assert (cells["probe"], cells["probe chance"], cells["MIA AUC"]) == ("nan", "1.000", "0.250")

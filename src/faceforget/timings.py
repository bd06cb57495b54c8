"""
One timings model: a run's wall clock cut into named stages that are measured once and sum to the total.

A `Stopwatch` is started when a run starts; each `lap(stage)` books the time since the previous lap on
that stage (laps of the same name add up). No moment is booked twice or left out, so `total_s` (the sum
of the stages) is the wall clock from the start to the last lap. `STAGES` lists them (docs/report.md).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping

Clock = Callable[[], float]
STAGES = {  # every stage a run books, in run order, with what it covers
    "protocol": "assign every image a role, hash the files, write split.json (demo)",
    "load_split": "read split.json and verify the images' checksums",
    "load_model": "load the original model",
    "embed_original": "embed every split image with the original model (keeping the frozen blocks' output)",
    "load_train_images": "decode the training images",
    "evaluate_original": "the original model's retrieval metrics",
    "cache_views": "augmented views of the training photos through the frozen blocks",
    "method_setup": "copy the model; the method's setup (heads, centroids, masks)",
    "train": "the optimiser steps",
    "finalize": "the method's closing step (dispersion: the closed-form refit)",
    "save_model": "write model.pt",
    "embed_unlearned": "embed every split image with the unlearned model",
    "evaluate_unlearned": "the unlearned model's retrieval metrics",
    "write_outputs": "loss history and embeddings into the run folder",
    "audits": "the attacks on both models (demo)",
    "gallery": "build the gallery, search it, rebuild it with the unlearned model, search again (demo)",
    "report": "write report.html / .md / .json (demo; booked after the report is written)",
}
UNLEARN_STAGES = ("cache_views", "method_setup", "train", "finalize")


class Stopwatch:
    """Books the wall time between consecutive laps on named stages; `clock` is injectable for tests."""

    def __init__(self, clock: Clock = time.perf_counter) -> None:
        self._clock = clock
        self._last = clock()
        self._laps: dict[str, float] = {}

    def lap(self, stage: str) -> float:
        """Book the time since the previous lap (or the start) on `stage`; returns those seconds."""
        now = self._clock()
        seconds, self._last = now - self._last, now
        self._laps[stage] = self._laps.get(stage, 0.0) + seconds
        return seconds

    def timings(self) -> dict[str, float]:
        """{"<stage>_s": seconds, ..., "total_s": their sum}, stages in the order first booked."""
        stages = {f"{stage}_s": seconds for stage, seconds in self._laps.items()}
        return stages | {"total_s": sum(self._laps.values())}


def unlearn_seconds(timings: Mapping[str, float]) -> float:
    """Seconds of the unlearning itself, view cache to finalize (older run folders: `unlearn_wall_s`)."""
    if "unlearn_wall_s" in timings:
        return float(timings["unlearn_wall_s"])
    return float(sum(timings.get(f"{stage}_s", 0.0) for stage in UNLEARN_STAGES))


def stage_rows(timings: Mapping[str, float]) -> list[tuple[str, str, float]]:
    """(stage, what it covers, seconds) in run order, unknown stages after the known, the total last."""
    stages = {k.removesuffix("_s"): float(v) for k, v in timings.items() if k != "total_s"}
    order = [s for s in STAGES if s in stages] + [s for s in stages if s not in STAGES]
    rows = [(s, STAGES.get(s, ""), stages[s]) for s in order]
    if "total_s" in timings:
        rows.append(("total", "the sum of the stages: the wall clock of the run", float(timings["total_s"])))
    return rows

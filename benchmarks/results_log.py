"""
What every speed benchmark needs: a best-of-n timer, the machine and load, and an append to RESULTS.md.

The machine this was written on is shared, so each table is measured side by side in one run and the
load average (`os.getloadavg`) is quoted before and after it.
"""
from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch

RESULTS = Path(__file__).with_name("RESULTS.md")


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Lowest wall time of `repeats` calls of `fn` (seconds) and the last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def machine() -> str:
    """CPU model, core count, torch version and thread settings, in one line."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        model = names[0] if names else model
    return (f"{model}, {os.cpu_count()} cores; torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def append_results(title: str, command: str, body: str, load_before: str, path: Path = RESULTS) -> None:
    """Append a dated section (machine, command, load before and after) with `body` to RESULTS.md."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (f"\n## {title}\n\n- Date: {stamp}\n- Machine: {machine()}\n- Command: `{command}`\n"
               f"- Load average (1/5/15 min) before: {load_before}; after: {load()}\n\n{body.rstrip()}\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text((path.read_text() if path.exists() else "# Benchmark results\n") + section)
    os.replace(tmp, path)

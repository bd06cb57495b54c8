"""A run folder: config snapshot, split hash, seeds, metrics.json, timings, model and resume checkpoint."""
from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from faceforget import __version__
from faceforget.fileio import canonical_json, sha256_bytes, write_json_atomic


@dataclass(frozen=True)
class RunFolder:
    """Paths inside one run folder; nothing is written until asked."""

    root: Path

    @property
    def model(self) -> Path:
        """The unlearned model checkpoint."""
        return self.root / "model.pt"

    @property
    def checkpoint(self) -> Path:
        """The resumable training checkpoint (removed when the run completes)."""
        return self.root / "checkpoint.pt"

    @property
    def metrics(self) -> Path:
        """Before/after metrics, summary scores and timings."""
        return self.root / "metrics.json"

    @property
    def config(self) -> Path:
        """The resolved config snapshot with split hash and signature."""
        return self.root / "config.json"

    @property
    def history(self) -> Path:
        """Per-step loss terms."""
        return self.root / "history.json"

    def is_complete(self) -> bool:
        """True when the run finished (model and metrics written)."""
        return self.model.is_file() and self.metrics.is_file()

    def read_metrics(self) -> dict:
        """The finished run's metrics.json."""
        return json.loads(self.metrics.read_text())


def job_signature(config: dict, split_hash: str, model_spec: str) -> str:
    """Hash of everything that determines a run's result (config, data split, starting model)."""
    return sha256_bytes(canonical_json({"config": config, "split": split_hash, "model": model_spec}).encode())[:16]


def environment() -> dict[str, str]:
    """Versions and machine facts recorded with every run."""
    return {
        "faceforget": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
        "torch_threads": str(torch.get_num_threads()),
        "utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_config_snapshot(run: RunFolder, config: dict, split_hash: str, model_spec: str, signature: str) -> None:
    """Write config.json: the resolved config plus the split hash, starting model and signature."""
    write_json_atomic(run.config, {"config": config, "split_hash": split_hash, "model": model_spec,
                                   "signature": signature, "environment": environment()})

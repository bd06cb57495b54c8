"""
A run folder: every file name in it, its writer lock, and the rules for reusing one (docs/safety.md).

One writer at a time (`RunFolder.writing`, a non-blocking lock: a second writer fails at once). A new
run (`RunFolder.session`) first removes everything a previous run or a later stage derived from a previous model (model,
metrics, embeddings, audits, report), then writes config.json, so config.json never sits beside another
run's outputs. A finished run is replaced only with `overwrite`; an unfinished one of the same job
(signature) resumes from its checkpoint. metrics.json, audits.json and report.json record the model's
sha256, and the stages that read them refuse a mismatch (`check_model`).
"""
from __future__ import annotations

import contextlib
import json
import platform
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from faceforget import __version__
from faceforget.fileio import canonical_json, remove_stale_temps, sha256_bytes, sha256_file, write_json_atomic
from faceforget.locks import LOCK_FILE, exclusive

PROBE_SPACES = ("penultimate", "suffix_input")  # feature files a run may store (`Workspace.probe_features`)
NUMERIC_SECTIONS = ("original", "unlearned", "summary", "timings", "method_state")  # null in JSON means NaN


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked (finished, another job's, unfinished, mismatched model)."""


@dataclass(frozen=True)
class RunFolder:
    """Paths inside one run folder; nothing is written until asked."""

    root: Path

    @property
    def model(self) -> Path:
        """The unlearned model checkpoint."""
        return self.root / "model.pt"

    @property
    def model_checksum(self) -> Path:
        """The model's sha256 sidecar (`models.checkpoint`)."""
        return self.root / "model.pt.sha256"

    @property
    def checkpoint(self) -> Path:
        """The resumable training checkpoint (removed when the run completes)."""
        return self.root / "checkpoint.pt"

    @property
    def metrics(self) -> Path:
        """Before/after metrics, summary scores, timings and the model's sha256."""
        return self.root / "metrics.json"

    @property
    def config(self) -> Path:
        """The resolved config snapshot with split hash and signature."""
        return self.root / "config.json"

    @property
    def history(self) -> Path:
        """Per-step loss terms."""
        return self.root / "history.json"

    @property
    def embeddings_original(self) -> Path:
        """The starting model's embeddings of every split record (face templates)."""
        return self.root / "embeddings_original.npy"

    @property
    def embeddings_unlearned(self) -> Path:
        """The unlearned model's embeddings of every split record (face templates)."""
        return self.root / "embeddings_unlearned.npy"

    def features(self, space: str, model: str) -> Path:
        """Probe features of every split record below the output ("penultimate", "suffix_input") of `model`."""
        return self.root / f"features_{space}_{model}.npy"

    @property
    def audits(self) -> Path:
        """The attacks' results (written by the run, again by `faceforget audit --run`), with the model's sha256."""
        return self.root / "audits.json"

    @property
    def report_html(self) -> Path:
        """The self-contained HTML report (`report/html.py`)."""
        return self.root / "report.html"

    @property
    def report_md(self) -> Path:
        """The Markdown report."""
        return self.root / "report.md"

    @property
    def report_json(self) -> Path:
        """The report's data, with the model's sha256 in run.model_sha256."""
        return self.root / "report.json"

    @property
    def figures(self) -> Path:
        """The report's figures, one PNG each."""
        return self.root / "figures"

    @property
    def report_files(self) -> tuple[Path, ...]:
        """What `faceforget report` writes (into the run folder unless told otherwise)."""
        return self.report_html, self.report_md, self.report_json, self.figures

    def derived(self) -> tuple[Path, ...]:
        """Every output of a run and of the stages after it, i.e. all that depends on one model."""
        return (self.model, self.model_checksum, self.metrics, self.history, self.embeddings_original,
                self.embeddings_unlearned, *sorted(self.root.glob(self.features("*", "*").name)), self.audits,
                *self.report_files)

    def is_complete(self) -> bool:
        """True when the run finished (model and metrics written)."""
        return self.model.is_file() and self.metrics.is_file()

    def read_metrics(self) -> dict:
        """The finished run's metrics.json, with a clear error when the run is not finished or the file is bad."""
        if not self.metrics.is_file():
            raise RunFolderError(f"{self.root} holds no finished run (no {self.metrics.name}); "
                                 "run `faceforget unlearn` into it first")
        try:
            metrics = json.loads(self.metrics.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunFolderError(f"{self.metrics} is not valid JSON: {exc}") from None
        if not isinstance(metrics, dict):
            raise RunFolderError(f"{self.metrics} is not a faceforget metrics file")
        return {k: _nan_for_null(v) if k in NUMERIC_SECTIONS else v for k, v in metrics.items()}

    def stored_outputs(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Both models' embeddings and their probe features ({space: array}, spaces with both files) as stored."""
        before, after = (np.load(p, allow_pickle=False) for p in (self.embeddings_original, self.embeddings_unlearned))
        features: tuple[dict, dict] = ({}, {})
        for space in PROBE_SPACES:
            files = [self.features(space, m) for m in ("original", "unlearned")]
            if all(f.is_file() for f in files):
                features[0][space], features[1][space] = (np.load(f, allow_pickle=False) for f in files)
        return before, after, *features

    def read_audits(self, model_sha256: str) -> dict:
        """The "audits" table of audits.json, refused unless it was made from the model with `model_sha256`."""
        try:
            body = json.loads(self.audits.read_text())
            table = body["audits"]
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise RunFolderError(f"{self.audits} is not an audits file from `faceforget audit` "
                                 f"({type(exc).__name__}: {exc})") from None
        if body.get("model_sha256") != model_sha256:
            raise RunFolderError(f"{self.audits} was made from model {str(body.get('model_sha256'))[:12]}, not "
                                 f"this run's {model_sha256[:12]}: re-run `faceforget audit --run {self.root}`")
        return table

    def signature(self) -> str | None:
        """The job signature in config.json (None when there is none or it cannot be read)."""
        try:
            return json.loads(self.config.read_text()).get("signature")
        except (OSError, ValueError, AttributeError):
            return None

    @contextlib.contextmanager
    def writing(self, create: bool = False) -> Iterator[RunFolder]:
        """Hold the folder's writer lock (failing at once if another process holds it); clean stale temp files."""
        if not create and not self.root.is_dir():
            raise RunFolderError(f"no run folder at {self.root}")
        with exclusive(self.root, "run folder"):
            remove_stale_temps(self.root)
            yield self

    @contextlib.contextmanager
    def session(self, signature: str, overwrite: bool) -> Iterator[RunFolder]:
        """
        Write a run of job `signature` here: lock, refuse or clear what is there (`check_reuse`, `clear`).

        If the body fails with nothing to resume, what it wrote is removed, and the folder too if this
        session created it.
        """
        created = not self.root.exists()
        try:
            with self.writing(create=True):
                self.check_reuse(signature, overwrite)
                self.clear(keep_checkpoint=self.signature() == signature)
                try:
                    yield self
                except BaseException:
                    if not self.checkpoint.is_file():
                        self.clear(keep_checkpoint=False)
                    raise
        finally:
            if created and self.root.is_dir() and all(p.name == LOCK_FILE for p in self.root.iterdir()):
                shutil.rmtree(self.root, ignore_errors=True)

    def check_reuse(self, signature: str, overwrite: bool) -> None:
        """Refuse a finished run, or another job's unfinished one, unless `overwrite`."""
        if overwrite:
            return
        if self.is_complete():
            raise RunFolderError(f"{self.root} already holds a finished run (signature {self.signature()}); "
                                 "pass --overwrite (overwrite=True) to replace it, or choose another folder")
        if self.checkpoint.is_file() and self.signature() != signature:
            raise RunFolderError(f"{self.root} holds an unfinished run of another config ({self.checkpoint.name}, "
                                 f"signature {self.signature()}); pass --overwrite to discard it, or choose "
                                 "another folder")

    def clear(self, keep_checkpoint: bool) -> None:
        """Remove every derived file and config.json (and the checkpoint unless `keep_checkpoint`)."""
        for path in (*self.derived(), self.config, *(() if keep_checkpoint else (self.checkpoint,))):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)

    def model_sha256(self) -> str:
        """sha256 of model.pt as it is on disk now."""
        if not self.model.is_file():
            raise RunFolderError(f"{self.root} has no {self.model.name}")
        return sha256_file(self.model)

    def check_model(self, recorded: dict, source: Path) -> str:
        """The model's sha256, after checking that `recorded` (read from `source`) was made from this model."""
        actual, claimed = self.model_sha256(), recorded.get("model_sha256")
        if claimed != actual:
            raise RunFolderError(f"{source} was made from model {str(claimed)[:12]}, but {self.model} is "
                                 f"{actual[:12]}: they belong to different runs; re-run `faceforget unlearn`")
        return actual


def _nan_for_null(x: object) -> object:
    """Undo strict JSON's NaN -> null inside a numeric section of metrics.json."""
    if isinstance(x, dict):
        return {k: _nan_for_null(v) for k, v in x.items()}
    return float("nan") if x is None else x


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

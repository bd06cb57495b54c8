"""RunFolder: one writer at a time, no reuse of a finished run without overwrite, nothing stale or partial left."""
from __future__ import annotations

import json
import multiprocessing as mp

import pytest

from faceforget.fileio import write_json_atomic
from faceforget.locks import FolderBusyError
from faceforget.runs import RunFolder, RunFolderError

CTX = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def _finished(root, signature="sig-a", model=b"weights-a"):
    """A run folder as a finished run plus audit and report leave it."""
    run = RunFolder(root)
    write_json_atomic(run.config, {"signature": signature})
    run.model.parent.mkdir(parents=True, exist_ok=True)
    run.model.write_bytes(model)
    for path in (run.metrics, run.audits, run.report_files[0]):
        write_json_atomic(path, {"model_sha256": "x"})
    (run.root / "figures").mkdir()
    (run.root / "figures" / "loss.png").write_bytes(b"png")
    return run


def _names(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name != ".lock")


def test_finished_run_is_refused_and_left_untouched(tmp_path):
    run = _finished(tmp_path / "run")
    before = _names(run.root)
    with pytest.raises(RunFolderError, match=r"already holds a finished run \(signature sig-a\); pass --overwrite"):
        with run.session("sig-b", overwrite=False):
            pytest.fail("the body must not run")
    assert _names(run.root) == before


def test_overwrite_removes_everything_derived_from_the_old_model_first(tmp_path):
    run = _finished(tmp_path / "run")
    with run.session("sig-b", overwrite=True):
        assert _names(run.root) == []  # no config.json, audits.json or report of the old run survives
        write_json_atomic(run.config, {"signature": "sig-b"})
    assert _names(run.root) == ["config.json"]


def test_unfinished_run_of_the_same_job_keeps_its_checkpoint_another_jobs_is_refused(tmp_path):
    run = RunFolder(tmp_path / "run")
    write_json_atomic(run.config, {"signature": "sig-a"})
    run.checkpoint.write_bytes(b"step 40")
    with run.session("sig-a", overwrite=False):
        assert _names(run.root) == ["checkpoint.pt"]  # resumable; config.json is rewritten by the run
        write_json_atomic(run.config, {"signature": "sig-a"})
    with pytest.raises(RunFolderError, match="unfinished run of another config"):
        with run.session("sig-b", overwrite=False):
            pass
    with run.session("sig-b", overwrite=True):
        assert _names(run.root) == []


def test_failed_run_leaves_nothing_behind(tmp_path):
    run = RunFolder(tmp_path / "new")
    with pytest.raises(RuntimeError, match="boom"):
        with run.session("sig", overwrite=False):
            write_json_atomic(run.config, {"signature": "sig"})
            raise RuntimeError("boom")
    assert not run.root.exists()
    existing = RunFolder(tmp_path / "old")
    existing.root.mkdir()
    (existing.root / "notes.txt").write_text("the user's")
    with pytest.raises(RuntimeError):
        with existing.session("sig", overwrite=False):
            write_json_atomic(existing.config, {"signature": "sig"})
            raise RuntimeError("boom")
    assert _names(existing.root) == ["notes.txt"]  # only what the run wrote went


def test_readers_of_a_missing_run_folder_create_nothing(tmp_path):
    with pytest.raises(RunFolderError, match="no run folder at .*nowhere"):
        with RunFolder(tmp_path / "nowhere").writing():
            pass
    assert not (tmp_path / "nowhere").exists()


def test_stale_temp_files_of_a_killed_write_are_removed_at_the_next_start(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.root.mkdir()
    (run.root / ".metrics.json.a1b2c3.tmp").write_text("{half")
    with run.writing():
        assert _names(run.root) == []


def _hold(root, holding, release):
    with RunFolder(root).writing():
        holding.set()
        release.wait(60)


def test_a_second_writer_is_refused_at_once(tmp_path):
    holding, release = CTX.Event(), CTX.Event()
    (tmp_path / "run").mkdir()
    other = CTX.Process(target=_hold, args=(tmp_path / "run", holding, release))
    other.start()
    try:
        assert holding.wait(60), "the other writer never took the lock"
        with pytest.raises(FolderBusyError, match="run folder .*run is in use by another faceforget process"):
            with RunFolder(tmp_path / "run").session("sig", overwrite=True):
                pass
    finally:
        release.set()
        other.join(60)
    with RunFolder(tmp_path / "run").writing():  # free again once the holder is done
        pass


def test_stages_refuse_files_made_from_another_model(tmp_path):
    run = _finished(tmp_path / "run", model=b"weights-b")
    sha = run.model_sha256()
    with pytest.raises(RunFolderError, match=r"metrics.json was made from model x, but .*model.pt is "):
        run.check_model({"model_sha256": "x"}, run.metrics)
    assert run.check_model({"model_sha256": sha}, run.metrics) == sha
    write_json_atomic(run.audits, {"model_sha256": "0" * 64, "audits": {"probe": {}}})
    with pytest.raises(RunFolderError, match=r"audits.json was made from model 000000000000, not this run's"):
        run.read_audits(sha)
    write_json_atomic(run.audits, {"model_sha256": sha, "audits": {"probe": {"after": 0.5}}})
    assert run.read_audits(sha) == {"probe": {"after": 0.5}}
    run.audits.write_text(json.dumps({"model_sha256": sha}))
    with pytest.raises(RunFolderError, match="not an audits file"):
        run.read_audits(sha)


def test_read_metrics_turns_null_back_into_nan_and_says_when_unfinished(tmp_path):
    run = RunFolder(tmp_path)
    with pytest.raises(RunFolderError, match="holds no finished run"):
        run.read_metrics()
    write_json_atomic(run.metrics, {"summary": {"E": float("nan")}, "model_sha256": None})
    metrics = run.read_metrics()
    assert metrics["summary"]["E"] != metrics["summary"]["E"] and metrics["model_sha256"] is None

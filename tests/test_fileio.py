"""fileio: strict JSON, atomic owner-only files and folders, stale temp files, safe weight loading."""
import json
import os
import stat

import numpy as np
import pytest
import torch

from faceforget import fileio


class Pickled:
    """A class instance: not plain data, so a weights-only load must refuse it."""


def _strict(text: str) -> object:
    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=refuse)


def test_json_ready_makes_plain_json_and_nan_null() -> None:
    raw = {"a": float("nan"), "b": np.float32(1.5), "c": (1, np.int64(2)), 3: [np.inf], "t": torch.tensor(0.25),
           "arr": np.array([1.0, np.nan])}
    assert fileio.json_ready(raw) == {"a": None, "b": 1.5, "c": [1, 2], "3": [None], "t": 0.25, "arr": [1.0, None]}


def test_written_json_is_strict(tmp_path) -> None:
    fileio.write_json_atomic(tmp_path / "m.json", {"mAP": float("nan"), "R@1": np.float64(-np.inf), "k": 1})
    assert _strict((tmp_path / "m.json").read_text()) == {"mAP": None, "R@1": None, "k": 1}
    with pytest.raises(ValueError, match="NaN"):
        _strict(json.dumps({"x": float("nan")}))  # the checker itself refuses what json.dumps allows


def test_files_and_created_folders_are_owner_only(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        fileio.save_npy_atomic(tmp_path / "a" / "b" / "emb.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
        fileio.write_json_atomic(tmp_path / "a" / "x.json", {})
    finally:
        os.umask(old)
    for path, mode in ((tmp_path / "a", 0o700), (tmp_path / "a" / "b", 0o700),
                       (tmp_path / "a" / "b" / "emb.npy", 0o600), (tmp_path / "a" / "x.json", 0o600)):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "b" / "emb.npy"), [[0, 1, 2], [3, 4, 5]])


def test_failed_write_keeps_the_old_file_and_stale_temps_are_removed(tmp_path) -> None:
    target = tmp_path / "emb.npy"
    fileio.save_npy_atomic(target, np.ones(3))
    with pytest.raises(ValueError, match="Object arrays"):
        fileio.save_npy_atomic(target, np.array([{"a": 1}], dtype=object))
    np.testing.assert_array_equal(np.load(target), np.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.npy"]
    (tmp_path / ".emb.npy.k3j_x9.tmp").write_bytes(b"half")  # what a SIGKILL mid-write leaves
    (tmp_path / ".keep").write_text("not ours")
    assert [p.name for p in fileio.remove_stale_temps(tmp_path)] == [".emb.npy.k3j_x9.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".keep", "emb.npy"]


def test_load_state_never_passes_on_torchs_weights_only_advice(tmp_path) -> None:
    torch.save({"obj": Pickled()}, tmp_path / "code.pt")  # unpickling it would run this module's code
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ValueError, match="holds objects other than tensors") as exc:
        fileio.load_state(tmp_path / "code.pt")
    assert "weights_only" not in str(exc.value)
    with pytest.raises(ValueError, match="not a file torch.save writes"):
        fileio.load_state(tmp_path / "text.pt")

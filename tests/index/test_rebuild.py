"""Rebuild: a new model's embeddings replace the old atomically; a crash at any point keeps the old gallery."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceforget.data.records import FaceRecord
from faceforget.index import store
from faceforget.index.gallery import Gallery
from faceforget.index.rebuild import rebuild

ROOT = "/faces"


@pytest.fixture
def saved(tmp_path, fake_model):
    """A 12-identity gallery embedded with model "a", one identity already deleted, saved under tmp_path/g."""
    records = [FaceRecord(f"id{i:02d}/{j}.jpg", f"id{i:02d}") for i in range(12) for j in range(6)]
    x = fake_model("a", 16)([Path(ROOT) / r.path for r in records])
    g = Gallery.build(x, records, model_fingerprint="model-a", root=ROOT)
    g.delete_identities(["id07"])
    g.save(tmp_path / "g")
    return tmp_path / "g", g


def _recording(embed):
    calls: list[Path] = []

    def fn(paths: list[Path]) -> np.ndarray:
        calls.extend(paths)
        return embed(paths)
    return fn, calls


def _queries(n: int = 10, dim: int = 16) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)


def test_successful_rebuild_swaps_model_and_cleans_up(saved, fake_model, brute_topk, hit_arrays):
    gdir, old = saved
    embed, calls = _recording(fake_model("b", 24))
    new = rebuild(gdir, embed, model_fingerprint="model-b", batch_size=7, progress=False, model="run/model.pt")
    assert calls == [Path(ROOT) / r.path for r in old.rows]  # deleted rows are never re-embedded
    loaded = Gallery.load(gdir, model_fingerprint="model-b")
    assert loaded.model == "run/model.pt" and old.model is None  # the new model's spec is recorded
    assert loaded.rows == old.rows and (loaded.dim, loaded.kind, loaded.root) == (24, "flat", ROOT)
    ids = np.array([r.id for r in old.rows])
    q = _queries(dim=24)
    got_ids, _ = hit_arrays(loaded.search(q, 15))
    np.testing.assert_array_equal(got_ids, brute_topk(fake_model("b", 24)(calls), ids, q, 15)[0])
    assert loaded.search(q, 15) == new.search(q, 15)
    assert sorted(p.name for p in gdir.iterdir() if p.name != ".lock") == ["CURRENT", "v000002"]


@pytest.mark.parametrize("after", [1, 4])
def test_killed_rebuild_leaves_old_gallery_intact(saved, fake_model, after):
    gdir, old = saved
    q = _queries()
    before = Gallery.load(gdir).search(q, 20)

    def kill(n: int) -> None:
        if n == after:
            raise KeyboardInterrupt("killed")
    with pytest.raises(KeyboardInterrupt):
        rebuild(gdir, fake_model("b", 16), model_fingerprint="model-b", batch_size=10, progress=False,
                on_batch=kill)
    back = Gallery.load(gdir, model_fingerprint="model-a")
    assert back.rows == old.rows and back.search(q, 20) == before
    assert sorted(p.name for p in gdir.iterdir() if p.name != ".lock") == ["CURRENT", "v000001"]


def test_crash_before_switch_keeps_old_then_next_rebuild_cleans(saved, fake_model, monkeypatch):
    gdir, _ = saved
    q = _queries()
    before = Gallery.load(gdir).search(q, 20)

    def crash(*args, **kwargs):
        raise OSError("power cut")
    monkeypatch.setattr(store, "write_text_atomic", crash)
    with pytest.raises(OSError, match="power cut"):
        rebuild(gdir, fake_model("b", 16), model_fingerprint="model-b", progress=False)
    assert (gdir / "v000002" / "metadata.json").is_file()  # complete but never made live
    assert Gallery.load(gdir).search(q, 20) == before
    monkeypatch.undo()
    rebuild(gdir, fake_model("b", 16), model_fingerprint="model-b", progress=False)
    assert Gallery.load(gdir).model_fingerprint == "model-b"
    assert sorted(p.name for p in gdir.iterdir() if p.name != ".lock") == ["CURRENT", "v000003"]


def test_bad_embeddings_abort_without_touching_gallery(saved):
    gdir, old = saved
    with pytest.raises(ValueError, match="returned shape"):
        rebuild(gdir, lambda paths: np.ones((len(paths) - 1, 16)), model_fingerprint="b", progress=False)
    assert Gallery.load(gdir, model_fingerprint="model-a").rows == old.rows


def test_ivf_gallery_stays_ivf_with_progress_bar(tmp_path, toy_embeddings, fake_model):
    x, records = toy_embeddings(0, n_ids=10, per_id=10)
    Gallery.build(x, records, model_fingerprint="a", kind="ivf", nprobe=2).save(tmp_path)
    new = rebuild(tmp_path, fake_model("b", 16), model_fingerprint="b", batch_size=32, progress=True)
    back = Gallery.load(tmp_path)
    assert (back.kind, back.nprobe, len(back), back.model_fingerprint) == ("ivf", 2, 100, "b")
    assert back.search(x[:3], 5) == new.search(x[:3], 5)

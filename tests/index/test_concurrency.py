"""Writers racing on one saved gallery (separate processes): concurrent deletes and a rebuild lose nothing."""
from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

from faceforget.data.records import FaceRecord
from faceforget.index import gallery as gallery_mod
from faceforget.index.gallery import Gallery, delete_saved
from faceforget.index.rebuild import rebuild
from faceforget.seeding import numpy_rng

CTX = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
ROOT = "/faces"
DELETED = ("id01", "id04", "id07", "id10")


def embed_b(paths: list[Path]) -> np.ndarray:
    """Model "b": identity (parent folder) centre + per-path noise, deterministic."""
    return np.stack([numpy_rng(0, "b", Path(p).parent.name).standard_normal(16)
                     + 0.4 * numpy_rng(0, "b", str(p)).standard_normal(16) for p in paths]).astype(np.float32)


def _delete(gdir: str, name: str, go) -> None:
    go.wait(60)
    delete_saved(gdir, [name])


def _rebuild(gdir: str, started, resume) -> None:
    def pause_after_first_batch(n: int) -> None:
        if n == 1:
            started.set()
            resume.wait(60)  # the deletes commit while this rebuild holds its start snapshot
    rebuild(gdir, embed_b, model_fingerprint="model-b", batch_size=8, progress=False,
            on_batch=pause_after_first_batch)


def _run(target, *args) -> mp.Process:
    p = CTX.Process(target=target, args=args)
    p.start()
    return p


@pytest.fixture
def saved(tmp_path) -> tuple[Path, list[FaceRecord]]:
    records = [FaceRecord(f"id{i:02d}/{j}.jpg", f"id{i:02d}") for i in range(12) for j in range(5)]
    x = numpy_rng(0, "a").standard_normal((len(records), 16)).astype(np.float32)
    Gallery.build(x, records, model_fingerprint="model-a", root=ROOT).save(tmp_path / "g")
    return tmp_path / "g", records


def test_concurrent_deletes_during_a_rebuild_are_all_kept(saved):
    gdir, records = saved
    started, resume, go = CTX.Event(), CTX.Event(), CTX.Event()
    rebuilder = _run(_rebuild, str(gdir), started, resume)
    assert started.wait(60), "the rebuild never started"
    deleters = [_run(_delete, str(gdir), name, go) for name in DELETED]
    go.set()  # the four deletes race each other for the lock
    for p in deleters:
        p.join(60)
    resume.set()
    rebuilder.join(60)
    assert [p.exitcode for p in (*deleters, rebuilder)] == [0] * 5

    back = Gallery.load(gdir, model_fingerprint="model-b")
    kept = [(i, r) for i, r in enumerate(records) if r.identity not in DELETED]
    assert back.identities == {r.identity for _, r in kept}
    assert [row.id for row in back.rows] == [i for i, _ in kept]
    expected = embed_b([Path(ROOT) / r.path for _, r in kept])
    np.testing.assert_allclose(back.vectors([i for i, _ in kept]),
                               expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-6)
    assert sorted(p.name for p in gdir.iterdir() if p.name != ".lock") == ["CURRENT", "v000006"]  # 4 deletes + 1


def test_delete_during_rebuild_in_one_process_stays_deleted(saved):
    gdir, records = saved

    def delete_meanwhile(n: int) -> None:
        if n == 2:
            assert delete_saved(gdir, ["id03"]) == 5
    new = rebuild(gdir, embed_b, model_fingerprint="model-b", batch_size=8, progress=False, on_batch=delete_meanwhile)
    assert "id03" not in new.identities and "id03" not in Gallery.load(gdir).identities
    assert len(Gallery.load(gdir)) == len(records) - 5


def test_rows_added_during_rebuild_are_embedded_by_the_new_model(saved):
    gdir, records = saved
    extra = FaceRecord("id99/0.jpg", "id99")

    def add_meanwhile(n: int) -> None:
        if n == 1:
            old = Gallery.load(gdir)
            x = np.concatenate([old.vectors([r.id for r in old.rows]), np.ones((1, 16), np.float32)])
            Gallery.build(x, [*old.rows, extra], model_fingerprint="model-a", root=ROOT,
                          ids=[*(r.id for r in old.rows), 999]).save(gdir)
    rebuild(gdir, embed_b, model_fingerprint="model-b", batch_size=8, progress=False, on_batch=add_meanwhile)
    back = Gallery.load(gdir)
    assert [r.id for r in back.rows][-1] == 999 and len(back) == len(records) + 1
    want = embed_b([Path(ROOT) / extra.path])[0]
    np.testing.assert_allclose(back.vectors([999])[0], want / np.linalg.norm(want), atol=1e-6)


def test_reader_whose_version_vanishes_retries_with_the_new_one(saved, monkeypatch):
    gdir, records = saved
    real = gallery_mod._read_metadata
    calls = []

    def writer_commits_first(path):
        calls.append(path.parent.name)
        if len(calls) == 1:  # between reading CURRENT and the files, another process commits a delete
            delete_saved(gdir, ["id00"])
        return real(path)
    monkeypatch.setattr(gallery_mod, "_read_metadata", writer_commits_first)
    back = Gallery.load(gdir)
    assert calls == ["v000001", "v000001", "v000002"]  # ours, the delete's own load, our retry
    assert "id00" not in back.identities


def test_missing_version_without_a_writer_is_still_an_error(saved):
    gdir, _ = saved
    (gdir / "v000001" / "index.faiss").unlink()
    with pytest.raises(FileNotFoundError, match="gallery index missing"):
        Gallery.load(gdir)

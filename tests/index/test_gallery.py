"""Gallery: exact search vs numpy, batch-size invariance, IVF recall, deletes, save/load, corruption."""
from __future__ import annotations

import json

import numpy as np
import pytest

from faceforget.index import gallery as gallery_mod
from faceforget.index.gallery import Gallery


def _queries(seed: int, n: int, dim: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


@pytest.mark.parametrize("k", [1, 5, 160, 500])
def test_flat_search_equals_brute_force(toy_embeddings, brute_topk, hit_arrays, k):
    x, records = toy_embeddings(0)
    g = Gallery.build(x, records, model_fingerprint="m")
    q = _queries(1, 40, x.shape[1])
    hits = g.search(q, k)
    ids, scores = hit_arrays(hits)
    ref_ids, ref_scores = brute_topk(x, np.arange(len(x)), q, k)
    assert g.kind == "flat" and ids.shape == (40, min(k, len(x)))
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    assert all(h.path == records[h.id].path and h.identity == records[h.id].identity for row in hits for h in row)


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_batch_sizes_give_identical_results(toy_embeddings, hit_arrays, kind):
    x, records = toy_embeddings(2, n_ids=40, per_id=10)
    g = Gallery.build(x, records, model_fingerprint="m", kind=kind, nprobe=4)
    q = _queries(3, 31, x.shape[1])
    results = [hit_arrays(g.search(q, 10, batch_size=b)) for b in (1, 7, len(q))]
    for ids, scores in results[1:]:
        np.testing.assert_array_equal(ids, results[0][0])
        np.testing.assert_allclose(scores, results[0][1], atol=1e-6)


def test_auto_kind_switches_to_ivf_above_threshold(toy_embeddings):
    x, records = toy_embeddings(4)
    assert Gallery.build(x, records, model_fingerprint="m", ivf_threshold=len(x)).kind == "flat"
    assert Gallery.build(x, records, model_fingerprint="m", ivf_threshold=len(x) - 1).kind == "ivf"


def test_ivf_has_high_recall_and_exact_scores(toy_embeddings, brute_topk):
    x, records = toy_embeddings(5, n_ids=150, per_id=20, dim=32, spread=1.0)
    held_out, _ = toy_embeddings(5, n_ids=150, per_id=21, dim=32, spread=1.0)  # same centres, new noise
    q = held_out[::15][:200]
    ref_ids, _ = brute_topk(x, np.arange(len(x)), q, 10)

    def recall(g: Gallery) -> float:
        hits = g.search(q, 10)
        return float(np.mean([len({h.id for h in row} & set(ref)) / 10 for row, ref in zip(hits, ref_ids)]))
    g = Gallery.build(x, records, model_fingerprint="m", ivf_threshold=1000)
    assert g.kind == "ivf" and recall(g) >= 0.95
    one_list = Gallery.build(x, records, model_fingerprint="m", ivf_threshold=1000, nprobe=1)
    assert recall(one_list) < 0.9  # the data is hard enough that probing matters
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    for row, query in zip(g.search(q, 10), q / np.linalg.norm(q, axis=1, keepdims=True), strict=False):
        np.testing.assert_allclose([h.score for h in row], unit[[h.id for h in row]] @ query, atol=1e-5)


def test_tiny_ivf_is_exact(toy_embeddings, brute_topk, hit_arrays):
    x, records = toy_embeddings(6, n_ids=4, per_id=5)
    g = Gallery.build(x, records, model_fingerprint="m", kind="ivf")
    q = _queries(7, 9, x.shape[1])
    ids, _ = hit_arrays(g.search(q, 20))
    np.testing.assert_array_equal(ids, brute_topk(x, np.arange(len(x)), q, 20)[0])


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_delete_removes_exactly_those_identities(toy_embeddings, brute_topk, hit_arrays, kind):
    x, records = toy_embeddings(8, n_ids=30, per_id=10)
    g = Gallery.build(x, records, model_fingerprint="m", kind=kind, nprobe=100)
    gone = {"id0003", "id0017"}
    assert g.delete_identities(sorted(gone)) == 20
    keep = np.array([i for i, r in enumerate(records) if r.identity not in gone])
    assert [r.id for r in g.rows] == keep.tolist() and g.identities == {r.identity for r in records} - gone
    np.testing.assert_allclose(g.vectors(keep), x[keep] / np.linalg.norm(x[keep], axis=1, keepdims=True),
                               atol=1e-6)
    q = _queries(9, 25, x.shape[1])
    ids, _ = hit_arrays(g.search(q, 50))
    np.testing.assert_array_equal(ids, brute_topk(x[keep], keep, q, 50)[0])


def test_delete_unknown_identities_lists_them_and_changes_nothing(toy_embeddings):
    x, records = toy_embeddings(10)
    g = Gallery.build(x, records, model_fingerprint="m")
    with pytest.raises(ValueError, match=r"\['nobody', 'zed'\]"):
        g.delete_identities(["id0001", "zed", "nobody"])
    assert len(g) == len(records) and g.delete_identities([]) == 0


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_deleted_vectors_are_absent_from_saved_file(toy_embeddings, tmp_path, kind):
    x, records = toy_embeddings(11)
    g = Gallery.build(x, records, model_fingerprint="m", kind=kind)
    gone = [i for i, r in enumerate(records) if r.identity == "id0005"]
    stored = g.vectors(gone)
    blob_before = (g.save(tmp_path) / "index.faiss").read_bytes()
    assert all(v.tobytes() in blob_before for v in stored)
    g.delete_identities(["id0005"])
    blob = (g.save(tmp_path) / "index.faiss").read_bytes()
    assert not any(v.tobytes() in blob for v in stored)


def test_delete_everyone_then_search_and_roundtrip(toy_embeddings, tmp_path):
    x, records = toy_embeddings(12, n_ids=3)
    g = Gallery.build(x, records, model_fingerprint="m", kind="ivf")
    assert g.delete_identities(g.identities) == len(records)
    g.save(tmp_path)
    assert Gallery.load(tmp_path).search(x[:2], 5) == [[], []]


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_save_load_roundtrip(toy_embeddings, tmp_path, kind):
    x, records = toy_embeddings(13)
    g = Gallery.build(x, records, model_fingerprint="dlib:abc", kind=kind, nprobe=3, root="/data/faces")
    g.delete_identities(["id0002"])
    assert g.save(tmp_path).name == "v000001"
    back = Gallery.load(tmp_path, model_fingerprint="dlib:abc")
    assert (back.rows, back.kind, back.nprobe, back.root, back.dim) == (g.rows, kind, 3, "/data/faces", 16)
    q = _queries(14, 12, x.shape[1])
    assert back.search(q, 7) == g.search(q, 7)
    meta = json.loads((tmp_path / "v000001" / "metadata.json").read_text())
    assert meta["count"] == len(g) and meta["format"] == "faceforget-gallery-v1"
    assert back.save(tmp_path).name == "v000002"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".lock") == ["CURRENT", "v000002"]


def test_load_rejects_other_model(toy_embeddings, tmp_path):
    x, records = toy_embeddings(15)
    Gallery.build(x, records, model_fingerprint="old").save(tmp_path)
    with pytest.raises(ValueError, match=r"\(fingerprint old\), not with the given model \(fingerprint new\): "
                       "search it with the model it was built with, or rebuild"):
        Gallery.load(tmp_path, model_fingerprint="new")


def test_other_model_error_names_the_model_to_pass(toy_embeddings, tmp_path):
    x, records = toy_embeddings(15)
    Gallery.build(x, records, model_fingerprint="old", model="demo/run/model.pt").save(tmp_path)
    assert Gallery.load(tmp_path).model == "demo/run/model.pt"
    with pytest.raises(ValueError, match="built with model demo/run/model.pt .*: search it with --model "
                       "demo/run/model.pt, or rebuild"):
        Gallery.load(tmp_path, model_fingerprint="new")


def _flip_byte(path, offset=-100):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _set_meta(path, **fields):
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, **fields}))


def test_corrupt_or_missing_gallery_gives_clear_errors(toy_embeddings, tmp_path):
    x, records = toy_embeddings(16)
    version = Gallery.build(x, records, model_fingerprint="m").save(tmp_path / "g")
    index, meta = version / "index.faiss", version / "metadata.json"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Gallery.load(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no CURRENT"):
        Gallery.load(tmp_path)
    _flip_byte(index)
    with pytest.raises(ValueError, match="corrupt: sha256"):
        Gallery.load(tmp_path / "g")
    index.write_bytes(b"not an index")
    _set_meta(meta, index_sha256=gallery_mod.sha256_file(index))
    with pytest.raises(ValueError, match="not a readable FAISS index"):
        Gallery.load(tmp_path / "g")
    meta.write_text('{"format": "faceforget-gallery-v1", "rows": [')
    with pytest.raises(ValueError, match="not valid JSON"):
        Gallery.load(tmp_path / "g")
    (tmp_path / "g" / "CURRENT").write_text("v000009\n")
    with pytest.raises(FileNotFoundError, match="v000009"):
        Gallery.load(tmp_path / "g")


def test_metadata_row_missing_a_field_is_named_and_nothing_changes(toy_embeddings, tmp_path):
    x, records = toy_embeddings(21)
    version = Gallery.build(x, records, model_fingerprint="m").save(tmp_path)
    meta = json.loads((version / "metadata.json").read_text())
    del meta["rows"][3]["identity"]
    meta["rows"][5]["extra"] = 1
    (version / "metadata.json").write_text(json.dumps(meta))
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir() if p.name != ".lock"}
    with pytest.raises(ValueError, match=r"metadata.json: row 3 is malformed: 'identity' missing or not str$"):
        Gallery.load(tmp_path)
    with pytest.raises(ValueError, match="row 3 is malformed"):
        gallery_mod.delete_saved(tmp_path, ["id0001"])
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir() if p.name != ".lock"} == before
    del meta["rows"][3]
    (version / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="row 4 is malformed: unknown field 'extra'"):
        gallery_mod._read_metadata(version / "metadata.json")


def test_dimension_mismatch_is_reported(toy_embeddings, tmp_path):
    x, records = toy_embeddings(17)
    version = Gallery.build(x, records, model_fingerprint="m").save(tmp_path)
    _set_meta(version / "metadata.json", dim=128)
    with pytest.raises(ValueError, match="dim 16 .* metadata says dim 128"):
        Gallery.load(tmp_path)
    with pytest.raises(ValueError, match=r"shape \(n, 16\)"):
        Gallery.build(x, records, model_fingerprint="m").search(x[:, :8], 3)


def test_crash_while_saving_keeps_previous_version(toy_embeddings, tmp_path, monkeypatch):
    x, records = toy_embeddings(18)
    g = Gallery.build(x, records, model_fingerprint="m")
    g.save(tmp_path)
    q = _queries(19, 5, x.shape[1])
    before = Gallery.load(tmp_path).search(q, 10)

    def crash(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr(gallery_mod, "write_json_atomic", crash)
    g.delete_identities(["id0000"])
    with pytest.raises(OSError, match="disk full"):
        g.save(tmp_path)
    assert (tmp_path / "v000002" / "index.faiss").is_file()  # half-written, never made live
    assert Gallery.load(tmp_path).search(q, 10) == before
    monkeypatch.undo()
    assert g.save(tmp_path).name == "v000003"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".lock") == ["CURRENT", "v000003"]


def test_leftovers_of_a_killed_save_go_at_the_next_save(toy_embeddings, tmp_path):
    x, records = toy_embeddings(22)
    g = Gallery.build(x, records, model_fingerprint="m")
    g.save(tmp_path)
    (tmp_path / ".CURRENT.k3j_x9.tmp").write_text("v000002\n")  # killed while switching CURRENT
    (tmp_path / "v000002").mkdir()  # and while writing its version
    (tmp_path / "v000002" / ".index.faiss.a1b2.tmp").write_bytes(b"half")
    assert Gallery.load(tmp_path).rows == g.rows  # readers never see them
    assert g.save(tmp_path).name == "v000003"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".lock") == ["CURRENT", "v000003"]


@pytest.mark.parametrize("bad", [
    {"kind": "annoy"}, {"model_fingerprint": ""}, {"nprobe": 0}, {"ids": [0] * 160},
    {"embeddings": np.zeros((160, 16))}, {"embeddings": np.full((160, 16), np.nan)},
    {"embeddings": np.ones((159, 16))},
])
def test_build_rejects_bad_input(toy_embeddings, bad):
    x, records = toy_embeddings(20)
    args = {"embeddings": x, "records": records, "model_fingerprint": "m"} | bad
    with pytest.raises(ValueError):
        Gallery.build(args.pop("embeddings"), args.pop("records"), **args)

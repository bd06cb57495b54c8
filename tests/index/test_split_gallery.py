"""A split's gallery on hand-placed embeddings: which rows it holds, forget top-1 by hand, rebuild in place."""
from __future__ import annotations

import numpy as np
import pytest

from faceforget.data.records import FaceRecord, SplitManifest
from faceforget.index.gallery import Gallery
from faceforget.index.split_gallery import forget_top1, rebuild_with, split_gallery

E = np.eye(4, dtype=np.float32)
# (path, identity, role, embedding); train photos must stay out of the gallery
ROWS = [
    ("fa/0.jpg", "fa", "forget_test", E[0]), ("fa/1.jpg", "fa", "forget_test", E[0] + 0.1 * E[1]),
    ("fa/2.jpg", "fa", "forget_train", E[0]),
    ("fb/0.jpg", "fb", "forget_test", E[1]), ("fb/1.jpg", "fb", "forget_test", E[2]),
    ("r/0.jpg", "r", "retain_test", E[1] + 0.2 * E[3]), ("r/1.jpg", "r", "retain_test", E[2] + 0.2 * E[3]),
    ("r/2.jpg", "r", "retain_train", E[3]), ("d/0.jpg", "d", "distractor", -E[0]),
]


@pytest.fixture
def manifest() -> SplitManifest:
    records = [FaceRecord(p, i, role, f"{k:064x}", "distractors" if role == "distractor" else "data")
               for k, (p, i, role, _) in enumerate(ROWS)]
    return SplitManifest.from_records(records, {}, "/data", "/distractors")


EMB = np.stack([e for *_, e in ROWS])


def test_gallery_holds_the_held_out_and_distractor_rows(manifest):
    gallery = split_gallery(manifest, EMB, "m0")
    expected = [(("/distractors/" if role == "distractor" else "/data/") + p, i)
                for p, i, role, _ in ROWS if not role.endswith("_train")]
    assert [(r.path, r.identity) for r in gallery.rows] == expected
    with pytest.raises(ValueError, match="embeddings for"):
        split_gallery(manifest, EMB[:3], "m0")


def test_forget_top1_leaves_the_query_out(manifest):
    # fa/0 and fa/1 find each other; fb/0's nearest is r/0 and fb/1's is r/1 (fb's photos are orthogonal)
    result = forget_top1(split_gallery(manifest, EMB, "m0"), manifest, EMB)
    assert result == {"gallery_rows": 7, "forget_queries": 4, "forget_top1_same_identity": 0.5}


def test_rebuild_with_swaps_in_new_embeddings_of_the_same_rows(manifest, tmp_path):
    split_gallery(manifest, EMB, "m0").save(tmp_path / "g")
    after = EMB.copy()
    after[0], after[1] = E[1], E[3]  # fa/0 moves onto fb/0, fa/1 away from every photo of fa
    rebuilt = rebuild_with(tmp_path / "g", manifest, after, "m1")
    assert rebuilt.model_fingerprint == "m1" and Gallery.load(tmp_path / "g").model_fingerprint == "m1"
    held = [k for k, (_, _, role, _) in enumerate(ROWS) if not role.endswith("_train")]
    want = after[held] / np.linalg.norm(after[held], axis=1, keepdims=True)
    np.testing.assert_allclose(rebuilt.vectors([r.id for r in rebuilt.rows]), want, atol=1e-6)
    # fa/0 (= e1) finds fb/0, fa/1 (= e3) finds r/0 or r/1, fb/0 finds fa/0, fb/1 finds r/1: none same
    assert forget_top1(rebuilt, manifest, after)["forget_top1_same_identity"] == 0.0

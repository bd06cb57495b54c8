"""The retrieval protocol on a hand-made split of 2-D embeddings, every expected value worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from faceforget.data.records import FaceRecord, SplitManifest
from faceforget.eval.protocol import evaluate_embeddings, summary_scores

# (path, identity, role, angle in degrees of the unit 2-D embedding)
PHOTOS = [
    ("f/0", "f", "forget_train", 10), ("f/1", "f", "forget_train", 50),
    ("f/2", "f", "forget_test", 0), ("f/3", "f", "forget_test", 40),
    ("r/0", "r", "retain_train", 120), ("r/1", "r", "retain_train", 125),
    ("r/2", "r", "retain_test", 100), ("r/3", "r", "retain_test", 105),
    ("s/0", "s", "retain_train", 230),
    ("s/1", "s", "retain_test", 200), ("s/2", "s", "retain_test", 305),
    ("d/0", "d", "distractor", 345),
]


def cos(degrees: float) -> float:
    return math.cos(math.radians(degrees))


def manifest() -> SplitManifest:
    records = [FaceRecord(p, i, role, f"{k:064x}", "distractors" if role == "distractor" else "data")
               for k, (p, i, role, _) in enumerate(PHOTOS)]
    return SplitManifest.from_records(records, {}, "/data", "/distractors")


def embeddings() -> np.ndarray:
    angles = np.radians([a for *_, a in PHOTOS])
    return 3.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)  # not unit length: the protocol normalises


@pytest.fixture(scope="module")
def result() -> dict:
    return evaluate_embeddings(embeddings(), manifest())


def test_held_out_forget_queries_search_test_photos_and_distractors_leaving_themselves_out(result):
    forget = result["forget"]
    # gallery: f/2 f/3 r/2 r/3 s/1 s/2 d/0. f/2 (0 deg) meets d/0 (15 deg away) before f/3 (40): rank 2, AP 1/2;
    # f/3 (40) meets f/2 (40 away) before d/0 (55) and r/2 (60): rank 1, AP 1.
    assert forget["n_gallery"] == 7 and forget["n_queries"] == 2 and forget["n_no_relevant"] == 0
    assert (forget["R@1"], forget["R@5"], forget["R@10"]) == (0.5, 1.0, 1.0)
    assert forget["mAP"] == pytest.approx(0.75) and forget["mAP@R"] == pytest.approx(0.5)
    assert forget["chance"]["R@1"] == pytest.approx(1 / 6)  # one relevant item among the 6 others
    assert forget["CS"] == pytest.approx(cos(20))  # both 20 deg from their centroid at 20 deg


def test_request_groups_query_their_identities_like_forget(result):
    # request 1 is f (the group equals "forget", worked out above); request 2 names an identity without photos
    grouped = evaluate_embeddings(embeddings(), manifest(), requests=[["f"], ["nobody"]])
    first = grouped["forget_request1"]
    assert (first["n_queries"], first["R@1"], first["n_gallery"]) == (2, 0.5, 7)
    assert first["mAP"] == pytest.approx(0.75)
    assert grouped["forget_request2"] == {"n_queries": 0}
    assert "forget_request1" not in result


def test_held_out_retain_queries(result):
    retain = result["retain"]
    # r/2 and r/3 are 5 deg apart: rank 1 each. s/1 (200) meets r/3 (95 away), r/2 (100), then s/2 (105): rank 3.
    # s/2 (305) meets d/0 (40), f/2 (55), f/3 (95), then s/1 (105): rank 4.
    assert retain["n_gallery"] == 7 and retain["n_queries"] == 4
    assert (retain["R@1"], retain["R@5"]) == (0.5, 1.0)
    assert retain["mAP"] == pytest.approx((1 + 1 + 1 / 3 + 1 / 4) / 4)
    assert retain["CS"] == pytest.approx((cos(2.5) + cos(52.5)) / 2)


def test_verification_uses_retain_test_pairs_only(result):
    retain = result["retain"]
    # retain impostor pairs: r/2-s/1 100 deg, r/3-s/1 95, r/2-s/2 155, r/3-s/2 160: the threshold at FAR 1e-3 (no
    # impostor above) is cos 95. Genuine: r/2-r/3 (5 deg) is accepted, s/1-s/2 (105 deg) is not. Were forget
    # photos included, f/3-r/2 (60 deg) would lift the threshold to cos 60.
    assert retain["threshold@FAR=0.001"] == pytest.approx(cos(95), abs=1e-6)
    assert retain["TAR@FAR=0.001"] == 0.5 and retain["TAR@FAR=0.0001"] == 0.5
    assert not any(k.startswith("TAR@") for k in result["forget"])


def test_seen_groups_search_the_train_pool_only(result):
    seen = result["forget_seen"]
    # gallery: f/0 f/1 r/0 r/1 s/0. f/0 (10) and f/1 (50) find each other first; the distractor (25 deg from
    # f/0) and the test photos are not in this gallery.
    assert seen["n_gallery"] == 5 and (seen["n_queries"], seen["R@1"], seen["mAP"]) == (2, 1.0, 1.0)
    retain_seen = result["retain_seen"]
    # s/0 is s's only train photo: no relevant item, left out of the averages and counted
    assert (retain_seen["n_queries"], retain_seen["n_no_relevant"], retain_seen["R@1"]) == (2, 1, 1.0)


def test_summary_scores_from_before_and_after():
    before = {"forget": {"mAP": 0.9}, "retain": {"mAP": 0.8}}
    after = {"forget": {"mAP": 0.3, "chance": {"mAP": 0.1}}, "retain": {"mAP": 0.6}}
    scores = summary_scores(before, after)  # E = 0.6 / 0.8, U = 0.6 / 0.8, H = 2EU / (E + U)
    assert scores == pytest.approx({"E": 0.75, "U": 0.75, "H": 0.75})
    assert summary_scores(before, after | {"forget": {"mAP": 0.95, "chance": {"mAP": 0.1}}})["E"] == 0.0

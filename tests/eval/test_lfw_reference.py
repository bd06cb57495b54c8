"""The original dlib model on real LFW chips reproduces the dataset README's figures (LFW: research use only)."""
import numpy as np
import pytest

from faceforget.data.folders import scan_folder
from faceforget.eval import metrics
from faceforget.eval.embed import embed_records
from faceforget.models.registry import load_model


@pytest.mark.lfw
def test_dlib_leave_one_out_matches_published_figures(lfw_root):
    """Every dlib150 image queries all the others: top-1 0.990, mAP 0.958 (README of the data) within 0.005."""
    root = lfw_root / "dlib150"
    records = scan_folder(root)
    assert len(records) == 5985
    emb = embed_records(load_model("dlib"), records, root, progress=False).embeddings
    labels = np.array([r.identity for r in records])
    qm = metrics.rank_queries(emb, labels, emb, labels, exclude=np.arange(len(records)))
    summary = metrics.summarise(qm)
    assert summary["R@1"] == pytest.approx(0.990, abs=0.005)
    assert summary["mAP"] == pytest.approx(0.958, abs=0.005)

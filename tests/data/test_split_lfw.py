"""The protocol on the prepared LFW chips (opt-in: FACEFORGET_DATA=/work/shared/datasets/lfw)."""
from __future__ import annotations

from faceforget.data.folders import scan_folder
from faceforget.data.split import load_split, make_split


def test_lfw_k10_split_with_distractors(lfw_root, tmp_path):
    data, distractors = lfw_root / "dlib150", lfw_root / "distractors_dlib150"
    manifest, report = make_split(scan_folder(data), data_root=data, forget=10, seed=0,
                                  distractor_records=scan_folder(distractors), distractor_root=distractors,
                                  progress=False)
    manifest.save(tmp_path / "split.json")
    assert load_split(tmp_path / "split.json", data, progress=False).hash == manifest.hash
    p = manifest.params
    assert p["identities"] == {"forget": 10, "retain": 413, "distractor": 5326}
    assert p["counts"]["distractor"] == 7248 and len(manifest.records) == 5985 + 7248
    assert sum(p["counts"][r] for r in ("forget_train", "forget_test", "retain_train", "retain_test")) == 5985
    assert report.bad_files == () and report.duplicates == () and report.dropped_identities == ()

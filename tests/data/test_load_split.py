"""load_split: the manifest must match the dataset it is used with, file by file."""
from __future__ import annotations

import shutil

import pytest

from faceforget.data.errors import DataError, DatasetMismatchError
from faceforget.data.folders import scan_folder
from faceforget.data.split import load_split, make_split


@pytest.fixture
def saved(toy_dataset, toy_distractors, tmp_path):
    manifest, _ = make_split(scan_folder(toy_dataset), data_root=toy_dataset, forget=2, progress=False,
                             distractor_records=scan_folder(toy_distractors), distractor_root=toy_distractors)
    manifest.save(tmp_path / "split.json")
    return manifest, tmp_path / "split.json"


def test_roundtrip_and_stored_roots(saved, toy_dataset):
    manifest, path = saved
    loaded = load_split(path, toy_dataset, progress=False)
    assert loaded == manifest and loaded.hash == manifest.hash
    assert load_split(path, progress=False) == manifest


def test_other_root_with_same_files_verifies(saved, toy_dataset, toy_distractors, tmp_path):
    manifest, path = saved
    copy = shutil.copytree(toy_dataset, tmp_path / "copy")
    loaded = load_split(path, copy, progress=False)
    assert loaded.hash == manifest.hash and loaded.data_root == str(copy.absolute())
    assert loaded.distractor_root == str(toy_distractors.absolute())


def test_another_dataset_is_detected(saved, toy_dataset, tmp_path, make_tree, toy_counts):
    _, path = saved
    other = make_tree(tmp_path / "other", toy_counts, seed=5)
    n = len(scan_folder(toy_dataset))
    n_used = n - 7  # grace (3) and heidi (4) are not in the split
    with pytest.raises(DatasetMismatchError, match=f"another dataset: {n_used} of {n_used + 7} files differ"):
        load_split(path, other, progress=False)
    (toy_dataset / "bob" / "bob_0001.jpg").unlink()
    with pytest.raises(DatasetMismatchError, match=r"1 of \d+ files differ, e.g. .*bob_0001.jpg \(file not"):
        load_split(path, toy_dataset, progress=False)
    assert load_split(path, toy_dataset, verify=False, progress=False).hash


def test_edited_or_rootless_manifest(saved, toy_dataset, tmp_path):
    manifest, path = saved
    path.write_text(path.read_text().replace('"seed": 0', '"seed": 1'))
    with pytest.raises(ValueError, match="hash mismatch"):
        load_split(path, toy_dataset, progress=False)
    bare = tmp_path / "bare.json"
    type(manifest).from_records(manifest.records, manifest.params, "", None).save(bare)
    with pytest.raises(DataError, match="no data root"):
        load_split(bare, progress=False)
    with pytest.raises(DataError, match="no distractor root"):
        load_split(bare, toy_dataset, progress=False)

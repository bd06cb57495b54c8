"""scan_folder, read_csv_manifest and read_records: layouts, ordering and errors."""
from __future__ import annotations

import os

import pytest

from faceforget.data.csv_manifest import read_csv_manifest
from faceforget.data.errors import DataError
from faceforget.data.folders import scan_folder
from faceforget.data.sources import read_records


def test_scan_sorted_images_only(toy_dataset, toy_counts):
    records = scan_folder(toy_dataset)
    assert [r.identity for r in records] == sorted(r.identity for r in records)
    assert {r.identity: 0 for r in records}.keys() == toy_counts.keys()
    for identity, n in toy_counts.items():
        paths = [r.path for r in records if r.identity == identity]
        assert len(paths) == n and paths == sorted(paths)
        assert all(p.startswith(f"{identity}/") and not p.endswith(".txt") for p in paths)
    assert not any(".hidden" in r.path for r in records)
    assert scan_folder(toy_dataset) == records


def test_scan_errors(tmp_path, toy_dataset, toy_counts, write_face):
    with pytest.raises(DataError, match="not found"):
        scan_folder(tmp_path / "nope")
    (tmp_path / "flat").mkdir()
    write_face(tmp_path / "flat" / "a.jpg", 1)
    with pytest.raises(DataError, match="no identity folders"):
        scan_folder(tmp_path / "flat")
    (toy_dataset / "mallory").mkdir()
    (toy_dataset / "oscar").mkdir()
    (toy_dataset / "oscar" / "x.txt").write_text("x")
    with pytest.raises(DataError, match="2 identity folder.*mallory, oscar"):
        scan_folder(toy_dataset)
    assert {r.identity for r in scan_folder(toy_dataset, allow_empty=True)} == toy_counts.keys()


@pytest.mark.skipif(os.name == "nt", reason="symlinks")
def test_scan_follows_symlinks_without_cycles(tmp_path, make_tree):
    real = make_tree(tmp_path / "real", {"ann": 2})
    root = make_tree(tmp_path / "root", {"bo": 3})
    (root / "ann").symlink_to(real / "ann", target_is_directory=True)
    (root / "bo" / "loop").symlink_to(root / "bo", target_is_directory=True)
    (root / "bo" / "gone.jpg").symlink_to(tmp_path / "does_not_exist.jpg")
    records = scan_folder(root)
    assert [r.path for r in records] == ["ann/ann_0000.jpg", "ann/ann_0001.jpg", "bo/bo_0000.jpg",
                                         "bo/bo_0001.jpg", "bo/bo_0002.png", "bo/gone.jpg"]


def test_csv_manifest(tmp_path, make_tree):
    root = make_tree(tmp_path / "d", {"ann": 2, "bo": 1})
    outside = make_tree(tmp_path / "elsewhere", {"cy": 1})
    csv_path = root / "list.csv"
    csv_path.write_text("identity,path,extra\nann,ann/ann_0000.jpg,1\nann," + str(root / "ann/ann_0001.jpg")
                        + ",2\nbo,./bo/bo_0000.jpg,3\ncy," + str(outside / "cy/cy_0000.jpg") + ",4\n")
    records, csv_root = read_csv_manifest(csv_path)
    assert csv_root == root.absolute()
    assert [(r.path, r.identity) for r in records] == [
        ("ann/ann_0000.jpg", "ann"), ("ann/ann_0001.jpg", "ann"), ("bo/bo_0000.jpg", "bo"),
        (str(outside / "cy/cy_0000.jpg"), "cy")]
    assert all(r.resolve(csv_root).is_file() for r in records)
    assert read_records(csv_path) == (csv_root, records)


def test_csv_errors(tmp_path):
    bad_cols = tmp_path / "a.csv"
    bad_cols.write_text("file,label\nx.jpg,a\n")
    with pytest.raises(DataError, match=r"missing column.*\['path', 'identity'\]"):
        read_csv_manifest(bad_cols)
    missing = tmp_path / "b.csv"
    missing.write_text("path,identity\n" + "".join(f"m{k}.jpg,a\n" for k in range(8)))
    with pytest.raises(DataError, match=r"8 of 8 listed files not found.*m0.jpg, m1.jpg.*\(and 3 more\)"):
        read_csv_manifest(missing)


def test_read_records_dispatch(tmp_path, toy_dataset):
    root, records = read_records(toy_dataset)
    assert root == toy_dataset.absolute() and records == scan_folder(toy_dataset)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataError, match="unsupported"):
        read_records(tmp_path / "x.json")
    with pytest.raises(DataError, match="not found"):
        read_records(tmp_path / "nothing")

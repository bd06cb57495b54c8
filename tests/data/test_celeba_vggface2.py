"""CelebA and VGGFace2 readers on generated fixtures in their own layouts, truncated and malformed files included."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceforget.data.celeba import read_celeba, read_celeba_landmarks
from faceforget.data.errors import DataError
from faceforget.data.sources import read_records
from faceforget.data.vggface2 import read_vggface2, read_vggface2_landmarks

CELEBA_IDS = {"000001.jpg": 2880, "000002.jpg": 2937, "000003.jpg": 2880, "000004.jpg": 8692}
MARKS = {"000001.jpg": [69, 109, 106, 113, 77, 142, 73, 152, 108, 154],
         "000002.jpg": [69, 110, 107, 112, 81, 135, 70, 151, 108, 153],
         "000003.jpg": [76, 112, 104, 106, 108, 128, 74, 156, 98, 158],
         "000004.jpg": [72, 113, 108, 108, 101, 138, 71, 155, 101, 151]}


@pytest.fixture
def celeba(tmp_path: Path, write_face) -> Path:
    root = tmp_path / "celeba"
    for k, name in enumerate(CELEBA_IDS):
        write_face(root / "img_align_celeba" / name, k, size=(218, 178))
    (root / "identity_CelebA.txt").write_text("".join(f"{n} {i}\n" for n, i in CELEBA_IDS.items()))
    rows = "".join(f"{n}  " + " ".join(f"{v:4d}" for v in m) + "\n" for n, m in MARKS.items())
    (root / "list_landmarks_align_celeba.txt").write_text(
        "4\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x "
        "rightmouth_y\n" + rows)
    return root


def test_celeba_records_and_landmarks(celeba: Path) -> None:
    root, records = read_records(celeba)
    assert root == celeba.absolute()
    assert [(r.path, r.identity) for r in records] == [(f"img_align_celeba/{n}", str(i)) for n, i in CELEBA_IDS.items()]
    marks = read_celeba_landmarks(celeba)
    np.testing.assert_array_equal(marks["img_align_celeba/000003.jpg"], [[76, 112], [104, 106], [108, 128],
                                                                         [74, 156], [98, 158]])


def test_celeba_truncated_and_bad_files(celeba: Path) -> None:
    ids = celeba / "identity_CelebA.txt"
    ids.write_text(ids.read_text() + "000005.jp")  # a download cut mid-line
    with pytest.raises(DataError, match=r"identity_CelebA.txt: line 5 is '000005.jp', expected '<image> <identity"):
        read_celeba(celeba)
    ids.write_text("000001.jpg 1\n000009.jpg 2\n")
    with pytest.raises(DataError, match=r"1 of 2 listed images not found .*img_align_celeba/000009.jpg"):
        read_celeba(celeba)
    ids.write_text("000001.jpg 1\n000001.jpg 2\n")
    with pytest.raises(DataError, match="line 2 lists 000001.jpg a second time"):
        read_celeba(celeba)
    lm = celeba / "list_landmarks_align_celeba.txt"
    lines = lm.read_text().splitlines()
    lm.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match="declares 4 rows but has 3"):
        read_celeba_landmarks(celeba)
    lm.write_text("\n".join(lines[:3] + ["000004.jpg 72 113 108"]) + "\n")
    with pytest.raises(DataError, match="line 4 is '000004.jpg 72 113 108', expected an image name and 10 numbers"):
        read_celeba_landmarks(celeba)


@pytest.fixture
def vggface2(tmp_path: Path, write_face) -> Path:
    root = tmp_path / "vggface2"
    files = {"train": {"n000002": ["0001_01", "0002_01"], "n000003": ["0001_02"]}, "test": {"n000001": ["0005_01"]}}
    seed = 0
    for split, ids in files.items():
        rows = ["NAME_ID,P1X,P1Y,P2X,P2Y,P3X,P3Y,P4X,P4Y,P5X,P5Y"]
        for identity, names in ids.items():
            for name in names:
                seed += 1
                write_face(root / split / identity / f"{name}.jpg", seed, size=(60, 50))
                rows.append(f'"{identity}/{name}",' + ",".join(f"{seed + v / 4:.2f}" for v in range(10)))
        (root / "bb_landmark").mkdir(parents=True, exist_ok=True)
        (root / "bb_landmark" / f"loose_landmark_{split}.csv").write_text("\n".join(rows) + "\n")
    return root


def test_vggface2_records_and_landmarks(vggface2: Path) -> None:
    root, records = read_records(vggface2)
    assert [(r.path, r.identity) for r in records] == [
        ("train/n000002/0001_01.jpg", "n000002"), ("train/n000002/0002_01.jpg", "n000002"),
        ("train/n000003/0001_02.jpg", "n000003"), ("test/n000001/0005_01.jpg", "n000001")]
    marks = read_vggface2_landmarks(vggface2)
    assert set(marks) == {r.path for r in records}
    np.testing.assert_allclose(marks["train/n000003/0001_02.jpg"], 3 + np.arange(10).reshape(5, 2) / 4)


def test_vggface2_bad_landmark_files(vggface2: Path) -> None:
    csv = vggface2 / "bb_landmark" / "loose_landmark_train.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(lines[:2] + [lines[2][:25]]) + "\n")  # truncated row
    with pytest.raises(DataError, match=r"loose_landmark_train.csv: line 3 is .* expected NAME_ID and 10 numbers"):
        read_vggface2_landmarks(vggface2)
    csv.write_text("NAME_ID,X,Y\n")
    with pytest.raises(DataError, match="columns \\['NAME_ID', 'X', 'Y'\\], expected"):
        read_vggface2_landmarks(vggface2)
    csv.unlink()
    with pytest.raises(DataError, match="VGGFace2 landmarks not found"):
        read_vggface2_landmarks(vggface2)
    assert len(read_vggface2(vggface2)) == 4  # the images themselves do not need the landmarks

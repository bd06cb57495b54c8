"""Non-face queries: the calibrated null-direction score (hand-made vectors) and, on LFW, the real dlib model."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from faceforget.data.records import FaceRecord
from faceforget.index.gallery import Gallery, delete_saved
from faceforget.index.query_quality import NonFaceCheck, QueryQuality, null_images


def _unit(angles_deg: list[float]) -> np.ndarray:
    """2-D unit vectors at the given angles from the x axis (the null direction below)."""
    a = np.deg2rad(angles_deg)
    return np.stack([np.cos(a), np.sin(a)], 1).astype(np.float32)


def test_threshold_lies_midway_between_faces_and_null_images():
    null = _unit([-10, 0, 10])  # mean direction: the x axis; lowest null cosine cos(10 deg)
    faces = _unit([60, 70, 80, 90])
    check = NonFaceCheck.fit(null, faces)
    np.testing.assert_allclose(check.direction, [1, 0], atol=1e-6)
    # linear quantile 0.999 of the sorted cosines [0, .1736, .3420, .5]: position 2.997
    face_high = 0.342020 + 0.997 * (0.5 - 0.342020)
    assert check.null_min == pytest.approx(np.cos(np.deg2rad(10)), abs=1e-6)
    assert check.face_high == pytest.approx(face_high, abs=1e-5)
    assert check.threshold == pytest.approx((np.cos(np.deg2rad(10)) + face_high) / 2, abs=1e-5)
    scores = check.scores(_unit([0, 40, 45, 70]))  # cos 1, .766, .707, .342 against threshold .741
    assert [QueryQuality(float(s), check.threshold).probably_not_face for s in scores] == [True, True, False, False]
    refit = check.refit(_unit([80, 90]))  # the 60 and 70 degree rows were deleted: position 0.999 of [0, .1736]
    assert refit.face_high == pytest.approx(0.999 * np.cos(np.deg2rad(80)), abs=1e-5)
    back = NonFaceCheck.from_dict(check.to_dict(), "meta", 2)
    assert (back.null_min, back.face_high) == pytest.approx((check.null_min, check.face_high))
    np.testing.assert_allclose(back.direction, check.direction)


def test_inseparable_model_flags_only_beyond_the_faces():
    check = NonFaceCheck.fit(_unit([-20, 20]), _unit([0, 5]))  # the faces sit nearer the null direction
    assert check.null_min < check.face_high and check.threshold == check.face_high


def test_warning_names_each_reason():
    q = QueryQuality(0.97, 0.937, False)
    assert q.probably_not_face
    assert q.warning() == ("probably not a face: dlib's face detector finds no face; its embedding is 0.970 similar "
                           "to the model's answer to blank and noise images (this gallery's faces: <= 0.937); "
                           "its matches mean nothing")
    assert QueryQuality(0.90, 0.937, True).warning() is None and QueryQuality().warning() is None


def test_calibration_is_saved_and_follows_deletes(tmp_path):
    faces = _unit([60, 70, 80, 90])
    records = [FaceRecord(f"p{i}/0.jpg", f"p{i}") for i in range(4)]
    g = Gallery.build(faces, records, model_fingerprint="m", null_embeddings=3 * _unit([-10, 0, 10]))
    g.save(tmp_path)
    assert Gallery.load(tmp_path).nonface.face_high == pytest.approx(g.nonface.face_high)
    delete_saved(tmp_path, ["p0", "p1"])
    assert Gallery.load(tmp_path).nonface.face_high == pytest.approx(0.999 * np.cos(np.deg2rad(80)), abs=1e-5)
    np.testing.assert_allclose(Gallery.load(tmp_path).nonface_scores(_unit([0]) * 5), [1.0], atol=1e-6)
    with pytest.raises(ValueError, match="nonface direction has shape"):
        NonFaceCheck.from_dict({"direction": [1, 0, 0], "null_min": 1, "face_high": 0}, "meta.json", 2)


def test_null_images_are_blank_and_noise():
    imgs = null_images((12, 10), n_noise=2)
    assert imgs.shape == (9, 12, 10, 3) and imgs.dtype == np.uint8
    assert [int(imgs[i].min()) == int(imgs[i].max()) for i in range(9)] == [True] * 5 + [False] * 4


@pytest.mark.lfw
def test_lfw_black_and_noise_queries_are_flagged_real_faces_are_not(lfw_root, tmp_path):
    from faceforget import api

    people = sorted(p for p in (lfw_root / "dlib150").iterdir())[:8]
    data = tmp_path / "gallery_faces"
    for person in people:
        (data / person.name).mkdir(parents=True)
        for chip in sorted(person.iterdir())[:3]:
            (data / person.name / chip.name).symlink_to(chip)
    api.index_build("dlib", data, tmp_path / "g", progress=False)
    strangers = [next(iter(sorted(d.iterdir()))) for d in sorted((lfw_root / "distractors_dlib150").iterdir())[:4]]
    rng = np.random.default_rng(0)
    odd = {"black": np.zeros((150, 150, 3)), "noise": rng.integers(0, 256, (150, 150, 3)),
           "gradient": np.repeat(np.linspace(0, 255, 150)[None, :, None], 150, 0).repeat(3, 2)}
    for name, pixels in odd.items():
        Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / f"{name}.png")
    results = api.index_search(tmp_path / "g", "dlib", [*strangers, *(tmp_path / f"{n}.png" for n in odd)], k=3)
    flags = [r.quality.probably_not_face for r in results]
    assert flags == [False] * len(strangers) + [True] * len(odd)
    for r in results[len(strangers):]:
        assert r.hits[0].score > 0.85  # what made these dangerous: confident-looking matches
        assert r.quality.nonface_score > r.quality.threshold and r.quality.face_detected is False

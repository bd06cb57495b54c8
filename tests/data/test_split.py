"""make_split: determinism, roles, counts, filtering, forget choice, distractors, bad and duplicate files."""
from __future__ import annotations

import random
import shutil

import pytest

from faceforget.data.errors import BadImageError, DataError, DuplicateImageError
from faceforget.data.folders import scan_folder
from faceforget.data.records import ROLES
from faceforget.data.split import make_split


def split(root, distractors=None, **kwargs):
    kwargs.setdefault("forget", 2)
    extra = {} if distractors is None else {"distractor_records": scan_folder(distractors),
                                            "distractor_root": distractors}
    return make_split(scan_folder(root), data_root=root, progress=False, **extra, **kwargs)


def test_same_seed_same_bytes_other_seed_differs(toy_dataset, tmp_path):
    a, _ = split(toy_dataset, seed=3)
    records = scan_folder(toy_dataset)
    random.Random(0).shuffle(records)
    b, _ = make_split(records, data_root=toy_dataset, forget=2, seed=3, progress=False)
    assert a.to_json() == b.to_json()
    a.save(tmp_path / "a.json")
    b.save(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    c, _ = split(toy_dataset, seed=4)
    assert c.hash != a.hash and c.to_json() != a.to_json()
    copy = shutil.copytree(toy_dataset, tmp_path / "copy")
    assert split(copy, seed=3)[0].hash == a.hash  # roots are not part of the hash


def test_roles_counts_and_params(toy_dataset, toy_counts):
    manifest, report = split(toy_dataset, forget=2, seed=0, min_images=5)
    kept = {i for i, n in toy_counts.items() if n >= 5}
    assert set(manifest.forget_identities) | set(manifest.retain_identities) == kept
    assert len(manifest.forget_identities) == 2
    assert all(toy_counts[i] >= 10 for i in manifest.forget_identities)
    assert set(report.dropped_identities) == {"grace", "heidi"}
    for identity in kept:
        rows = [r for r in manifest.records if r.identity == identity]
        n = toy_counts[identity]
        test = [r for r in rows if r.role.endswith("_test")]
        assert len(rows) == n and len(test) == max(2, round(0.5 * n)) and len(rows) - len(test) >= 1
        prefix = "forget" if identity in manifest.forget_identities else "retain"
        assert {r.role.split("_")[0] for r in rows} == {prefix}
    assert all(len(r.sha256) == 64 and r.source == "data" for r in manifest.records)
    p = manifest.params
    assert (p["forget"], p["forget_list"], p["seed"]) == (2, None, 0)
    assert (p["min_images"], p["test_fraction"]) == (5, 0.5)
    assert p["counts"] == {role: len(manifest.by_role(role)) for role in ROLES} == report.counts
    assert p["identities"] == {"forget": 2, "retain": 6, "distractor": 0}


@pytest.mark.parametrize("fraction, n_test", [(0.1, {5: 2, 12: 2}), (0.9, {5: 4, 12: 11})])
def test_test_fraction_bounds(toy_dataset, fraction, n_test):
    manifest, _ = split(toy_dataset, test_fraction=fraction)
    for identity, n in (("frank", 5), ("alice", 12)):
        rows = [r for r in manifest.records if r.identity == identity]
        assert sum(r.role.endswith("_test") for r in rows) == n_test[n]


def test_min_images_filters(toy_dataset):
    manifest, report = split(toy_dataset, forget=None, forget_list=["erin"], min_images=7)
    assert set(manifest.retain_identities + manifest.forget_identities) == {
        "alice", "bob", "carol", "dave", "erin", "ivan"}
    assert "judy" in report.dropped_identities
    with pytest.raises(DataError, match=r"cannot draw 2 forget .* only 0 identities have >= 2 \* min_images"):
        split(toy_dataset, min_images=12)
    with pytest.raises(DataError, match="cannot draw 6 .* only 5 identities"):
        split(toy_dataset, forget=6)


def test_forget_list(toy_dataset):
    manifest, _ = split(toy_dataset, forget=None, forget_list=["judy", "alice", "judy"])
    assert manifest.forget_identities == ["alice", "judy"]
    assert manifest.params["forget_list"] == ["alice", "judy"] and manifest.params["forget"] is None
    with pytest.raises(DataError, match=r"2 forget identities are not in the data: alic \(did you mean"):
        split(toy_dataset, forget=None, forget_list=["alic", "zed", "bob"])
    with pytest.raises(DataError, match=r"fewer than min_images=5 images: grace \(3 usable\)"):
        split(toy_dataset, forget=None, forget_list=["grace", "bob"])


@pytest.mark.parametrize("kwargs, match", [
    ({"forget": None}, "exactly one"), ({"forget": 2, "forget_list": ["bob"]}, "exactly one"),
    ({"forget": 0}, "forget must be"), ({"forget": True}, "forget must be"),
    ({"forget_list": [], "forget": None}, "non-empty"), ({"test_fraction": 1.0}, "test_fraction"),
    ({"test_fraction": 0.0}, "test_fraction"), ({"min_images": 2}, "min_images"),
    ({"distractor_root": "/x"}, "together"),
])
def test_argument_validation(toy_dataset, kwargs, match):
    with pytest.raises(ValueError, match=match):
        split(toy_dataset, **kwargs)


def test_distractors(toy_dataset, toy_distractors, tmp_path, make_tree):
    manifest, report = split(toy_dataset, toy_distractors)
    distractors = manifest.by_role("distractor")
    assert len(distractors) == 7 and {r.source for r in distractors} == {"distractors"}
    assert manifest.params["identities"]["distractor"] == 4 == report.identities["distractor"]
    assert manifest.distractor_root == str(toy_distractors.absolute())
    assert all(r.resolve(manifest.data_root, manifest.distractor_root).is_file() for r in manifest.records)
    clash = make_tree(tmp_path / "clash", {"bob": 1, "zed": 1}, seed=9)
    with pytest.raises(DataError, match="1 distractor identities also exist in the data: bob"):
        split(toy_dataset, clash)


def test_same_bytes_across_identities_is_an_error(toy_dataset, toy_distractors):
    shutil.copy(toy_dataset / "alice" / "alice_0000.jpg", toy_dataset / "bob" / "bob_copy.jpg")
    with pytest.raises(DuplicateImageError, match="alice/alice_0000.jpg .* = .*bob/bob_copy.jpg") as info:
        split(toy_dataset)
    assert info.value.pairs == [("alice/alice_0000.jpg", "bob/bob_copy.jpg")]
    (toy_dataset / "bob" / "bob_copy.jpg").unlink()
    shutil.copy(toy_dataset / "erin" / "erin_0001.jpg", toy_distractors / "zack" / "dup.jpg")
    with pytest.raises(DuplicateImageError, match=r"erin_0001.jpg \(\w+ of erin\) = .*zack/dup.jpg \(distr"):
        split(toy_dataset, toy_distractors)


def test_same_bytes_within_identity_are_collapsed(toy_dataset):
    shutil.copy(toy_dataset / "alice" / "alice_0003.jpg", toy_dataset / "alice" / "alice_0000_copy.jpg")
    manifest, report = split(toy_dataset)
    assert report.duplicates == (("alice/alice_0000_copy.jpg", "alice/alice_0003.jpg"),)
    assert len([r for r in manifest.records if r.identity == "alice"]) == 12
    assert manifest.params["duplicates_dropped"] == 1


def test_bad_images_error_or_skipped(toy_dataset):
    jpg = toy_dataset / "alice" / "alice_0001.jpg"
    jpg.write_bytes(jpg.read_bytes()[:200])
    (toy_dataset / "frank" / "frank_0000.jpg").write_text("not a jpeg")
    with pytest.raises(BadImageError, match=r"alice_0001.jpg: .*1 more bad files") as info:
        split(toy_dataset)
    assert info.value.path == jpg
    manifest, report = split(toy_dataset, skip_bad=True)
    assert [p.rsplit("/", 2)[-2:] for p, _ in report.bad_files] == [["alice", "alice_0001.jpg"],
                                                                    ["frank", "frank_0000.jpg"]]
    assert manifest.params["bad_files_skipped"] == 2
    assert "frank" in report.dropped_identities and "frank" not in manifest.retain_identities
    assert not any(r.path == "alice/alice_0001.jpg" for r in manifest.records)
    with pytest.raises(DataError, match=r"frank \(4 usable\)"):
        split(toy_dataset, forget=None, forget_list=["frank"], skip_bad=True)

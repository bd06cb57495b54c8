"""Sequential deletion requests: identities per request, cumulative manifests, bad request counts."""
from __future__ import annotations

import pytest

from faceforget.data.folders import scan_folder
from faceforget.data.requests import request_identities, request_manifests
from faceforget.data.split import make_split


@pytest.fixture
def manifest(toy_dataset):
    return make_split(scan_folder(toy_dataset), data_root=toy_dataset, forget=3, seed=0, min_images=3,
                      progress=False)[0]


def test_identities_are_cut_in_sorted_order(manifest):
    names = manifest.forget_identities
    assert request_identities(manifest, 1) == [names]
    assert request_identities(manifest, 2) == [names[:2], names[2:]]  # sizes 2 and 1
    assert request_identities(manifest, 3) == [[n] for n in names]


def test_earlier_requests_retain_the_later_ones_and_the_last_is_the_split(manifest):
    first, second = request_manifests(manifest, 2)
    names = manifest.forget_identities
    assert second is manifest
    assert first.forget_identities == names[:2]
    assert set(first.retain_identities) == set(manifest.retain_identities) | {names[2]}
    for before, after in zip(first.records, manifest.records, strict=True):
        assert (before.path, before.identity, before.sha256) == (after.path, after.identity, after.sha256)
        expected = after.role.replace("forget", "retain") if after.identity == names[2] else after.role
        assert before.role == expected
    assert first.params["request"] == 1 and first.params["requests"] == 2 and first.hash != manifest.hash
    assert request_manifests(manifest, 1) == [manifest]


@pytest.mark.parametrize("n", [0, 4])
def test_more_requests_than_identities_is_refused(manifest, n):
    with pytest.raises(ValueError, match=f"3 forget identities into {n} requests"):
        request_manifests(manifest, n)

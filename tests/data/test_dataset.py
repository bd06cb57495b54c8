"""FaceImageDataset: item shape, dtype, value range, labels, flips and roots."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from faceforget.data.dataset import FaceImageDataset
from faceforget.data.errors import DataError
from faceforget.data.folders import scan_folder
from faceforget.data.images import load_image
from faceforget.data.split import make_split
from faceforget.models.spec import Preprocess

PRE = Preprocess(input_size=(16, 12), mean=(0.0, 0.0, 0.0), scale=1.0, channel_order="RGB", embedding_dim=8)


def test_items(toy_dataset):
    records = scan_folder(toy_dataset)
    ds = FaceImageDataset(records, toy_dataset, PRE)
    assert len(ds) == len(records)
    image, label, index = ds[5]
    assert image.shape == (3, 16, 12) and image.dtype == torch.float32 and index == 5
    assert 0 <= image.min() and image.max() <= 255 and image.max() > 1
    expected = load_image(toy_dataset / records[5].path, (16, 12))
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), expected)
    assert label == sorted({r.identity for r in records}).index(records[5].identity)
    flipped, _, _ = FaceImageDataset(records, toy_dataset, PRE, hflip=True)[5]
    assert torch.equal(flipped, image.flip(-1))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch[0].shape == (4, 3, 16, 12) and batch[1].dtype == torch.int64


def test_labels_and_distractor_root(toy_dataset, toy_distractors):
    manifest, _ = make_split(scan_folder(toy_dataset), data_root=toy_dataset, forget=2, progress=False,
                             distractor_records=scan_folder(toy_distractors), distractor_root=toy_distractors)
    labels = {name: k for k, name in enumerate(manifest.forget_identities)}
    forget = FaceImageDataset(manifest.by_role("forget_train"), manifest.data_root, PRE, labels=labels)
    assert set(forget.targets.tolist()) == {0, 1}
    with pytest.raises(DataError, match="have no label"):
        FaceImageDataset(manifest.by_role("retain_test"), manifest.data_root, PRE, labels=labels)
    gallery = FaceImageDataset(manifest.by_role("distractor"), manifest.data_root, PRE,
                               distractor_root=manifest.distractor_root)
    assert gallery[0][0].shape == (3, 16, 12)

"""torch Dataset over face records: decoded, resized RGB pixels as the model's Preprocess declares them."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from faceforget.data.errors import DataError, first_few
from faceforget.data.images import load_image
from faceforget.data.records import FaceRecord
from faceforget.models.spec import Preprocess


class FaceImageDataset(Dataset):
    """Items are (float32 CHW RGB tensor in [0, 255] of `preprocess.input_size`, integer label, index).

    Labels default to the sorted identities of `records` numbered from 0; `hflip=True` returns every image
    mirrored left-right (deterministic, e.g. for flip test-time augmentation).
    """

    def __init__(self, records: Sequence[FaceRecord], data_root: str | Path, preprocess: Preprocess,
                 distractor_root: str | Path | None = None, hflip: bool = False,
                 labels: dict[str, int] | None = None) -> None:
        self.records = list(records)
        self.data_root = Path(data_root)
        self.distractor_root = None if distractor_root is None else Path(distractor_root)
        self.preprocess = preprocess
        self.hflip = hflip
        if labels is None:
            labels = {name: k for k, name in enumerate(sorted({r.identity for r in self.records}))}
        unlabelled = sorted({r.identity for r in self.records} - set(labels))
        if unlabelled:
            raise DataError(f"{len(unlabelled)} identities have no label: {first_few(unlabelled)}")
        self.labels = dict(labels)
        self.targets = np.array([labels[r.identity] for r in self.records], dtype=np.int64)

    def __len__(self) -> int:
        """Number of images."""
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        """(image, label, index) for one record."""
        record = self.records[index]
        image = load_image(record.resolve(self.data_root, self.distractor_root), self.preprocess.input_size)
        if self.hflip:
            image = image[:, ::-1]
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
        return tensor, int(self.targets[index]), index

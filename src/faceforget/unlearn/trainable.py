"""Which blocks of a FaceModel train; everything before the first trainable block is a frozen prefix."""
from __future__ import annotations

import re

from torch import nn

from faceforget.models.spec import FaceModel

_LAST = re.compile(r"^last:(\d+)$")


def first_trainable_block(model: FaceModel, selection: str) -> int:
    """Index of the first trainable block for `selection`: "all", "embedding" (last block) or "last:N"."""
    n = len(model.blocks)
    if selection == "all":
        return 0
    if selection == "embedding":
        return n - 1
    match = _LAST.match(selection)
    if match is None:
        raise ValueError(f"trainable must be 'all', 'embedding' or 'last:N', got {selection!r}")
    k = int(match.group(1))
    if not 1 <= k <= n:
        raise ValueError(f"trainable 'last:{k}' is out of range: the model has {n} blocks")
    return n - k


def apply_trainable(model: FaceModel, start_block: int) -> list[nn.Parameter]:
    """Freeze blocks[:start_block], unfreeze blocks[start_block:]; return the trainable parameters in order."""
    for i, block in enumerate(model.blocks):
        for p in block.parameters():
            p.requires_grad_(i >= start_block)
    return [p for p in model.parameters() if p.requires_grad]


def trainable_named_parameters(model: FaceModel) -> dict[str, nn.Parameter]:
    """Name -> parameter for the currently trainable parameters."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}

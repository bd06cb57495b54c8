"""Workspace successors for sequential requests: when the cached prefix may be reused."""
from __future__ import annotations

import torch

from faceforget.workspace import shares_prefix


def test_prefix_is_shared_until_a_block_before_the_start_changes(make_tiny_model):
    a, b = make_tiny_model(0), make_tiny_model(0)
    with torch.no_grad():
        list(b.blocks)[2][0].weight.add_(1.0)  # block 2 changed: blocks 0-1 still shared
    assert shares_prefix(a, b, 2) and not shares_prefix(a, b, 3)
    assert not shares_prefix(a, make_tiny_model(1), 1)  # other weights in the stem

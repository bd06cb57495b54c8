"""Seeded batch generators: identity-balanced composition, small identities, uniform passes."""
from __future__ import annotations

from collections import Counter
from itertools import islice

import numpy as np
import pytest

from faceforget.data.sampling import IdentityBalancedSampler, UniformSampler

LABELS = np.repeat(np.arange(5), [2, 6, 4, 8, 3])


def test_balanced_composition():
    sampler = IdentityBalancedSampler(LABELS, p=3, m=4, rng=np.random.default_rng(0))
    batches = list(islice(iter(sampler), 50))
    seen = Counter()
    for batch in batches:
        assert batch.shape == (12,) and batch.dtype == np.int64
        groups = LABELS[batch].reshape(3, 4)
        assert (groups == groups[:, :1]).all() and len(set(groups[:, 0])) == 3
        for row, ids in zip(groups, batch.reshape(3, 4), strict=True):
            if (LABELS == row[0]).sum() >= 4:
                assert len(set(ids)) == 4  # without replacement when the identity has enough images
        seen.update(groups[:, 0].tolist())
    assert set(seen.values()) == {30}  # 150 identity slots, visited in rounds: 30 each


def test_balanced_is_seeded():
    def take(seed):
        sampler = IdentityBalancedSampler(LABELS, 2, 3, np.random.default_rng(seed))
        return np.stack(list(islice(iter(sampler), 5)))
    assert np.array_equal(take(1), take(1)) and not np.array_equal(take(1), take(2))
    with pytest.raises(ValueError, match="only 5"):
        IdentityBalancedSampler(LABELS, 6, 2, np.random.default_rng(0))


def test_uniform_passes():
    batches = list(islice(iter(UniformSampler(10, 4, np.random.default_rng(0))), 5))
    flat = np.concatenate(batches)
    assert all(b.shape == (4,) for b in batches)
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    again = np.concatenate(list(islice(iter(UniformSampler(10, 4, np.random.default_rng(0))), 5)))
    assert np.array_equal(flat, again)

"""Seeded batch generators over dataset indices: identity-balanced (P identities x m images) and uniform."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


class IdentityBalancedSampler:
    """Infinite index batches of `p` identities with `m` images each (P*m indices, grouped by identity).

    Identities are visited in shuffled rounds so each appears equally often; images are drawn without
    replacement within a batch, with replacement for identities that have fewer than `m` images.
    """

    def __init__(self, labels: Sequence[int] | np.ndarray, p: int, m: int, rng: np.random.Generator) -> None:
        labels = np.asarray(labels)
        self.identities = np.unique(labels)
        self.members = [np.flatnonzero(labels == i) for i in self.identities]
        if p < 1 or m < 1:
            raise ValueError(f"p and m must be >= 1, got p={p}, m={m}")
        if p > len(self.identities):
            raise ValueError(f"p={p} identities per batch but the labels have only {len(self.identities)}")
        self.p, self.m, self.rng = p, m, rng

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield int64 index arrays of length p * m forever."""
        queue: list[int] = []
        while True:
            if len(queue) < self.p:  # new round: leftovers, then the round's others, then leftovers again
                order = self.rng.permutation(len(self.identities)).tolist()
                queue += [k for k in order if k not in queue] + [k for k in order if k in queue]
            chosen, queue = queue[: self.p], queue[self.p:]
            yield np.concatenate([self._draw(self.members[k]) for k in chosen]).astype(np.int64)

    def _draw(self, members: np.ndarray) -> np.ndarray:
        return self.rng.choice(members, self.m, replace=len(members) < self.m)


class UniformSampler:
    """Infinite index batches of `batch_size` drawn uniformly: each index once per shuffled pass over `n`."""

    def __init__(self, n: int, batch_size: int, rng: np.random.Generator) -> None:
        if n < 1 or batch_size < 1:
            raise ValueError(f"n and batch_size must be >= 1, got n={n}, batch_size={batch_size}")
        self.n, self.batch_size, self.rng = n, batch_size, rng

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield int64 index arrays of length batch_size forever (batches may span two passes)."""
        pending = np.empty(0, dtype=np.int64)
        while True:
            while len(pending) < self.batch_size:
                pending = np.concatenate([pending, self.rng.permutation(self.n).astype(np.int64)])
            batch, pending = pending[: self.batch_size], pending[self.batch_size:]
            yield batch

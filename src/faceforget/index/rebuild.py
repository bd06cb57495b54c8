"""
Re-embed every gallery image with a new model and swap the gallery atomically.

The old version stays live until the new one is completely written (see `store.py`): a crash while
embedding writes nothing, a crash while saving leaves an unreferenced folder that the next save removes,
and after the `CURRENT` switch the old version is deleted. Row ids, paths, identities, the index kind
and `root` carry over; only the vectors and the model fingerprint change (the dimension may too).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from faceforget.index.gallery import Gallery
from faceforget.progress import progress_bar

EmbedFn = Callable[[list[Path]], np.ndarray]


def rebuild(gallery_dir: str | os.PathLike, embed_fn: EmbedFn, *, model_fingerprint: str,
            batch_size: int = 256, progress: bool = True,
            on_batch: Callable[[int], None] | None = None, model: str | None = None) -> Gallery:
    """
    Embed the live gallery's images with `embed_fn` in batches, save as the new live version, return it.

    `on_batch(n)` is called after the n-th batch is embedded (progress reporting; tests raise from it).
    `model` is the new model's spec, recorded with the gallery.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    old = Gallery.load(gallery_dir)
    rows = old.rows
    chunks: list[np.ndarray] = []
    with progress_bar("re-embedding gallery", len(rows), enabled=progress) as bar:
        for n, start in enumerate(range(0, len(rows), batch_size), start=1):
            batch = rows[start:start + batch_size]
            emb = np.asarray(embed_fn([old.resolve(r) for r in batch]), dtype=np.float32)
            if emb.ndim != 2 or emb.shape[0] != len(batch):
                raise ValueError(f"embed_fn returned shape {emb.shape} for {len(batch)} images")
            chunks.append(emb)
            bar.advance(len(batch))
            if on_batch is not None:
                on_batch(n)
    embeddings = np.concatenate(chunks) if chunks else np.zeros((0, old.dim), dtype=np.float32)
    new = Gallery.build(embeddings, rows, model_fingerprint=model_fingerprint, kind=old.kind,
                        nprobe=old.nprobe, root=old.root, ids=[r.id for r in rows], model=model)
    new.save(gallery_dir)
    return new

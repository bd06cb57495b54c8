"""
Re-embed every gallery image with a new model and swap the gallery atomically, losing no concurrent delete.

Embedding (the long part) runs without the lock from the version live at the start. The commit step takes
the gallery's writer lock and re-reads the latest version: rows deleted meanwhile are dropped, rows added
meanwhile are embedded then, so a person deleted during a rebuild stays deleted. The old version stays
live until the new one is completely written (see `store.py`): a crash while embedding writes nothing, a
crash while saving leaves an unreferenced folder that the next save removes. Row ids, paths, identities,
the index kind and `root` carry over; the vectors, the model fingerprint, the dimension and the non-face
calibration (from `null_embeddings`, the new model's answer to `query_quality.null_images`) change.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from faceforget.index.gallery import Gallery, Row
from faceforget.index.store import writing
from faceforget.progress import progress_bar

EmbedFn = Callable[[list[Path]], np.ndarray]


def rebuild(gallery_dir: str | os.PathLike, embed_fn: EmbedFn, *, model_fingerprint: str,
            batch_size: int = 256, progress: bool = True, null_embeddings: np.ndarray | None = None,
            on_batch: Callable[[int], None] | None = None, model: str | None = None) -> Gallery:
    """
    Embed the live gallery's images with `embed_fn` in batches, save as the new live version, return it.

    `on_batch(n)` is called after the n-th batch is embedded (progress reporting; tests raise from it or
    change the gallery from it). `model` is the new model's spec, recorded with the gallery.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    start = Gallery.load(gallery_dir)
    vectors = _embed(start, start.rows, embed_fn, batch_size, progress, on_batch)
    with writing(gallery_dir):
        latest = Gallery.load(gallery_dir)
        done = {r: v for r, v in zip(start.rows, vectors, strict=True)}
        late = [r for r in latest.rows if r not in done]  # added (or changed) since the start
        done |= dict(zip(late, _embed(latest, late, embed_fn, batch_size, False, None), strict=True))
        rows, dim = latest.rows, next((len(v) for v in done.values()), latest.dim)
        embeddings = np.stack([done[r] for r in rows]) if rows else np.zeros((0, dim), np.float32)
        new = Gallery.build(embeddings, rows, model_fingerprint=model_fingerprint, kind=latest.kind,
                            nprobe=latest.nprobe, root=latest.root, ids=[r.id for r in rows], model=model,
                            null_embeddings=null_embeddings)
        new.save(gallery_dir)
    return new


def _embed(gallery: Gallery, rows: Sequence[Row], embed_fn: EmbedFn, batch_size: int, progress: bool,
           on_batch: Callable[[int], None] | None) -> np.ndarray:
    """Embeddings (len(rows), dim) of the rows' images, checked batch by batch."""
    chunks: list[np.ndarray] = []
    with progress_bar("re-embedding gallery", len(rows), enabled=progress) as bar:
        for n, lo in enumerate(range(0, len(rows), batch_size), start=1):
            batch = rows[lo:lo + batch_size]
            emb = np.asarray(embed_fn([gallery.resolve(r) for r in batch]), dtype=np.float32)
            if emb.ndim != 2 or emb.shape[0] != len(batch):
                raise ValueError(f"embed_fn returned shape {emb.shape} for {len(batch)} images")
            chunks.append(emb)
            bar.advance(len(batch))
            if on_batch is not None:
                on_batch(n)
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)

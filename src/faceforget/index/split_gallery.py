"""The demo's gallery of a split: the held-out photos and distractors, built, rebuilt and checked for forgetting."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforget.data.records import SplitManifest
from faceforget.eval.embed import record_paths
from faceforget.index.gallery import Gallery
from faceforget.index.rebuild import rebuild

GALLERY_ROLES = ("forget_test", "retain_test", "distractor")


@dataclass(frozen=True)
class _Labelled:
    path: str
    identity: str


def build_split_gallery(gallery_dir: str | Path, manifest: SplitManifest, embeddings: np.ndarray,
                        model_fingerprint: str, model: str) -> Gallery:
    """Save a gallery of the split's GALLERY_ROLES rows of `embeddings` (aligned with manifest.records)."""
    idx = [i for i, r in enumerate(manifest.records) if r.role in GALLERY_ROLES]
    records = [manifest.records[i] for i in idx]
    rows = [_Labelled(str(p), r.identity) for p, r in zip(
        record_paths(records, manifest.data_root, manifest.distractor_root), records, strict=True)]
    gallery = Gallery.build(embeddings[idx], rows, model_fingerprint=model_fingerprint, model=model)
    gallery.save(gallery_dir)
    return gallery


def gallery_check(gallery_dir: str | Path, manifest: SplitManifest, embeddings: np.ndarray,
                  model_fingerprint_: str, *, rebuild_from: np.ndarray | None = None, model: str | None = None) -> dict:
    """
    Search the gallery with every forget_test photo (leave-one-out): share whose top-1 is the same person.

    With `rebuild_from`, the gallery is first rebuilt (atomic swap) with those embeddings of the same images
    (made by `model`, the spec recorded with the gallery).
    """
    if rebuild_from is not None:
        lookup = {str(p): i for i, p in enumerate(record_paths(manifest.records, manifest.data_root,
                                                               manifest.distractor_root))}
        rebuild(gallery_dir, lambda paths: rebuild_from[[lookup[str(p)] for p in paths]],
                model_fingerprint=model_fingerprint_, progress=False, model=model)
    gallery = Gallery.load(gallery_dir)
    queries = [i for i, r in enumerate(manifest.records) if r.role == "forget_test"]
    paths = record_paths([manifest.records[i] for i in queries], manifest.data_root, manifest.distractor_root)
    hits = gallery.search(embeddings[queries], 2)
    top1 = [next(h for h in row if h.path != str(p)) for row, p in zip(hits, paths, strict=True)]
    same = [h.identity == manifest.records[i].identity for h, i in zip(top1, queries, strict=True)]
    return {"gallery_rows": len(gallery), "forget_queries": len(queries),
            "forget_top1_same_identity": float(np.mean(same)) if same else float("nan")}

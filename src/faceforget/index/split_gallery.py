"""
A gallery of a split's images, and what a deletion request asks of it: is a forgotten person still found.

`split_gallery` indexes embeddings aligned with a manifest's records (rows of the given roles);
`rebuild_with` swaps in another model's embeddings of the same images (the atomic rebuild, without
reading the images again); `forget_top1` searches the gallery with every forget_test photo, the photo
itself left out, and reports how often the best hit is the same person.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceforget.data.records import FaceRecord, SplitManifest
from faceforget.eval.embed import record_paths
from faceforget.index.gallery import Gallery
from faceforget.index.rebuild import rebuild

GALLERY_ROLES = ("forget_test", "retain_test", "distractor")  # held-out photos and distractors


@dataclass(frozen=True)
class LabelledPath:
    """One gallery row to be: the image path as stored and its identity."""

    path: str
    identity: str


def labelled_paths(records: Sequence[FaceRecord], paths: Sequence[Path]) -> list[LabelledPath]:
    """Gallery rows for records whose images live at `paths` (one path per record)."""
    return [LabelledPath(str(p), r.identity) for p, r in zip(paths, records, strict=True)]


def _rows(manifest: SplitManifest, roles: Sequence[str]) -> tuple[list[int], list[Path]]:
    """Indices into manifest.records of the `roles` rows, and their image paths."""
    idx = [i for i, r in enumerate(manifest.records) if r.role in roles]
    return idx, record_paths([manifest.records[i] for i in idx], manifest.data_root, manifest.distractor_root)


def split_gallery(manifest: SplitManifest, embeddings: np.ndarray, model_fingerprint: str,
                  roles: Sequence[str] = GALLERY_ROLES, kind: str = "auto", model: str | None = None) -> Gallery:
    """A gallery of the `roles` images from `embeddings` (aligned with manifest.records; made by `model`)."""
    if len(embeddings) != len(manifest.records):
        raise ValueError(f"{len(embeddings)} embeddings for {len(manifest.records)} manifest records")
    idx, paths = _rows(manifest, roles)
    rows = labelled_paths([manifest.records[i] for i in idx], paths)
    return Gallery.build(embeddings[idx], rows, model_fingerprint=model_fingerprint, kind=kind, model=model)


def rebuild_with(gallery_dir: str | os.PathLike, manifest: SplitManifest, embeddings: np.ndarray,
                 model_fingerprint: str, model: str | None = None) -> Gallery:
    """Rebuild a `split_gallery` folder (atomic swap) with another model's embeddings of the same records."""
    paths = record_paths(manifest.records, manifest.data_root, manifest.distractor_root)
    lookup = {str(p): i for i, p in enumerate(paths)}
    return rebuild(gallery_dir, lambda batch: embeddings[[lookup[str(p)] for p in batch]],
                   model_fingerprint=model_fingerprint, progress=False, model=model)


def forget_top1(gallery: Gallery, manifest: SplitManifest, embeddings: np.ndarray) -> dict:
    """Share of forget_test photos whose best gallery hit (itself left out) is the same person."""
    queries, paths = _rows(manifest, ("forget_test",))
    hits = gallery.search(embeddings[queries], 2)
    top1 = [next((h for h in row if h.path != str(p)), None) for row, p in zip(hits, paths, strict=True)]
    same = [h is not None and h.identity == manifest.records[i].identity for h, i in zip(top1, queries, strict=True)]
    return {"gallery_rows": len(gallery), "forget_queries": len(queries),
            "forget_top1_same_identity": float(np.mean(same)) if same else float("nan")}

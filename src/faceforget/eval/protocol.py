"""
The retrieval protocol: forget / retain queries on held-out photos, and the "seen" variants.

Held-out: every `*_test` image queries all other `*_test` images plus the distractors
(leave-one-out). Seen: every `*_train` image queries the other train images. Each group reports
R@k, mAP, mAP@R with their chance levels and the compactness (CS) of its identities; retain
held-out also reports TAR at the configured FARs. The k-NN backend is injected (`knn`, default from
`EvalConfig.knn`): None ranks exactly; a top-k backend gives R@k and mAP@R only (docs/evaluation.md).
"""
from __future__ import annotations

import numpy as np

from faceforget.config import EvalConfig
from faceforget.data.records import SplitManifest
from faceforget.eval import metrics
from faceforget.eval.knn import KnnFunc, knn_backend

GROUPS = {
    # group: (query role, gallery roles)
    "forget": ("forget_test", ("forget_test", "retain_test", "distractor")),
    "retain": ("retain_test", ("forget_test", "retain_test", "distractor")),
    "forget_seen": ("forget_train", ("forget_train", "retain_train")),
    "retain_seen": ("retain_train", ("forget_train", "retain_train")),
}


def _group_metrics(emb: np.ndarray, labels: np.ndarray, roles: np.ndarray, query_role: str,
                   gallery_roles: tuple[str, ...], cfg: EvalConfig, knn: KnnFunc | None) -> dict:
    gallery = np.flatnonzero(np.isin(roles, gallery_roles))
    queries = np.flatnonzero(roles == query_role)
    if len(queries) == 0:
        return {"n_queries": 0}
    position = np.full(len(roles), -1)
    position[gallery] = np.arange(len(gallery))
    qm = metrics.rank_queries(emb[queries], labels[queries], emb[gallery], labels[gallery],
                              exclude=position[queries], ks=cfg.ks, chunk_size=cfg.chunk_size, knn=knn)
    out = metrics.summarise(qm)
    out["chance"] = metrics.chance_summary(qm)
    out["CS"] = metrics.compactness(emb[queries], labels[queries])
    out["n_gallery"] = int(len(gallery))
    return out


def verification(emb: np.ndarray, labels: np.ndarray, fars: tuple[float, ...]) -> dict[str, float]:
    """TAR at each FAR (and its threshold) over all pairs of the given embeddings."""
    genuine, impostor = metrics.pair_scores(emb, labels)
    out: dict[str, float] = {}
    for far in fars:
        tar, thr = metrics.tar_at_far(genuine, impostor, far)
        out[f"TAR@FAR={far:g}"] = tar
        out[f"threshold@FAR={far:g}"] = thr
    return out


def evaluate_embeddings(emb: np.ndarray, manifest: SplitManifest, cfg: EvalConfig | None = None, *,
                        knn: KnnFunc | None = None) -> dict:
    """Metrics of every group for raw embeddings aligned with `manifest.records` (`knn` overrides cfg.knn)."""
    cfg = cfg or EvalConfig()
    knn = knn or knn_backend(cfg.knn)
    if len(emb) != len(manifest.records):
        raise ValueError(f"{len(emb)} embeddings for {len(manifest.records)} manifest records")
    z = metrics.l2_normalise(np.asarray(emb, dtype=np.float32))
    labels = np.array([r.identity for r in manifest.records])
    roles = np.array([r.role for r in manifest.records])
    out = {g: _group_metrics(z, labels, roles, q, gal, cfg, knn) for g, (q, gal) in GROUPS.items()}
    retain = roles == "retain_test"
    if retain.sum() > 1:
        out["retain"].update(verification(z[retain], labels[retain], cfg.fars))
    return out


def summary_scores(before: dict, after: dict) -> dict[str, float]:
    """E, U and H (DESIGN.md) from the before / after held-out results."""
    e = metrics.forgetting_efficacy(before["forget"]["mAP"], after["forget"]["mAP"], after["forget"]["chance"]["mAP"])
    u = metrics.utility(after["retain"]["mAP"], before["retain"]["mAP"])
    return {"E": e, "U": u, "H": metrics.harmonic(e, u)}

"""
The retrieval protocol: forget / retain queries on held-out photos, and the "seen" variants.

Held-out: every `*_test` image queries all other `*_test` images plus the distractors
(leave-one-out). Seen: every `*_train` image queries the other train images. Each group reports
R@k, mAP, mAP@R with their chance levels and the compactness (CS) of its identities; retain
held-out also reports TAR at the configured FARs. "lookalike": the retain identities that the original
model puts nearest to each forget identity (`lookalike_identities`), queried like retain: a forgetting that
also erases people who resemble the forgotten ones shows there. Groups: docs/protocol.md; metrics:
docs/metrics.md. The k-NN backend is
injected (`knn`, default from `EvalConfig.knn`): None ranks exactly; a top-k backend gives R@k and mAP@R
only (docs/evaluation.md).
"""
from __future__ import annotations

import numpy as np

from faceforget.config import EvalConfig
from faceforget.data.records import SplitManifest
from faceforget.eval import metrics
from faceforget.eval.knn import KnnFunc, knn_backend
from faceforget.eval.verification import pair_scores, tar_at_far

GROUPS = {
    # group: (query role, gallery roles)
    "forget": ("forget_test", ("forget_test", "retain_test", "distractor")),
    "retain": ("retain_test", ("forget_test", "retain_test", "distractor")),
    "forget_seen": ("forget_train", ("forget_train", "retain_train")),
    "retain_seen": ("retain_train", ("forget_train", "retain_train")),
}


def _group_metrics(emb: np.ndarray, labels: np.ndarray, roles: np.ndarray, query_role: str,
                   gallery_roles: tuple[str, ...], cfg: EvalConfig, identities: list[str] | None = None,
                   knn: KnnFunc | None = None) -> dict:
    gallery = np.flatnonzero(np.isin(roles, gallery_roles))
    query_mask = roles == query_role
    if identities is not None:
        query_mask &= np.isin(labels, identities)
    queries = np.flatnonzero(query_mask)
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
    genuine, impostor = pair_scores(emb, labels)
    out: dict[str, float] = {}
    for far in fars:
        tar, thr = tar_at_far(genuine, impostor, far)
        out[f"TAR@FAR={far:g}"] = tar
        out[f"threshold@FAR={far:g}"] = thr
    return out


def lookalike_identities(emb: np.ndarray, manifest: SplitManifest, per_forget: int = 3) -> list[str]:
    """
    The `per_forget` retain identities whose centroids are nearest (cosine) to each forget identity's.

    Centroids are taken over the *_train photos of `emb` (the original model's, so that before and after
    are measured on the same people); the union over forget identities, sorted.
    """
    z = metrics.l2_normalise(np.asarray(emb, dtype=np.float32))
    labels = np.array([r.identity for r in manifest.records])
    roles = np.array([r.role for r in manifest.records])

    def centroids(role: str) -> tuple[np.ndarray, np.ndarray]:
        names = np.unique(labels[roles == role])
        rows = [metrics.l2_normalise(z[(roles == role) & (labels == n)].mean(0, keepdims=True))[0] for n in names]
        return names, np.array(rows).reshape(len(names), z.shape[1])

    forget_names, forget_c = centroids("forget_train")
    retain_names, retain_c = centroids("retain_train")
    if len(forget_names) == 0 or len(retain_names) == 0:
        return []
    nearest = np.argsort(-(forget_c @ retain_c.T), axis=1, kind="stable")[:, :per_forget]
    return sorted(set(retain_names[nearest.ravel()].tolist()))


def evaluate_embeddings(emb: np.ndarray, manifest: SplitManifest, cfg: EvalConfig | None = None,
                        lookalikes: list[str] | None = None, *, knn: KnnFunc | None = None,
                        requests: list[list[str]] | None = None) -> dict:
    """
    Metrics of every group for raw embeddings aligned with `manifest.records`.

    `lookalikes` (retain identity names, see `lookalike_identities`) adds the "lookalike" group; `requests`
    (forget identity names per deletion request, data/requests.py) adds "forget_request<k>" groups, queried
    like "forget"; `knn` overrides `cfg.knn`.
    """
    cfg = cfg or EvalConfig()
    knn = knn or knn_backend(cfg.knn)
    if len(emb) != len(manifest.records):
        raise ValueError(f"{len(emb)} embeddings for {len(manifest.records)} manifest records")
    z = metrics.l2_normalise(np.asarray(emb, dtype=np.float32))
    labels = np.array([r.identity for r in manifest.records])
    roles = np.array([r.role for r in manifest.records])
    out = {g: _group_metrics(z, labels, roles, q, gal, cfg, knn=knn) for g, (q, gal) in GROUPS.items()}
    if lookalikes:
        out["lookalike"] = _group_metrics(z, labels, roles, *GROUPS["retain"], cfg, identities=lookalikes, knn=knn)
    for k, names in enumerate(requests or [], start=1):
        out[f"forget_request{k}"] = _group_metrics(z, labels, roles, *GROUPS["forget"], cfg, identities=names, knn=knn)
    retain = roles == "retain_test"
    if retain.sum() > 1:
        out["retain"].update(verification(z[retain], labels[retain], cfg.fars))
    return out


def summary_scores(before: dict, after: dict) -> dict[str, float]:
    """E, U and H (docs/metrics.md#summary-scores-e-u-h) from the before / after held-out results."""
    e = metrics.forgetting_efficacy(before["forget"]["mAP"], after["forget"]["mAP"], after["forget"]["chance"]["mAP"])
    u = metrics.utility(after["retain"]["mAP"], before["retain"]["mAP"])
    return {"E": e, "U": u, "H": metrics.harmonic(e, u)}

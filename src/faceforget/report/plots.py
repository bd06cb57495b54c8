"""
Report figures: `matplotlib.figure.Figure` objects on an Agg canvas (pyplot's global state is never used).

Large sets are subsampled with a seeded numpy generator so every figure renders in well under a second.
"""
from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from faceforget.fileio import atomic_open

MAX_PAIRS = 20_000  # genuine and impostor pairs per histogram
MAX_POINTS = 3_000  # retain (and forget) points per projection panel
BINS = np.linspace(-1.0, 1.0, 81)


def _figure(width: float, height: float, nrows: int = 1, ncols: int = 1,
            **kw: object) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


def _text(s: object) -> str:
    """Text shown literally (a "$" in an identity name must not start mathtext)."""
    return str(s).replace("$", r"\$")


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def tradeoff_point(metrics: Mapping[str, object]) -> dict[str, object]:
    """A trade-off point from a run's metrics.json: mAPs after unlearning, the original's, the chance mAP."""
    before, after = metrics["original"], metrics["unlearned"]
    return {"label": f"{metrics['method']} (seed {metrics['seed']})", "method": metrics["method"],
            "forget_mAP": after["forget"]["mAP"], "retain_mAP": after["retain"]["mAP"],
            "original": (before["forget"]["mAP"], before["retain"]["mAP"]),
            "chance": after["forget"]["chance"]["mAP"]}


def tradeoff_scatter(points: Sequence[Mapping[str, object]]) -> Figure:
    """
    Forget mAP (x, lower is better) vs retain mAP (y) after unlearning, one labelled point per run.

    Each point: {"label", "forget_mAP", "retain_mAP"} and optionally "method" (colour), "original"
    (the original model's (forget, retain) mAP, drawn as a star) and "chance" (forget chance mAP, a line).
    """
    fig, axes = _figure(6.4, 4.8)
    ax = axes[0, 0]
    methods = list(dict.fromkeys(str(p.get("method", p["label"])) for p in points))
    for p in points:
        colour = f"C{methods.index(str(p.get('method', p['label']))) % 10}"
        ax.scatter(p["forget_mAP"], p["retain_mAP"], color=colour, s=36, zorder=3)
        ax.annotate(_text(p["label"]), (p["forget_mAP"], p["retain_mAP"]), xytext=(4, 4),
                    textcoords="offset points", fontsize=8)
    originals = {tuple(p["original"]) for p in points if p.get("original") is not None}
    for k, (x, y) in enumerate(sorted(originals)):
        ax.scatter(x, y, marker="*", s=160, color="black", zorder=4, label="original" if k == 0 else None)
    chances = [float(p["chance"]) for p in points if p.get("chance") is not None]
    if chances:
        ax.axvline(float(np.mean(chances)), color="grey", linestyle="--", label="forget chance mAP")
    ax.set_xlabel("forget mAP, held-out, after (lower is better)")
    ax.set_ylabel("retain mAP, held-out, after (higher is better)")
    ax.set_title("forgetting / utility trade-off")
    ax.grid(alpha=0.3)
    if originals or chances:
        ax.legend(loc="lower right", fontsize=8)
    return fig


def _pair_indices(labels: np.ndarray, subset: np.ndarray, rng: np.random.Generator,
                  max_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """Genuine pairs (i < j, same identity, both in subset); impostor pairs (i in subset, other identity)."""
    idx = np.flatnonzero(subset)
    genuine = [np.empty((0, 2), dtype=np.int64)]
    for name in np.unique(labels[idx]):
        ix = idx[labels[idx] == name]
        a, b = np.triu_indices(len(ix), 1)
        genuine.append(np.stack([ix[a], ix[b]], 1))
    genuine = np.concatenate(genuine)
    if len(genuine) > max_pairs:
        genuine = genuine[rng.choice(len(genuine), max_pairs, replace=False)]
    if len(idx) == 0:
        return genuine, np.empty((0, 2), dtype=np.int64)
    draw = np.stack([rng.choice(idx, 2 * max_pairs), rng.integers(0, len(labels), 2 * max_pairs)], 1)
    impostor = draw[labels[draw[:, 0]] != labels[draw[:, 1]]][:max_pairs]
    return genuine, impostor


def similarity_histograms(before_emb: np.ndarray, after_emb: np.ndarray, labels: Sequence[str],
                          forget_mask: np.ndarray, *, max_pairs: int = MAX_PAIRS, seed: int = 0) -> Figure:
    """Genuine vs impostor cosine histograms: rows forget / retain identities, columns before / after."""
    labels, forget_mask = np.asarray(labels).astype(str), np.asarray(forget_mask, dtype=bool)
    rng = np.random.default_rng(seed)
    fig, axes = _figure(9.6, 6.4, 2, 2, sharex=True)
    for row, (who, subset) in enumerate([("forget", forget_mask), ("retain", ~forget_mask)]):
        genuine, impostor = _pair_indices(labels, subset, rng, max_pairs)
        for col, (when, emb) in enumerate([("before", before_emb), ("after", after_emb)]):
            ax = axes[row, col]
            for name, pairs, colour in [("genuine", genuine, "C2"), ("impostor", impostor, "C3")]:
                if len(pairs):
                    cos = np.einsum("ij,ij->i", _unit(emb[pairs[:, 0]]), _unit(emb[pairs[:, 1]]))
                    ax.hist(cos, bins=BINS, density=True, histtype="stepfilled", alpha=0.45, color=colour,
                            label=f"{name} (n={len(pairs)})")
            ax.set_title(f"{who} identities, {when}")
            ax.set_xlabel("cosine similarity")
            ax.set_ylabel("density")
            if ax.has_data():
                ax.legend(fontsize=8)
            else:
                ax.text(0.5, 0.5, "no pairs", ha="center", va="center", transform=ax.transAxes)
    return fig


def _sample(idx: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(idx, cap, replace=False)) if len(idx) > cap else idx


def projection_2d(before_emb: np.ndarray, after_emb: np.ndarray, labels: Sequence[str],
                  forget_mask: np.ndarray, *, max_points: int = MAX_POINTS, seed: int = 0) -> Figure:
    """2-D PCA fitted on the original embeddings: retain grey, forget identities coloured; before / after."""
    labels, forget_mask = np.asarray(labels).astype(str), np.asarray(forget_mask, dtype=bool)
    rng = np.random.default_rng(seed)
    keep = np.concatenate([_sample(np.flatnonzero(~forget_mask), max_points, rng),
                           _sample(np.flatnonzero(forget_mask), max_points, rng)])
    zb, za, labels, forget = _unit(before_emb[keep]), _unit(after_emb[keep]), labels[keep], forget_mask[keep]
    mean = zb.mean(axis=0)
    _, sv, vt = np.linalg.svd(zb - mean, full_matrices=False)
    ratio = sv[:2] ** 2 / max(float((sv**2).sum()), 1e-12)
    names = list(np.unique(labels[forget]))
    colours = [f"C{k}" if len(names) <= 10 else colormaps["tab20"](k % 20) for k in range(len(names))]
    fig, axes = _figure(10.4, 5.0, 1, 2, sharex=True, sharey=True)
    titles = ["before (original model)", "after (unlearned model)"]
    for ax, title, z in zip(axes[0], titles, [zb, za], strict=True):
        xy = (z - mean) @ vt[:2].T
        ax.scatter(xy[~forget, 0], xy[~forget, 1], s=10, color="0.6", alpha=0.6, label="retain", linewidths=0)
        for name, colour in zip(names, colours, strict=True):
            sel = labels == name
            ax.scatter(xy[sel, 0], xy[sel, 1], s=18, color=colour, label=_text(name), edgecolors="white",
                       linewidths=0.3)
        ax.set_title(title)
        ax.set_xlabel(f"PC1 ({ratio[0]:.0%} of original variance)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(f"PC2 ({ratio[1]:.0%} of original variance)")
    if len(names) <= 20:
        axes[0, 1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), title="identities")
    return fig


def loss_curves(history: Sequence[Mapping[str, float]]) -> Figure:
    """Each loss term (and "total", in black) against the unlearning step."""
    fig, axes = _figure(6.4, 3.6)
    ax = axes[0, 0]
    keys = list(dict.fromkeys(k for record in history for k in record))
    steps = np.arange(1, len(history) + 1)
    for k, key in enumerate(k for k in keys if k != "total"):
        values = [r.get(key, np.nan) for r in history]
        ax.plot(steps, values, color=f"C{k % 10}", linewidth=1.2, label=_text(key))
    if "total" in keys:
        ax.plot(steps, [r.get("total", np.nan) for r in history], color="black", linewidth=2, label="total")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("unlearning loss")
    ax.grid(alpha=0.3)
    if keys:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no loss history", ha="center", va="center", transform=ax.transAxes)
    return fig


def figure_to_png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """The figure rendered as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> None:
    """Write the figure atomically; the format follows the suffix (PNG when there is none)."""
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format=Path(path).suffix.lstrip(".").lower() or "png", dpi=dpi)

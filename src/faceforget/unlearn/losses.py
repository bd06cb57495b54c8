"""Pure loss functions (tensors in, scalar tensor out) for dispersion and the classifier baselines."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _zero_like_graph(z: torch.Tensor) -> torch.Tensor:
    """A zero that keeps `z` in the autograd graph (so backward works on degenerate batches)."""
    return z.sum() * 0.0


def uniformity_loss(z: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """
    Log mean_{i != j} exp(-t ||z_i - z_j||^2) over L2-normalised rows (Wang & Isola, arXiv 2005.10242).

    Lower = more uniformly spread; a batch of fewer than 2 rows gives 0.
    """
    n = z.shape[0]
    if n < 2:
        return _zero_like_graph(z)
    sq = (2 - 2 * z @ z.T).clamp_min(0)
    off = ~torch.eye(n, dtype=torch.bool, device=z.device)
    logits = -t * sq[off]
    return torch.logsumexp(logits, 0) - math.log(logits.numel())


def hard_margin_loss(
    z: torch.Tensor, labels: torch.Tensor, margin: float = 0.1, beta: float = 20.0,
    negatives: torch.Tensor | None = None,
) -> torch.Tensor:
    """
    Mean over anchors of softplus(beta (max_pos - max_neg + margin)) / beta (cosine similarities).

    max_pos: most similar other row with the anchor's label; max_neg: most similar row of another
    label among `z` and the optional extra `negatives` (e.g. retain embeddings). Anchors with no
    positive or no negative are left out; if none remain the loss is 0.
    """
    n = z.shape[0]
    sim = z @ z.T
    same = labels.view(-1, 1) == labels.view(1, -1)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    pos_mask = same & ~eye
    neg_sim = sim.masked_fill(same, float("-inf"))
    if negatives is not None and negatives.shape[0] > 0:
        neg_sim = torch.cat([neg_sim, z @ negatives.T], dim=1)
    has_pos = pos_mask.any(1)
    has_neg = torch.isfinite(neg_sim).any(1)
    valid = has_pos & has_neg
    if not bool(valid.any()):
        return _zero_like_graph(z)
    max_pos = sim.masked_fill(~pos_mask, float("-inf")).max(1).values[valid]
    max_neg = neg_sim.max(1).values[valid]
    return (F.softplus(beta * (max_pos - max_neg + margin)) / beta).mean()


def keep_loss(z: torch.Tensor, z_original: torch.Tensor) -> torch.Tensor:
    """Mean (1 - cos) between normalised embeddings and the frozen original model's; 0 for an empty batch."""
    if z.shape[0] == 0:
        return _zero_like_graph(z)
    return (1 - (z * z_original).sum(1)).mean()


def chord_keep_loss(z: torch.Tensor, z_original: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean Euclidean distance ||z - z0|| between normalised embeddings (L1-like: firm near zero drift)."""
    if z.shape[0] == 0:
        return _zero_like_graph(z)
    return ((z - z_original).pow(2).sum(1) + eps).sqrt().mean()


def whitened_sq_distance(x: torch.Tensor, target: torch.Tensor, whiten: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ||(x - target) W||^2 / d: squared distance in units of the population's spread."""
    if x.shape[0] == 0:
        return _zero_like_graph(x)
    return ((x - target) @ whiten).pow(2).sum(1).mean() / x.shape[1]


def class_mean_offset_loss(x: torch.Tensor, labels: torch.Tensor, centre: torch.Tensor,
                           whiten: torch.Tensor) -> torch.Tensor:
    """
    Mean over the labels in the batch of ||(mean of the label's rows - centre) W||^2 / d.

    Zero when every label's mean equals `centre`, the population mean: then no linear classifier separates the
    labels better than a constant one (LEACE's condition for linear guardedness, arXiv 2306.03819).
    """
    if x.shape[0] == 0:
        return _zero_like_graph(x)
    ids, inverse = torch.unique(labels, return_inverse=True)
    sums = torch.zeros(len(ids), x.shape[1], dtype=x.dtype).index_add(0, inverse, x)
    means = sums / torch.bincount(inverse, minlength=len(ids)).to(x.dtype)[:, None]
    return ((means - centre) @ whiten).pow(2).sum(1).mean() / x.shape[1]


def relational_loss(z: torch.Tensor, z_original: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the pairwise cosine matrices (keeps the retain geometry, not only points)."""
    if z.shape[0] < 2:
        return _zero_like_graph(z)
    return ((z @ z.T - z_original @ z_original.T) ** 2).mean()


def centroid_repulsion_loss(z: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """
    Mean positive cosine between each embedding and its identity's (frozen, normalised) centroid.

    Pushes forget embeddings off the place where a gallery would look for that identity.
    """
    if z.shape[0] == 0:
        return _zero_like_graph(z)
    return F.relu((z * centroids[labels]).sum(1)).mean()


def cone_loss(z: torch.Tensor, mean_direction: torch.Tensor, floor: float) -> torch.Tensor:
    """Mean hinge relu(floor - cos(z, mean_direction)): keeps embeddings inside the cone where faces live."""
    if z.shape[0] == 0:
        return _zero_like_graph(z)
    return F.relu(floor - z @ mean_direction).mean()


def cosface_logits(cos: torch.Tensor, labels: torch.Tensor | None, s: float, m: float) -> torch.Tensor:
    """S * (cos - m [j = label]); labels None gives the plain logits s * cos."""
    if labels is None:
        return s * cos
    return s * (cos - m * F.one_hot(labels, cos.shape[1]).to(cos.dtype))


def arcface_logits(cos: torch.Tensor, labels: torch.Tensor | None, s: float, m: float) -> torch.Tensor:
    """S * cos(theta_j + m [j = label]) with theta = acos(cos) (Deng et al., arXiv 1801.07698); None: s * cos."""
    if labels is None:
        return s * cos
    theta = torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
    return s * torch.cos(theta + m * F.one_hot(labels, cos.shape[1]).to(cos.dtype))


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 KL(softmax(teacher/T) || softmax(student/T)), batch mean (Hinton et al., arXiv 1503.02531)."""
    if student_logits.shape[0] == 0:
        return _zero_like_graph(student_logits)
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, 1)
    log_p_t = F.log_softmax(teacher_logits / t, 1)
    return F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean") * t * t


def l1_norm(params: list[torch.Tensor]) -> torch.Tensor:
    """Sum of |w| over every entry of every tensor (the L1-sparse penalty); 0 for an empty list."""
    return sum((p.abs().sum() for p in params), torch.zeros(()))


def sq_distance(params: list[torch.Tensor], reference: list[torch.Tensor]) -> torch.Tensor:
    """Sum of squared differences between matching tensors (||theta - theta0||^2); 0 for empty lists."""
    return sum((((p - r) ** 2).sum() for p, r in zip(params, reference, strict=True)), torch.zeros(()))

"""
Target maps: where each forget photo's features should go, as a smooth function of the original's features.

A forget photo x of identity k with frozen features f0(x) gets the target

    t(x) = m + A_k (f0(x) - mu_k)

`mu_k` is the mean of k's training photos, `m` the population mean of the retain photos and `A_k` a linear
map that blows the photo's within-person residual up to the spread of the whole population. The target
keeps the photo's own variation (pose, light, expression) and drops what all photos of k share, so the
person's photos become as different from one another as photos of different people, and sit among faces
(around `m`) rather than on the empty sphere. Because `t` is a function of the face, a network trained
toward it generalises to photos it never saw (docs/methods.md, "Target-map forgetting").

Two choices of `A_k` (`fit_target_map`):
- "scaled": one map for every identity, `alpha * (s_b / s_w) * P`, with P the projection onto the top
  `rank` between-identity principal directions of the retain centroids, each weighted by its singular
  value over their RMS; s_b / s_w is the between-identity spread over the within-identity residual spread.
- "ot": the Gaussian optimal-transport (Monge) map from the identity's residual distribution N(0, S_k) to
  the population's N(0, spread^2 S_pop): A_k = S_k^-1/2 (S_k^1/2 S_pop S_k^1/2)^1/2 S_k^-1/2 * spread,
  S_k shrunk toward the pooled within-identity covariance (few photos per person), as in closed-form
  concept erasure (LEACE, Belrose et al., arXiv 2306.03819, which uses the same Gaussian OT view).

An identity the starting model has already dispersed (its photos' RMS distance to their mean at least the
between-identity spread s_b: as far apart as different people) is held, t(x) = f0(x): mapping it again would
blow its residuals up a second time, out of the crowd, where its photos find each other (a sequential
request re-mapping the people of an earlier one). Identities of an original model sit at 0.3-0.8 s_b on LFW,
so a one-shot run holds nothing (docs/methods.md, "Target-map forgetting").
Pure tensor functions: no model, no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

MapKind = Literal["scaled", "ot"]
DISPERSED_SPREAD = 1.0  # own residual RMS over s_b at which an identity counts as already dispersed (held)


@dataclass(frozen=True)
class TargetMap:
    """Per-identity affine maps t = centre + A[k] (f - means[k]); rows of `means`/`linear` by label id."""

    centre: torch.Tensor  # (d,)
    means: torch.Tensor  # (n_labels, d); only forget label rows are meaningful
    linear: torch.Tensor  # (n_labels, d, d)
    held: tuple[int, ...] = ()  # forget labels already dispersed, mapped to themselves

    def __call__(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Targets of `features` (n, d) whose identities are `labels` (n,)."""
        residual = (features - self.means[labels]).unsqueeze(2)
        return self.centre + torch.bmm(self.linear[labels], residual).squeeze(2)


def class_means(features: torch.Tensor, labels: torch.Tensor, n_labels: int) -> torch.Tensor:
    """(n_labels, d) mean feature of each label (zero rows for labels without samples)."""
    sums = torch.zeros(n_labels, features.shape[1], dtype=features.dtype).index_add_(0, labels, features)
    counts = torch.bincount(labels, minlength=n_labels).clamp_min(1).to(features.dtype)
    return sums / counts[:, None]


def _sym_power(cov: torch.Tensor, power: float, floor: float) -> torch.Tensor:
    """cov^power for a symmetric PSD matrix, eigenvalues floored at `floor` (float64)."""
    vals, vecs = torch.linalg.eigh(cov.double())
    return (vecs * vals.clamp_min(floor).pow(power)) @ vecs.T


def gaussian_ot_linear(source_cov: torch.Tensor, target_cov: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The symmetric matrix A with A S A = T (the Monge map between centred Gaussians N(0, S) -> N(0, T))."""
    floor = eps * float(torch.diagonal(source_cov).mean().clamp_min(1e-12))
    s_half, s_inv_half = _sym_power(source_cov, 0.5, floor), _sym_power(source_cov, -0.5, floor)
    middle = _sym_power(s_half @ target_cov.double() @ s_half, 0.5, 0.0)
    return s_inv_half @ middle @ s_inv_half


def whitening(centred: torch.Tensor, ridge: float = 0.1) -> torch.Tensor:
    """
    (d, d) matrix W = (S + ridge * mean(diag S) I)^-1/2 for the second moment S of centred rows.

    With ridge 0, W^T S W = I; the ridge keeps directions of almost no variance from dominating a loss.
    """
    cov = _covariance(centred)
    cov = cov + ridge * float(torch.diagonal(cov).mean()) * torch.eye(cov.shape[0], dtype=cov.dtype)
    return _sym_power(cov, -0.5, 1e-12 * float(torch.diagonal(cov).mean().clamp_min(1e-12))).float()


def _covariance(x: torch.Tensor) -> torch.Tensor:
    """Second moment of already-centred rows (n, d) -> (d, d), float64; zeros for n == 0."""
    x = x.double()
    return x.T @ x / max(1, x.shape[0])


def fit_target_map(
    features: torch.Tensor, labels: torch.Tensor, forget_ids: list[int], n_labels: int, *,
    kind: MapKind = "ot", spread: float = 1.0, rank: int = 64, shrinkage: float = 0.5,
) -> TargetMap:
    """
    Fit the map on clean training features (n, d) labelled over all train identities.

    Population statistics come from the retain identities (every label not in `forget_ids`), the means of
    the forget identities from their own photos. `spread` scales the target spread ("scaled": the issue's
    alpha; "ot": a multiplier of the population's standard deviation), `rank` bounds P ("scaled"),
    `shrinkage` is the weight of the identity's own residual covariance against the pooled one ("ot").
    Forget identities already dispersed (`dispersed_identities`) get the identity map (held).
    """
    features = features.double()
    means = class_means(features, labels, n_labels)
    is_forget = torch.zeros(n_labels, dtype=torch.bool)
    is_forget[forget_ids] = True
    retain_rows = ~is_forget[labels]
    if not bool(retain_rows.any()):
        raise ValueError("the target map needs retain photos (the population the forget photos move into)")
    retain, retain_labels = features[retain_rows], labels[retain_rows]
    centre = retain.mean(0)
    residual = retain - means[retain_labels]
    d = features.shape[1]
    linear = torch.zeros(n_labels, d, d, dtype=torch.float64)
    ids = torch.unique(retain_labels)
    centroids = means[ids] - means[ids].mean(0)
    s_b = centroids.pow(2).sum(1).mean().sqrt()
    held = set(dispersed_identities(features, labels, forget_ids, means, float(s_b)))
    moved = [k for k in forget_ids if k not in held]
    if kind == "scaled":
        _, sv, vt = torch.linalg.svd(centroids, full_matrices=False)
        k = min(rank, int((sv > 1e-9 * sv[0]).sum()))  # directions the centroids actually span
        weights = sv[:k] / sv[:k].pow(2).mean().sqrt()
        projection = (vt[:k].T * weights) @ vt[:k]
        s_w = residual.pow(2).sum(1).mean().sqrt().clamp_min(1e-12)
        linear[moved] = spread * (s_b / s_w) * projection
    else:
        population = _covariance(retain - centre) * spread ** 2
        pooled = _covariance(residual)
        for k in moved:
            own = features[labels == k] - means[k]
            source = shrinkage * _covariance(own) + (1 - shrinkage) * pooled
            linear[k] = gaussian_ot_linear(source, population)
    for k in held:  # t = centre + I (f - centre) = f
        linear[k] = torch.eye(d, dtype=torch.float64)
        means[k] = centre
    return TargetMap(centre.float(), means.float(), linear.float(), tuple(sorted(held)))


def dispersed_identities(features: torch.Tensor, labels: torch.Tensor, forget_ids: list[int], means: torch.Tensor,
                         between_spread: float) -> list[int]:
    """The forget labels whose photos' RMS distance to their mean is >= DISPERSED_SPREAD x `between_spread`."""
    out = []
    for k in forget_ids if between_spread > 0 else []:  # one retain identity: no crowd to compare with
        own = features[labels == k] - means[k]
        if len(own) and float(own.pow(2).sum(1).mean().sqrt()) >= DISPERSED_SPREAD * between_spread:
            out.append(k)
    return out

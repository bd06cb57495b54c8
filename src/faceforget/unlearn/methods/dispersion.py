"""
Dispersion (ours): scatter the forget identities' embeddings over the hypersphere, keep the rest.

Face identity unlearning for retrieval via embedding dispersion, Zakharov, arXiv 2512.13317 (2025).
The paper's equations are not public; this is faceforget's formulation (docs/methods.md#dispersion-ours):
  L = a * L_unif(forget) + b * L_hard(forget) + e * L_centroid(forget)
      + c * L_keep(retain) + d * L_rel(retain)
- L_unif: uniformity (Wang & Isola, arXiv 2005.10242) over the forget views, so every forget
  embedding, including two augmented views of one photo, moves away from every other;
- L_hard: each forget view's nearest same-identity view must be less similar than its nearest
  other-identity embedding by a margin (this is what breaks R@1);
- L_centroid: forget views move off their identity's original centroid (where a gallery looks);
- L_keep / L_rel: retain embeddings stay where the frozen original model put them, pointwise and in
  their pairwise cosine geometry.
After the last step the final linear layer is refitted in closed form (unlearn/refit.py): face
retrieval is so fine-grained that a 0.01 cosine drift of the retain embeddings costs ~10% mAP, and a
large part of that drift is linear in the last layer's input, so one ridge solve over every cached
retain view (targets: the original outputs) recovers most of it while forget views keep their outputs.
Defaults were chosen on the LFW tuning split (seed 7, never a reported seed) with the engine's defaults
(last 5 blocks, Adam lr 5e-5, 200 steps, 16 augmented views per forget photo): benchmarks/RESULTS.md.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from faceforget.seeding import torch_generator
from faceforget.unlearn.losses import (
    centroid_repulsion_loss,
    chord_keep_loss,
    cone_loss,
    hard_margin_loss,
    keep_loss,
    relational_loss,
    uniformity_loss,
)
from faceforget.unlearn.masks import mask_density, summed_gradients, top_fraction_mask
from faceforget.unlearn.method import Batch, LossTerms, MethodContext, MethodParams, UnlearningMethod
from faceforget.unlearn.refit import refit_final_linear
from faceforget.unlearn.trainable import trainable_named_parameters


class DispersionParams(MethodParams):
    """Weights and shapes of the dispersion objective."""

    a: float = Field(1.0, ge=0, description="weight of the uniformity term on forget embeddings")
    b: float = Field(2.0, ge=0, description="weight of the hard-margin term on forget embeddings")
    c: float = Field(20.0, ge=0, description="weight of the keep term (distance to the original) on retain")
    keep_distance: Literal["cosine", "chord"] = Field(
        "cosine", description="keep term: mean 1 - cos (quadratic in the drift angle) or mean chord ||z - z0|| "
        "(linear in it, so small drifts are still pushed back)")
    d: float = Field(0.0, ge=0, description="weight of the relational keep term on retain")
    e: float = Field(1.0, ge=0, description="weight of the centroid repulsion on forget embeddings")
    g: float = Field(0.0, ge=0, description="weight of the cone term: forget embeddings stay among faces "
                     "(cosine to the mean retain direction above its 1st percentile), hiding in the crowd")
    t: float = Field(2.0, gt=0, description="uniformity temperature")
    margin: float = Field(0.2, ge=0, le=2, description="hard-term margin in cosine")
    beta: float = Field(20.0, gt=0, description="sharpness of the smooth hinge")
    retain_negatives: bool = Field(True, description="retain embeddings count as hard-term negatives")
    refit: bool = Field(True, description="after training, refit the final linear layer in closed form so retain "
                        "outputs return to the original's (forget outputs held); see unlearn/refit.py")
    refit_forget_weight: float = Field(0.2, ge=0, description="total weight of forget views vs retain (1) in the refit")
    refit_ridge: float = Field(1e-3, ge=0, description="relative ridge of the refit")
    mask_ratio: float = Field(1.0, gt=0, le=1, description="fraction of trainable weights allowed to change, "
                              "ranked by forget saliency / retain sensitivity (1 = all)")
    mask_retain_views: int = Field(1024, ge=1, description="retain views used to estimate the sensitivity")


class Dispersion(UnlearningMethod):
    """Uniformity + hard margin on forget embeddings, keep on retain embeddings."""

    name = "dispersion"
    Params = DispersionParams

    def setup(self, ctx: MethodContext) -> None:
        """Frozen, normalised centroid of each forget identity; the selective weight mask if asked for."""
        clean = ctx.forget.clean()
        labels, emb = ctx.forget.labels[clean], ctx.forget.z_original[clean]
        centroids = torch.zeros(ctx.n_identities, emb.shape[1])
        centroids.index_add_(0, labels, emb)
        ctx.state["centroids"] = F.normalize(centroids, dim=1)
        retain = ctx.retain.z_original[ctx.retain.clean()]
        mean = F.normalize(retain.mean(0), dim=0)
        ctx.state["face_direction"] = mean
        ctx.state["cone_floor"] = float(torch.quantile(retain @ mean, 0.01))
        if self.params.mask_ratio < 1:
            ctx.param_mask = self._selective_mask(ctx)
            ctx.state["mask_density"] = mask_density(ctx.param_mask)

    def _selective_mask(self, ctx: MethodContext) -> dict[str, torch.Tensor]:
        """
        Weights where the forget objective pulls hardest relative to how much retain embeddings depend on them.

        Score = |grad of the forget terms on clean forget views| / sqrt(retain sensitivity), the sensitivity
        being a Hutchinson estimate of the squared Jacobian of retain embeddings (random unit probes).
        """
        params = trainable_named_parameters(ctx.model)
        forget = ctx.forget.take(ctx.forget.clean())
        pull = summed_gradients(params, [sum(self._forget_terms(ctx.embed(forget), forget.labels, None, ctx).values())])
        gen = torch_generator(ctx.seed, "dispersion-mask")
        rows = torch.randperm(len(ctx.retain), generator=gen)[: self.params.mask_retain_views]

        def probes() -> Iterator[torch.Tensor]:
            for idx in rows.split(256):
                z = ctx.embed(ctx.retain.take(idx))
                yield (z * F.normalize(torch.randn(z.shape, generator=gen), dim=1)).sum()

        sensitivity = summed_gradients(params, probes(), square=True)
        floor = torch.cat([s.flatten() for s in sensitivity.values()]).mean() * 1e-3
        scores = {n: pull[n].abs() / (sensitivity[n] + floor).sqrt() for n in params}
        return top_fraction_mask(scores, self.params.mask_ratio)

    def finalize(self, ctx: MethodContext) -> None:
        """The closed-form refit of the final linear layer (when `refit`)."""
        if self.params.refit:
            refit_final_linear(ctx.model, ctx.original_model, ctx.retain.inputs, ctx.forget.inputs, ctx.start_block,
                               self.params.refit_forget_weight, self.params.refit_ridge)

    def _forget_terms(self, z_f: torch.Tensor, labels: torch.Tensor, negatives: torch.Tensor | None,
                      ctx: MethodContext) -> LossTerms:
        p = self.params
        terms: LossTerms = {}
        if p.a:
            terms["unif"] = p.a * uniformity_loss(z_f, p.t)
        if p.b:
            terms["hard"] = p.b * hard_margin_loss(z_f, labels, p.margin, p.beta, negatives)
        if p.e:
            terms["centroid"] = p.e * centroid_repulsion_loss(z_f, labels, ctx.state["centroids"])
        if p.g:
            terms["cone"] = p.g * cone_loss(z_f, ctx.state["face_direction"], ctx.state["cone_floor"])
        return terms

    def loss(self, batch: Batch, ctx: MethodContext) -> LossTerms:
        """The weighted terms of the dispersion objective for one batch."""
        p = self.params
        terms: LossTerms = {}
        z_r = ctx.embed(batch.retain) if batch.retain is not None else None
        if batch.forget is not None:
            negatives = z_r.detach() if (p.retain_negatives and z_r is not None) else None
            terms |= self._forget_terms(ctx.embed(batch.forget), batch.forget.labels, negatives, ctx)
        if z_r is not None:
            if p.c:
                keep = chord_keep_loss if p.keep_distance == "chord" else keep_loss
                terms["keep"] = p.c * keep(z_r, batch.retain.z_original)
            if p.d:
                terms["rel"] = p.d * relational_loss(z_r, batch.retain.z_original)
        return terms

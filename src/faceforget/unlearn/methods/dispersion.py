"""
Dispersion (ours): move the forget identities' embeddings into the crowd of other faces, keep the rest.

Face identity unlearning for retrieval via embedding dispersion, Zakharov, arXiv 2512.13317 (2025).
The paper's equations are not public; this is faceforget's formulation (docs/methods.md, "dispersion"):
  L = w_target * L_target(forget) + w_erase_features * L_erase_features(forget)
      + w_uniform * L_unif(forget) + w_hard * L_hard(forget) + w_centroid * L_centroid(forget) + w_cone * L_cone(forget)
      + w_keep * L_keep(retain) + w_relational * L_rel(retain) + w_keep_features * L_keep_features(retain)
- L_target (on by default, as is L_erase_features): each cached forget view toward the target map of
  the frozen original's embedding of that view (unlearn/target_map.py): the photo keeps its own variation and
  loses what all photos of the person share, blown up to the spread of the population and centred on it.
  The target is a smooth function of the face, so the network learns a map that holds for photos it never
  saw (held-out R@1 0.11 against 0.60 for the spreading terms on the tuning split);
- L_unif / L_hard / L_centroid / L_cone: the paper-style spreading terms (uniformity, Wang & Isola arXiv
  2005.10242; nearest same-identity view less similar than the nearest other by a margin; away from the
  original centroid; inside the face cone), off by default and a benchmark row of their own;
- L_erase_features (weight 0.5 by default): each forget identity's mean penultimate feature in the batch onto
  the retain population's mean, whitened (LEACE's linear-guardedness condition below the last layer), so the
  identity does not survive under a dropped or replaced last layer;
- L_keep / L_rel / L_keep_features: retain embeddings (and optionally their penultimate features) stay
  where the frozen original model put them.
After the last step the final linear layer is refitted in closed form (unlearn/refit.py): a 0.01 cosine
drift of the retain embeddings costs ~10% mAP and much of it is linear in the last layer's input, so one
ridge solve over every cached retain view (targets: the original outputs) recovers most of it while forget
views keep their outputs; with `refit_erase` the solve also erases the forget identities linearly.
Defaults were chosen on the LFW tuning split (seed 7, never a reported seed) with the engine's defaults
(last 5 blocks, Adam lr 5e-5, 200 steps, 16 augmented views per forget photo), then the engine's step budget
(400 since issue 12), then the erasure and keep weights: benchmarks/RESULTS.md, "Target-map forgetting",
"Step budget" and "Feature erasure".
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from faceforget.models.features import forward_with_features, penultimate_features
from faceforget.seeding import torch_generator
from faceforget.unlearn.losses import (
    centroid_repulsion_loss,
    chord_keep_loss,
    class_mean_offset_loss,
    cone_loss,
    hard_margin_loss,
    keep_loss,
    relational_loss,
    uniformity_loss,
    whitened_sq_distance,
)
from faceforget.unlearn.masks import mask_density, summed_gradients, top_fraction_mask
from faceforget.unlearn.method import Batch, LossTerms, MethodContext, MethodParams, Part, UnlearningMethod, ViewBank
from faceforget.unlearn.refit import check_refit_size, refit_final_linear
from faceforget.unlearn.target_map import MapKind, class_means, fit_target_map, whitening
from faceforget.unlearn.trainable import trainable_named_parameters

RENAMED = {"a": "w_uniform", "b": "w_hard", "c": "w_keep", "d": "w_relational", "e": "w_centroid", "g": "w_cone",
           "t": "uniform_temperature", "margin": "hard_margin", "beta": "hinge_sharpness",
           "retain_negatives": "hard_retain_negatives"}


class DispersionParams(MethodParams):
    """Weights and shapes of the dispersion objective (every term is on when its weight is > 0)."""

    renamed = RENAMED  # the old one-letter knob names are rejected with the new name of each
    added_off = frozenset({"borrowed_variation"})  # finished runs from before it stay valid while it is 0

    # forget side: the target map (default), and the paper-style spreading terms
    w_target: float = Field(10.0, ge=0, description="weight of the target-map term: each forget view toward the "
                            "map of its original features (unlearn/target_map.py)")
    target_space: Literal["output", "penultimate"] = Field(
        "output", description="where the map is defined: the output embedding, or the input of the final "
        "linear layer (the output follows; the identity is then removed below the last layer too)")
    target_map: MapKind = Field("scaled", description="scaled: the shared scaled projection; ot: the Gaussian "
                                "optimal-transport map of each identity's residuals onto the population")
    target_spread: float = Field(2.0, gt=0, description="spread of the targets relative to the population's "
                                 "(ot: std multiplier; scaled: alpha)")
    target_rank: int = Field(64, ge=1, description="between-identity directions kept by the scaled map")
    target_shrinkage: float = Field(0.5, ge=0, le=1, description="ot: weight of an identity's own residual "
                                    "covariance against the pooled within-identity one")
    mixup: float = Field(0.0, ge=0, le=1, description="share of the forget batch replaced by mixes of two views of "
                         "one identity (at the suffix input), each trained toward the map of its own original "
                         "features")
    borrowed_variation: float = Field(0.0, ge=0, le=1, description="share of the forget batch replaced by forget "
                                      "views carrying a random retain photo's within-person variation (its suffix "
                                      "input minus its identity's mean, scaled by U(0, 1)), each trained toward the "
                                      "map of its own original features: new photos of the forgotten people")
    w_erase_features: float = Field(0.5, ge=0, description="weight of a term moving each forget identity's mean "
                                    "penultimate feature in the batch onto the retain population's (whitened): "
                                    "linear erasure below the last layer")
    w_uniform: float = Field(0.0, ge=0, description="weight of the uniformity term on forget embeddings")
    uniform_temperature: float = Field(2.0, gt=0, description="uniformity temperature t")
    w_hard: float = Field(0.0, ge=0, description="weight of the hard-margin term on forget embeddings")
    hard_margin: float = Field(0.2, ge=0, le=2, description="hard-term margin in cosine")
    hinge_sharpness: float = Field(20.0, gt=0, description="sharpness beta of the smooth hinge")
    hard_retain_negatives: bool = Field(True, description="retain embeddings count as hard-term negatives")
    w_centroid: float = Field(0.0, ge=0, description="weight of the centroid repulsion on forget embeddings")
    w_cone: float = Field(0.0, ge=0, description="weight of the cone term: forget embeddings stay among faces "
                          "(cosine to the mean retain direction above its 1st percentile)")
    # retain side
    w_keep: float = Field(40.0, ge=0, description="weight of the keep term (distance to the original) on retain")
    keep_distance: Literal["cosine", "chord"] = Field(
        "cosine", description="keep term: mean 1 - cos (quadratic in the drift angle) or mean chord ||z - z0|| "
        "(linear in it, so small drifts are still pushed back)")
    w_relational: float = Field(0.0, ge=0, description="weight of the relational keep term on retain")
    w_keep_features: float = Field(0.0, ge=0, description="weight of a whitened squared distance of the retain "
                                   "views' penultimate features to the original's")
    # after training
    refit: bool = Field(True, description="after training, refit the final linear layer in closed form so retain "
                        "outputs return to the original's (forget outputs held); see unlearn/refit.py")
    refit_forget_weight: float = Field(0.2, ge=0, description="total weight of forget views vs retain (1) in the refit")
    refit_ridge: float = Field(1e-3, ge=0, description="relative ridge of the refit")
    refit_erase: bool = Field(False, description="the refit also maps each forget identity's mean feature to the "
                              "population's (linear erasure, LEACE-style)")
    mask_ratio: float = Field(1.0, gt=0, le=1, description="fraction of trainable weights allowed to change, "
                              "ranked by forget saliency / retain sensitivity (1 = all)")
    mask_retain_views: int = Field(1024, ge=1, description="retain views used to estimate the sensitivity")


class Dispersion(UnlearningMethod):
    """Forget views toward their target map (or spread apart), retain views kept where the original put them."""

    name = "dispersion"
    Params = DispersionParams

    def setup(self, ctx: MethodContext) -> None:
        """Targets of every forget view, the whitening of the feature space, centroids; the mask if asked for."""
        p = self.params
        if p.refit:
            check_refit_size(ctx.model, len(ctx.retain) + len(ctx.forget))
        if p.w_target:
            self._fit_targets(ctx)
        if p.borrowed_variation:
            ctx.state["variation"] = retain_variation(ctx.retain)
            ctx.state["input_range"] = (float(ctx.forget.inputs.min()), float(ctx.forget.inputs.max()))
        if p.w_erase_features or p.w_keep_features:  # statistics of the original's features, clean retain views
            clean = self._retain_penultimate(ctx)[ctx.retain.clean()]
            ctx.state["feature_centre"] = clean.mean(0)
            ctx.state["feature_whiten"] = whitening(clean - clean.mean(0))
        if p.w_centroid:
            clean = ctx.forget.clean()
            ctx.state["centroids"] = F.normalize(
                class_means(ctx.forget.z_original[clean], ctx.forget.labels[clean], ctx.n_identities), dim=1)
        if p.w_cone:
            retain = ctx.retain.z_original[ctx.retain.clean()]
            mean = F.normalize(retain.mean(0), dim=0)
            ctx.state["face_direction"] = mean
            ctx.state["cone_floor"] = float(torch.quantile(retain @ mean, 0.01))
        if p.mask_ratio < 1:
            ctx.param_mask = self._selective_mask(ctx)
            ctx.state["mask_density"] = mask_density(ctx.param_mask)

    def _frozen_features(self, ctx: MethodContext, inputs: torch.Tensor) -> torch.Tensor:
        """The frozen original's features of suffix inputs in the target space (no gradients)."""
        with torch.no_grad():
            if self.params.target_space == "penultimate":
                return penultimate_features(ctx.original_model, inputs, ctx.start_block)
            frozen, start = ctx.original_model, ctx.start_block
            return torch.cat([F.normalize(frozen.forward_from(inputs[lo:lo + 512].float(), start), dim=1)
                              for lo in range(0, len(inputs), 512)])

    @staticmethod
    def _retain_penultimate(ctx: MethodContext) -> torch.Tensor:
        """The frozen original's penultimate features of every retain view, computed once per run."""
        if "retain_penultimate" not in ctx.state:
            ctx.state["retain_penultimate"] = penultimate_features(ctx.original_model, ctx.retain.inputs,
                                                                   ctx.start_block)
        return ctx.state["retain_penultimate"]

    def _fit_targets(self, ctx: MethodContext) -> None:
        """Fit the map on the clean training views; store every forget view's target and the whitening."""
        p = self.params
        f_feat = (self._frozen_features(ctx, ctx.forget.inputs) if p.target_space == "penultimate"
                  else ctx.forget.z_original)
        r_feat = self._retain_penultimate(ctx) if p.target_space == "penultimate" else ctx.retain.z_original
        fc, rc = ctx.forget.clean(), ctx.retain.clean()
        target_map = fit_target_map(
            torch.cat([f_feat[fc], r_feat[rc]]), torch.cat([ctx.forget.labels[fc], ctx.retain.labels[rc]]),
            ctx.forget_label_ids, ctx.n_identities, kind=p.target_map, spread=p.target_spread,
            rank=p.target_rank, shrinkage=p.target_shrinkage)
        ctx.state["target_map"] = target_map
        ctx.state["held_identities"] = len(target_map.held)  # already dispersed by the starting model
        ctx.state["targets"] = target_map(f_feat, ctx.forget.labels)
        ctx.state["whiten"] = whitening(r_feat[rc] - target_map.centre)

    def _selective_mask(self, ctx: MethodContext) -> dict[str, torch.Tensor]:
        """
        Weights where the forget objective pulls hardest relative to how much retain embeddings depend on them.

        Score = |grad of the forget terms on clean forget views| / sqrt(retain sensitivity), the sensitivity
        being a Hutchinson estimate of the squared Jacobian of retain embeddings (random unit probes).
        """
        params = trainable_named_parameters(ctx.model)
        forget = ctx.forget.take(ctx.forget.clean())
        pull = summed_gradients(params, [sum(self._forget_terms(forget, None, ctx, step=-1).values())])
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
        """The closed-form refit of the final linear layer (when `refit`), erasing linearly if `refit_erase`."""
        p = self.params
        if p.refit:
            refit_final_linear(ctx.model, ctx.original_model, ctx.retain.inputs, ctx.forget.inputs, ctx.start_block,
                               p.refit_forget_weight, p.refit_ridge,
                               forget_labels=ctx.forget.labels if p.refit_erase else None)

    def _with_new_views(self, part: Part, ctx: MethodContext, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """
        (suffix inputs, targets) of the forget part with shares of rows replaced by new views of the same people.

        `mixup` rows mix two views of one identity; `borrowed_variation` rows add a retain photo's within-person
        variation to the view. Every replaced row is trained toward the map of the original's features of it.
        """
        p = self.params
        targets = ctx.state["targets"][part.rows]
        n_mix, n_borrow = round(p.mixup * len(part)), round(p.borrowed_variation * len(part))
        n_borrow = min(n_borrow, len(part) - n_mix)
        if n_mix + n_borrow == 0:
            return part.inputs, targets
        gen = torch_generator(ctx.seed, "dispersion-mixup", step)
        order = torch.randperm(len(part), generator=gen)
        mix, borrow = order[:n_mix], order[n_mix:n_mix + n_borrow]
        inputs = part.inputs.clone()
        if n_mix:
            weight = (part.labels[mix].view(-1, 1) == part.labels.view(1, -1)).float()
            weight[torch.arange(n_mix), mix] = 1e-6  # another view of the same person, itself only if it is alone
            partner = torch.multinomial(weight, 1, generator=gen).squeeze(1)
            lam = torch.rand(n_mix, *([1] * (part.inputs.dim() - 1)), generator=gen)
            inputs[mix] = lam * part.inputs[mix] + (1 - lam) * part.inputs[partner]
        if n_borrow:
            variation = ctx.state["variation"]
            donors = torch.randint(len(variation), (n_borrow,), generator=gen)
            scale = torch.rand(n_borrow, *([1] * (part.inputs.dim() - 1)), generator=gen)
            low, high = ctx.state["input_range"]  # stay inside the range the suffix was trained on
            inputs[borrow] = (part.inputs[borrow] + scale * variation[donors]).clamp(low, high)
        replaced = order[:n_mix + n_borrow]
        targets = targets.clone()
        targets[replaced] = ctx.state["target_map"](self._frozen_features(ctx, inputs[replaced]),
                                                    part.labels[replaced])
        return inputs, targets

    def _forget_terms(self, part: Part, negatives: torch.Tensor | None, ctx: MethodContext, step: int) -> LossTerms:
        p = self.params
        terms: LossTerms = {}
        inputs, targets = self._with_new_views(part, ctx, step) if p.w_target else (part.inputs, None)
        features, out = forward_with_features(ctx.model, inputs, ctx.start_block)
        z = F.normalize(out, dim=1)
        if p.w_target:
            if p.target_space == "penultimate":
                terms["target"] = p.w_target * whitened_sq_distance(features, targets, ctx.state["whiten"])
            else:
                terms["target"] = p.w_target * keep_loss(z, F.normalize(targets, dim=1))
        if p.w_erase_features:
            terms["erase_features"] = p.w_erase_features * class_mean_offset_loss(
                features, part.labels, ctx.state["feature_centre"], ctx.state["feature_whiten"])
        if p.w_uniform:
            terms["unif"] = p.w_uniform * uniformity_loss(z, p.uniform_temperature)
        if p.w_hard:
            terms["hard"] = p.w_hard * hard_margin_loss(z, part.labels, p.hard_margin, p.hinge_sharpness, negatives)
        if p.w_centroid:
            terms["centroid"] = p.w_centroid * centroid_repulsion_loss(z, part.labels, ctx.state["centroids"])
        if p.w_cone:
            terms["cone"] = p.w_cone * cone_loss(z, ctx.state["face_direction"], ctx.state["cone_floor"])
        return terms

    def _retain_terms(self, part: Part, ctx: MethodContext) -> tuple[LossTerms, torch.Tensor]:
        p = self.params
        features, out = forward_with_features(ctx.model, part.inputs, ctx.start_block)
        z = F.normalize(out, dim=1)
        terms: LossTerms = {}
        if p.w_keep:
            keep = chord_keep_loss if p.keep_distance == "chord" else keep_loss
            terms["keep"] = p.w_keep * keep(z, part.z_original)
        if p.w_relational:
            terms["rel"] = p.w_relational * relational_loss(z, part.z_original)
        if p.w_keep_features:
            terms["keep_features"] = p.w_keep_features * whitened_sq_distance(
                features, ctx.state["retain_penultimate"][part.rows], ctx.state["feature_whiten"])
        return terms, z

    def loss(self, batch: Batch, ctx: MethodContext) -> LossTerms:
        """The weighted terms of the dispersion objective for one batch."""
        terms: LossTerms = {}
        z_r = None
        if batch.retain is not None:
            retain_terms, z_r = self._retain_terms(batch.retain, ctx)
            terms |= retain_terms
        if batch.forget is not None:
            negatives = z_r.detach() if (self.params.hard_retain_negatives and z_r is not None) else None
            terms = self._forget_terms(batch.forget, negatives, ctx, batch.step) | terms
        return terms


def retain_variation(retain: ViewBank) -> torch.Tensor:
    """
    Within-person variation of the retain photos at the suffix input: each clean view minus its identity's mean.

    Only identities with at least two photos contribute (a single photo has no variation to lend). Pure:
    float32 (n_rows, *input shape), whatever the bank's storage dtype (uint8 pixels have signed variations).
    """
    clean = retain.clean()
    inputs, labels = retain.inputs[clean], retain.labels[clean]
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    flat = inputs.flatten(1).double()
    means = class_means(flat, inverse, len(counts))
    several = counts[inverse] >= 2
    if not bool(several.any()):
        raise ValueError("borrowed_variation needs retain identities with at least two photos")
    return (flat - means[inverse])[several].float().view(-1, *inputs.shape[1:])

"""
The glossary: every metric, group, audit and loss term a report shows, as data (the one place its text lives).

The report renders the entries it needs (`glossary_rows`); docs/report.md holds the whole table
(`glossary_markdown`, written by scripts/render_glossary.py; a test keeps the two equal). A name with no
entry (a loss term a new method adds) is listed as such, never silently left out.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Term:
    """One glossary entry: what the number is, which direction is better, what chance gives."""

    name: str
    kind: str
    meaning: str
    better: str
    chance: str


_FORGET_LOW = "forget: lower; retain: higher"
TERMS: tuple[Term, ...] = (
    # groups of queries (eval/protocol.py)
    Term("forget (held-out)", "group", "Queries: photos of the forgotten people that the unlearning never saw "
         "(forget_test), each searched against all other test photos plus the distractors (leave-one-out). "
         "This is the promise: new photos must not find the person.", "-", "-"),
    Term("forget (seen)", "group", "Queries: the photos the unlearning was given (forget_train), searched "
         "against the other training photos.", "-", "-"),
    Term("retain (held-out)", "group", "Queries: test photos of everyone else (retain_test), against the same "
         "gallery as the forget queries.", "-", "-"),
    Term("retain (seen)", "group", "Queries: the retain photos the unlearning trained on (retain_train).", "-", "-"),
    Term("lookalike", "group", "The retain identities whose original-model centroids are nearest to a forgotten "
         "person's: the people most at risk of collateral damage; held to the retain bars.", "-", "-"),
    # retrieval metrics (eval/metrics.py)
    Term("R@k", "metric", "Share of queries with a photo of the same person among the top k results (R@1: the "
         "first result is the same person).", _FORGET_LOW, "expected R@k of a random ranking, given the "
         "gallery size and the query's same-person photos (in brackets)"),
    Term("mAP", "metric", "Mean over queries of the average precision over the whole ranking (1 = every photo of "
         "the same person ranked before any other).", _FORGET_LOW, "expected AP of a random ranking (in brackets)"),
    Term("mAP@R", "metric", "mAP cut at R = the number of same-person photos in the gallery "
         "(pytorch-metric-learning's definition).", _FORGET_LOW, "expected under a random ranking (in brackets)"),
    Term("CS", "metric", "Cluster compactness: mean over people of the mean cosine between each embedding and the "
         "person's normalised centroid; lower on the forget people = more dispersed.", "forget: lower; retain: "
         "unchanged", "about 1/sqrt(n) for n random embeddings per person"),
    Term("TAR@FAR", "metric", "Verification on retain pairs: share of same-person pairs accepted at the threshold "
         "where a share FAR of different-person pairs is accepted.", "higher", "= FAR"),
    Term("E", "summary", "Forgetting efficacy: (forget mAP before - after) / (before - chance), clipped to "
         "[0, 1]; 1 = held-out forget mAP down to chance.", "higher", "-"),
    Term("U", "summary", "Utility: retain mAP after / before (1 = everyone else found as well as before).",
         "higher", "-"),
    Term("H", "summary", "Harmonic mean of E and U, 2EU / (E + U): high only when both are.", "higher", "-"),
    # audits (eval/audits/)
    Term("reenrol", "audit", "Re-enrolment attack: half of each forgotten person's new photos are enrolled in a "
         "gallery (with everyone else's test photos and the distractors), the other half search it; value: "
         "top-1 hit rate.", "lower", "a random ranking's top-1 rate"),
    Term("probe", "audit", "Linear probe: a logistic regression trained on the request's photos (forget_train "
         "embeddings), tested on new photos (forget_test); value: accuracy. High = the identity can still be "
         "read out of the embedding.", "lower (bar: 2 x chance)", "share of the most frequent person (~1/K)"),
    Term("probe_whitened", "audit", "The linear probe after whitening the embeddings with the covariance of "
         "other people's photos: no direction where the crowd barely varies can hide the identity.",
         "lower (bar: 2 x chance)", "as probe"),
    Term("probe_penultimate", "audit", "The linear probe on the penultimate features (the input of the final "
         "linear layer): whether the identity survives below the last layer.", "lower (bar: 2 x chance)",
         "as probe"),
    Term("probe_suffix_input", "audit", "The linear probe on the input of the trainable blocks: how deep the "
         "identity survives.", "lower (bar: 2 x chance)", "as probe"),
    Term("threshold", "audit", "Verification attack: share of genuine pairs of a forgotten person that a verifier "
         "keeping the original model's threshold (FAR 1e-3 on retain pairs) still accepts.", "lower", "= FAR (0.001)"),
    Term("mia", "audit", "Membership inference: AUC of telling the request's photos (forget_train) from new photos "
         "of the same people (forget_test) by their cosine to the person's leave-one-out centroid. The verdict "
         "shows the distinguishability |AUC - 0.5|: an AUC far below 0.5 (the seen photos scattered more than "
         "new ones) gives the request away as surely as far above.", "|AUC - 0.5| lower (AUC closer to 0.5)",
         "AUC 0.5"),
    Term("gallery top-1", "audit", "Gallery check: share of the forgotten people's test photos whose top-1 in the "
         "gallery, rebuilt with the unlearned model, is the same person (leave-one-out).", "lower",
         "a random ranking's top-1 rate"),
    # loss terms (unlearn/losses.py, unlearn/methods/)
    Term("unif", "loss", "Uniformity (Wang & Isola): log mean exp(-t ||z_i - z_j||^2) over forget embeddings; "
         "spreads them over the sphere.", "lower (negative)", "-"),
    Term("hard", "loss", "Hard margin: each forget view's nearest same-person view must be less similar than its "
         "nearest other person by a margin (smooth hinge); breaks R@1.", "lower (0 = met)", "-"),
    Term("centroid", "loss", "Centroid repulsion: forget views' cosine to their person's original centroid.",
         "lower", "-"),
    Term("cone", "loss", "Keeps forget embeddings among faces: hinge on the cosine to the mean retain direction "
         "below its 1st percentile.", "lower (0 = inside)", "-"),
    Term("target", "loss", "Distance (1 - cos) of forget embeddings to the target map of their original "
         "embedding.", "lower", "-"),
    Term("keep", "loss", "Retain embeddings' distance to where the original model put them (1 - cos, or the "
         "chord).", "lower", "-"),
    Term("rel", "loss", "Relational keep: squared difference of the retain pairwise cosine matrices, current vs "
         "original.", "lower", "-"),
    Term("retain_ce", "loss", "Cross-entropy of retain views on the CosFace head fitted to the original "
         "embeddings.", "lower", "-"),
    Term("forget_ce", "loss", "Negated cross-entropy of forget views on the head (gradient ascent).",
         "lower (more negative)", "-"),
    Term("forget_random_ce", "loss", "Cross-entropy of forget views toward random wrong identities (random "
         "labeling).", "lower", "-"),
    Term("forget_neighbour_ce", "loss", "Cross-entropy of forget views toward their nearest other identity "
         "(boundary shrink).", "lower", "-"),
    Term("forget_shadow_ce", "loss", "Cross-entropy of forget views toward an extra shadow class (boundary "
         "expanding).", "lower", "-"),
    Term("forget_kl", "loss", "Negated distillation KL between the model and the original on forget views "
         "(SCRUB's max step).", "lower (more negative)", "-"),
    Term("retain_kl", "loss", "Distillation KL between the model and the original on retain views (SCRUB's min "
         "step).", "lower", "-"),
    Term("l2_to_init", "loss", "Squared distance of the trainable weights to the original's (NegGrad+).", "lower",
         "-"),
    Term("l1", "loss", "L1 norm of the trainable weights times its schedule weight (l1_sparse).", "lower", "-"),
    Term("total", "loss", "The sum of the terms above that the optimiser minimises.", "lower", "-"),
)
BY_NAME = {t.name: t for t in TERMS}
HEADER = ["term", "kind", "what it is", "better", "chance"]
VERDICT_AUDITS = ("reenrol", "probe", "threshold", "mia", "gallery top-1")  # in every verdict, run or not


def lookup(name: str, kind: str) -> Term:
    """The entry for `name`; a probe_* audit without one gets the generic probe text; else a plain placeholder."""
    if name in BY_NAME:
        return BY_NAME[name]
    if kind == "audit" and name.startswith("probe"):
        where = name.removeprefix("probe").strip("_").replace("_", " ")
        return Term(name, kind, f"The linear probe on the {where} features.", "lower (bar: 2 x chance)", "as probe")
    return Term(name, kind, "(no glossary entry for this name)", "?", "?")


def glossary_rows(audits: Iterable[str] = (), loss_terms: Iterable[str] = ()) -> list[list[str]]:
    """Rows for a report: every group, metric and summary term, the verdict's audits plus `audits`, `loss_terms`."""
    terms = [t for t in TERMS if t.kind in ("group", "metric", "summary")]
    terms += [lookup(n, "audit") for n in dict.fromkeys([*VERDICT_AUDITS, *audits])]
    terms += [lookup(n, "loss") for n in dict.fromkeys(loss_terms)]
    return [[t.name, t.kind, t.meaning, t.better, t.chance] for t in terms]


def glossary_markdown() -> str:
    """The whole glossary as a Markdown table (docs/report.md); "|" inside a cell is escaped."""
    rows = [[t.name, t.kind, t.meaning, t.better, t.chance] for t in TERMS]
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", r"\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"

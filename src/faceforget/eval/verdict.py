"""
The verdict: can the deletion request be closed? One check per acceptance bar, each pass, fail or not measured.

Pure: metrics.json's dict, the audits (`report.tables.audit_summary` form), the gallery check
({"before", "after"} of `index.split_gallery.gallery_check`) and a `VerdictConfig` in, a `Verdict` out; no I/O. A check
whose input is missing (or NaN) is "not measured", never a pass. Every audit whose name starts with
"probe" is held to the probe bar. The checks, their bars and sentences are documented in docs/report.md.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from faceforget.config import VerdictConfig, validate_config

PASS, FAIL, NOT_MEASURED = "pass", "fail", "not measured"
EPS = 1e-9  # a value on the bar passes despite float rounding (0.96 - 0.95 > 0.01 in binary)
RUN_UNLEARN = "run `faceforget unlearn` (metrics.json)"
RUN_AUDIT = "run `faceforget audit --run RUN` (audits.json)"
RUN_GALLERY = "rebuild a gallery with the unlearned model and search it (`faceforget demo` records gallery.json)"


@dataclass(frozen=True)
class Check:
    """One acceptance check: the value held to the bar, how it is shown, the bar, the result, its meaning."""

    key: str
    name: str
    value: float | None
    shown: str
    original: str
    bar: str
    status: str
    meaning: str


@dataclass(frozen=True)
class Verdict:
    """Every check of a run plus the thresholds they were held to."""

    checks: tuple[Check, ...]
    thresholds: dict

    @property
    def failed(self) -> list[Check]:
        """The measured checks that fail."""
        return [c for c in self.checks if c.status == FAIL]

    @property
    def status(self) -> str:
        """"fail" if any check fails, "pass" if every check passes, else "incomplete" (some not measured)."""
        if self.failed:
            return "fail"
        return "pass" if all(c.status == PASS for c in self.checks) else "incomplete"

    @property
    def headline(self) -> str:
        """One sentence: the overall result and what it rests on."""
        measured = [c for c in self.checks if c.status != NOT_MEASURED]
        missing = len(self.checks) - len(measured)
        unmeasured = f"; {missing} not measured" if missing else ""
        if self.failed:
            names = ", ".join(c.name for c in self.failed)
            return f"FAIL: {len(self.failed)} of {len(measured)} measured checks fail ({names}){unmeasured}."
        if missing:
            return (f"NOT COMPLETE: the {len(measured)} measured checks pass{unmeasured}, so the request "
                    "cannot be closed yet.")
        return f"PASS: all {len(measured)} checks pass."

    def as_dict(self) -> dict:
        """JSON-ready: status, headline, thresholds and one dict per check."""
        return {"status": self.status, "headline": self.headline, "thresholds": dict(self.thresholds),
                "checks": [asdict(c) for c in self.checks]}


def _num(x: object) -> float | None:
    """A finite float, or None for a missing / NaN / non-numeric input."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def _pct(x: float | None) -> str:
    return "unknown" if x is None else f"{100 * x:.1f} %"


def _group(metrics: Mapping | None, model: str, group: str) -> Mapping:
    g = (metrics or {}).get(model, {}).get(group, {})
    return g if isinstance(g, Mapping) and g.get("n_queries") else {}


def _judge(key: str, name: str, value: float | None, limit: float, at_most: bool, *, bar: str, shown: str = "",
           original: str = "", meaning: str = "", missing: str = "") -> Check:
    if value is None:
        return Check(key, name, None, "not measured", original, bar, NOT_MEASURED, f"Not measured: {missing}.")
    ok = value <= limit + EPS if at_most else value >= limit - EPS
    return Check(key, name, value, shown or f"{value:.3f}", original, bar, PASS if ok else FAIL, meaning)


def _forget_checks(metrics: Mapping | None, cfg: VerdictConfig) -> list[Check]:
    held, seen = _group(metrics, "unlearned", "forget"), _group(metrics, "unlearned", "forget_seen")
    orig, orig_seen = _group(metrics, "original", "forget"), _group(metrics, "original", "forget_seen")
    checks = []
    for key, name, g, o, metric, limit, sentence in (
        ("forget_r1", "held-out forget R@1", held, orig, "R@1", cfg.forget_r1_max,
         "{v} of new photos of a forgotten person (never shown to the unlearning) still find that person first "
         "in a search; chance is {c}."),
        ("forget_map", "held-out forget mAP", held, orig, "mAP", cfg.forget_map_max,
         "Searching with a new photo of a forgotten person still ranks their other photos with mean average "
         "precision {v} (1 = all on top; chance is {c})."),
        ("seen_forget_r1", "seen forget R@1", seen, orig_seen, "R@1", cfg.seen_forget_r1_max,
         "{v} of the photos the unlearning was given (the request's own photos) still find the same person "
         "first among the training photos; chance is {c}."),
    ):
        value, chance = _num(g.get(metric)), _num(g.get("chance", {}).get(metric))
        as_text = _pct if metric == "R@1" else (lambda x: "unknown" if x is None else f"{x:.3f}")
        meaning = "" if value is None else sentence.format(v=as_text(value), c=as_text(chance))
        before = _num(o.get(metric))
        checks.append(_judge(key, name, value, limit, True, bar=f"≤ {limit:.3f}", meaning=meaning,
                             original="" if before is None else f"{before:.3f}", missing=RUN_UNLEARN))
    return checks


def _audit_value(audits: Mapping | None, name: str) -> tuple[float | None, float | None, float | None]:
    """(after, before, chance) of one audit, None where missing."""
    a = (audits or {}).get(name) or {}
    return _num(a.get("after")), _num(a.get("before")), _num(a.get("chance"))


INFORMATIONAL = ("probe", "probe_suffix_input")


def _probe_name(audit: str) -> str:
    where = audit.removeprefix("probe").strip("_").replace("_", " ")
    return f"linear probe ({where or 'output embedding'})"


def _audit_checks(audits: Mapping | None, cfg: VerdictConfig) -> list[Check]:
    checks = []
    after, before, chance = _audit_value(audits, "reenrol")
    o = "" if before is None else f"{before:.3f}"
    checks.append(_judge(
        "reenrol", "re-enrolment top-1", after, cfg.reenrol_top1_max, True, bar=f"≤ {cfg.reenrol_top1_max:.3f}",
        original=o, missing=RUN_AUDIT,
        meaning="" if after is None else f"If someone enrols new photos of a forgotten person in a fresh gallery, "
        f"{_pct(after)} of their other new photos find them first (chance {_pct(chance)})."))
    # the suffix-input probe reads the frozen prefix (the same before and after): reported, not judged
    probes = ["probe", *sorted(n for n in (audits or {}) if n.startswith("probe") and n not in INFORMATIONAL)]
    for name in probes:
        after, before, chance = _audit_value(audits, name)
        limit = None if chance is None else cfg.probe_chance_factor_max * chance
        measured = None if limit is None else after
        bar = f"≤ {cfg.probe_chance_factor_max:g} × chance" + ("" if limit is None else f" = {limit:.3f}")
        checks.append(_judge(
            name, _probe_name(name), measured, limit or 0.0, True, bar=bar, missing=RUN_AUDIT,
            original="" if before is None else f"{before:.3f}",
            meaning="" if measured is None else f"A linear classifier trained on labelled photos of the forgotten "
            f"people names the right person in {_pct(after)} of their new photos; guessing gives {_pct(chance)}."))
    after, before, chance = _audit_value(audits, "threshold")
    checks.append(_judge(
        "threshold", "verification at the original threshold", after, cfg.threshold_accept_max, True,
        bar=f"≤ {cfg.threshold_accept_max:.3f}", original="" if before is None else f"{before:.3f}",
        missing=RUN_AUDIT, meaning="" if after is None else "A face verifier that keeps the original model's "
        f"match threshold still accepts {_pct(after)} of same-person pairs of a forgotten person "
        f"(chance {_pct(chance)})."))
    auc, auc_before, _ = _audit_value(audits, "mia")
    gap = None if auc is None else abs(auc - 0.5)
    checks.append(_judge(
        "mia", "membership inference |AUC - 0.5|", gap, cfg.mia_distinguishability_max, True,
        bar=f"≤ {cfg.mia_distinguishability_max:.3f}", missing=RUN_AUDIT,
        shown="" if gap is None else f"{gap:.3f} (AUC {auc:.3f})",
        original="" if auc_before is None else f"{abs(auc_before - 0.5):.3f} (AUC {auc_before:.3f})",
        meaning="" if auc is None else f"The request's own photos can be told apart from other photos of the same "
        f"person with AUC {auc:.3f}: 0.5 means not at all, and an AUC far below 0.5 gives them away as surely "
        "as one far above."))
    return checks


def _keep_checks(metrics: Mapping | None, cfg: VerdictConfig, group: str, who: str) -> list[Check]:
    after, before = _group(metrics, "unlearned", group), _group(metrics, "original", group)
    map_a, map_b = _num(after.get("mAP")), _num(before.get("mAP"))
    r1_a, r1_b = _num(after.get("R@1")), _num(before.get("R@1"))
    ratio = None if map_a is None or not map_b else map_a / map_b
    drop = None if r1_a is None or r1_b is None else r1_b - r1_a
    return [
        _judge(f"{group}_map", f"{group} mAP vs original", ratio, cfg.retain_map_ratio_min, False,
               bar=f"≥ {cfg.retain_map_ratio_min:.3f} × original", missing=RUN_UNLEARN,
               shown="" if ratio is None else f"{ratio:.3f} × ({map_a:.3f} vs {map_b:.3f})",
               meaning="" if ratio is None else f"{who} are still found with {_pct(ratio)} of the original "
               f"model's search quality (mAP {map_a:.3f}, was {map_b:.3f})."),
        _judge(f"{group}_r1_drop", f"{group} R@1 drop", drop, cfg.retain_r1_drop_max, True,
               bar=f"≤ {cfg.retain_r1_drop_max:.3f}", missing=RUN_UNLEARN,
               shown="" if drop is None else f"{drop + 0.0:.3f} ({r1_b:.3f} → {r1_a:.3f})",
               meaning="" if drop is None else f"{who} are found first in {_pct(r1_a)} of searches, "
               f"against {_pct(r1_b)} with the original model."),
    ]


def _gallery_check(gallery: Mapping | None, cfg: VerdictConfig) -> Check:
    key = "forget_top1_same_identity"
    after = _num(((gallery or {}).get("after") or {}).get(key))
    before = _num(((gallery or {}).get("before") or {}).get(key))
    return _judge("gallery_top1", "gallery top-1 after the rebuild", after, cfg.gallery_top1_max, True,
                  bar=f"≤ {cfg.gallery_top1_max:.3f}", original="" if before is None else f"{before:.3f}",
                  missing=RUN_GALLERY, meaning="" if after is None else "After the gallery was re-embedded with "
                  f"the unlearned model, {_pct(after)} of a forgotten person's photos find that person first in it.")


def judge(metrics: Mapping | None, audits: Mapping | None = None, gallery: Mapping | None = None,
          cfg: VerdictConfig | None = None) -> Verdict:
    """Every check (layout in the module docstring); a missing input makes its checks "not measured"."""
    cfg = cfg or VerdictConfig()
    checks = [*_forget_checks(metrics, cfg), *_audit_checks(audits, cfg),
              *_keep_checks(metrics, cfg, "retain", "Everyone else")]
    if _group(metrics, "unlearned", "lookalike") or _group(metrics, "original", "lookalike"):
        checks += _keep_checks(metrics, cfg, "lookalike", "The people who look most like a forgotten person")
    checks.append(_gallery_check(gallery, cfg))
    return Verdict(tuple(checks), cfg.model_dump())


def thresholds_of(snapshot: Mapping) -> VerdictConfig:
    """The bars a run's config.json recorded under `config.verdict` (the defaults when it has none)."""
    return validate_config(VerdictConfig, dict(snapshot.get("config", {}).get("verdict", {})), "config.verdict")

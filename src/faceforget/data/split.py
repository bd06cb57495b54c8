"""
The split protocol (docs/protocol.md): records -> roles + sha256 -> SplitManifest; reload check.

Decisions (docs/protocol.md):
- identical bytes twice within one identity are collapsed to the first path (sorted) before splitting, and
  listed in `SplitReport.duplicates`; the same bytes under two identities (so two roles, or two labels) is an
  error naming both files.
- each identity's train/test draw uses its own generator `numpy_rng(seed, "split", identity)`, so it does
  not change when other identities are added or removed; `n_test = max(2, round(test_fraction * n))`
  (Python's round), capped at n - 1.
"""
from __future__ import annotations

import difflib
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from faceforget.data.errors import (
    BadImageError,
    DataError,
    DatasetMismatchError,
    DuplicateImageError,
    first_few,
)
from faceforget.data.hashing import check_files
from faceforget.data.records import ROLES, FaceRecord, SplitManifest
from faceforget.seeding import numpy_rng


@dataclass(frozen=True)
class SplitReport:
    """What make_split did besides assigning roles: bad files skipped, duplicates collapsed, ids dropped."""

    bad_files: tuple[tuple[str, str], ...] = ()  # (path, reason), skipped because skip_bad
    duplicates: tuple[tuple[str, str], ...] = ()  # (kept, dropped): same bytes within one identity
    dropped_identities: tuple[str, ...] = ()  # fewer than min_images usable images
    counts: dict[str, int] = field(default_factory=dict)  # images per role
    identities: dict[str, int] = field(default_factory=dict)  # forget / retain / distractor identities

    def summary(self) -> str:
        """A few human-readable lines for the CLI."""
        ids = ", ".join(f"{v} {k}" for k, v in self.identities.items())
        imgs = ", ".join(f"{v} {k}" for k, v in self.counts.items())
        return (f"identities: {ids}\nimages: {imgs}\n{len(self.dropped_identities)} identities dropped "
                f"(too few images), {len(self.bad_files)} bad files skipped, "
                f"{len(self.duplicates)} duplicate images collapsed")


def make_split(records: Sequence[FaceRecord], *, data_root: str | Path, forget: int | None = None,
               forget_list: Sequence[str] | None = None, seed: int = 0, min_images: int = 5,
               test_fraction: float = 0.5, distractor_records: Sequence[FaceRecord] | None = None,
               distractor_root: str | Path | None = None, skip_bad: bool = False,
               progress: bool = True) -> tuple[SplitManifest, SplitReport]:
    """Give every usable image a role and its sha256; return the manifest and a report of what was skipped."""
    _check_args(forget, forget_list, seed, min_images, test_fraction, distractor_records, distractor_root)
    groups = _group(records, "data")
    dgroups = _group(distractor_records, "distractor") if distractor_records is not None else {}
    _check_names(groups, dgroups, forget_list)
    entries = [("data", i, p) for i, paths in groups.items() if len(paths) >= min_images for p in paths]
    entries += [("distractors", i, p) for i, paths in dgroups.items() for p in paths]
    roots = {"data": Path(data_root), "distractors": Path(distractor_root or ".")}
    checks = check_files([roots[s] / p for s, _, p in entries], decode=True, progress=progress,
                         description=f"checking {len(entries)} images")
    bad = [c.error for c in checks if c.error is not None]
    if bad and not skip_bad:
        more = f" ({len(bad) - 1} more bad files; skip_bad skips and counts them)" if len(bad) > 1 else ""
        raise BadImageError(bad[0].path, bad[0].reason + more)
    usable: dict[tuple[str, str], list[tuple[str, str]]] = {}
    first_by_sha: dict[tuple[str, str, str], str] = {}
    duplicates = []
    for (source, identity, path), check in zip(entries, checks, strict=True):
        if check.sha256 is None:
            continue
        kept = first_by_sha.setdefault((source, identity, check.sha256), path)
        if kept != path:
            duplicates.append((kept, path))
        else:
            usable.setdefault((source, identity), []).append((path, check.sha256))
    kept_ids = {i: items for (s, i), items in usable.items() if s == "data" and len(items) >= min_images}
    n_usable = {i: len(usable.get(("data", i), ())) if len(paths) >= min_images else len(paths)
                for i, paths in groups.items()}  # identities below min_images were never opened
    forget_ids = _choose_forget(kept_ids, n_usable, forget, forget_list, seed, min_images)
    out = []
    for identity, items in kept_ids.items():
        prefix = "forget" if identity in forget_ids else "retain"
        test = _test_indices(len(items), seed, identity, test_fraction)
        out += [FaceRecord(p, identity, f"{prefix}_{'test' if k in test else 'train'}", sha)
                for k, (p, sha) in enumerate(items)]
    out += [FaceRecord(p, i, "distractor", sha, "distractors")
            for (s, i), items in usable.items() if s == "distractors" for p, sha in items]
    data_root, distractor_root = _abs(data_root), _abs(distractor_root)
    _check_cross_duplicates(out, data_root, distractor_root)
    counts = dict(Counter(r.role for r in out))
    counts = {role: counts.get(role, 0) for role in ROLES}
    identities = {"forget": len(forget_ids), "retain": len(kept_ids) - len(forget_ids),
                  "distractor": sum(s == "distractors" for s, _ in usable)}
    params = {"forget": forget, "forget_list": sorted(set(forget_list)) if forget_list else None,
              "seed": seed, "min_images": min_images, "test_fraction": float(test_fraction),
              "skip_bad": skip_bad, "counts": counts, "identities": identities,
              "bad_files_skipped": len(bad), "duplicates_dropped": len(duplicates)}
    manifest = SplitManifest.from_records(out, params, data_root, distractor_root)
    report = SplitReport(tuple((str(e.path), e.reason) for e in bad), tuple(duplicates),
                         tuple(i for i in groups if i not in kept_ids), counts, identities)
    return manifest, report


def load_split(path: str | Path, data_root: str | Path | None = None,
               distractor_root: str | Path | None = None, verify: bool = True,
               progress: bool = True) -> SplitManifest:
    """
    Load a manifest and (with `verify`) check every file exists under the roots with its recorded sha256.

    Roots default to the ones stored in the manifest; the returned manifest carries the roots used.
    """
    manifest = SplitManifest.load(path)
    data_root = _abs(data_root if data_root is not None else manifest.data_root)
    if data_root is None:
        raise DataError(f"{path} stores no data root; give data_root")
    distractor_root = _abs(distractor_root if distractor_root is not None else manifest.distractor_root)
    if distractor_root is None and any(r.source == "distractors" for r in manifest.records):
        raise DataError(f"{path} has distractor images but no distractor root is stored or given")
    manifest = replace(manifest, data_root=data_root, distractor_root=distractor_root)
    if verify:
        files = [r.resolve(data_root, distractor_root) for r in manifest.records]
        checks = check_files(files, decode=False, progress=progress, description="verifying split files")
        rows = zip(files, manifest.records, checks, strict=True)
        differ = [(f, r, c) for f, r, c in rows if c.sha256 != r.sha256]
        if differ:
            examples = [f"{f} ({c.error.reason if c.error else f'sha256 {c.sha256[:12]} != {r.sha256[:12]}'})"
                        for f, r, c in differ[:3]]
            where = data_root + (f" and {distractor_root}" if distractor_root else "")
            raise DatasetMismatchError(len(differ), len(files), examples, where)
    return manifest


def _check_args(forget: int | None, forget_list: Sequence[str] | None, seed: int, min_images: int,
                test_fraction: float, distractor_records: object, distractor_root: object) -> None:
    if (forget is None) == (forget_list is None):
        raise ValueError("give exactly one of forget (a count K) or forget_list (identity names)")
    if forget is not None and (isinstance(forget, bool) or not isinstance(forget, int) or forget < 1):
        raise ValueError(f"forget must be an integer >= 1, got {forget!r}")
    if forget_list is not None and (isinstance(forget_list, str) or not forget_list):
        raise ValueError(f"forget_list must be a non-empty list of identity names, got {forget_list!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if isinstance(min_images, bool) or not isinstance(min_images, int) or min_images < 3:
        raise ValueError(f"min_images must be an integer >= 3 (2 test + 1 train image), got {min_images!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    if (distractor_records is None) != (distractor_root is None):
        raise ValueError("distractor_records and distractor_root must be given together")


def _group(records: Iterable[FaceRecord], what: str) -> dict[str, list[str]]:
    """Identity -> sorted relative paths, identities sorted; a path listed twice is an error."""
    groups: dict[str, list[str]] = {}
    for r in records:
        groups.setdefault(r.identity, []).append(r.path)
    if not groups and what == "data":
        raise DataError("no data images to split")
    repeated = sorted(p for p, n in Counter(p for ps in groups.values() for p in ps).items() if n > 1)
    if repeated:
        raise DataError(f"{what} records list {len(repeated)} path(s) more than once: {first_few(repeated)}")
    return {i: sorted(groups[i]) for i in sorted(groups)}


def _check_names(groups: dict[str, list[str]], dgroups: dict[str, list[str]],
                 forget_list: Sequence[str] | None) -> None:
    both = sorted(set(groups) & set(dgroups))
    if both:
        raise DataError(f"{len(both)} distractor identities also exist in the data: {first_few(both)}")
    unknown = sorted(set(forget_list or ()) - set(groups))
    if unknown:
        hints = [f"{n} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(n, groups, 1)) else n
                 for n in unknown]
        raise DataError(f"{len(unknown)} forget identities are not in the data: {first_few(hints)}")


def _choose_forget(kept: dict[str, list], n_usable: dict[str, int], forget: int | None,
                   forget_list: Sequence[str] | None, seed: int, min_images: int) -> set[str]:
    """The forget identities: the explicit list (each needs min_images) or K drawn from the eligible ones."""
    if forget_list is not None:
        few = [f"{n} ({n_usable[n]} usable)" for n in sorted(set(forget_list)) if n not in kept]
        if few:
            raise DataError(f"{len(few)} forget identities have fewer than min_images={min_images} images: "
                            f"{first_few(few)}")
        return set(forget_list)
    eligible = [i for i, items in kept.items() if len(items) >= 2 * min_images]
    if forget > len(eligible):
        raise DataError(f"cannot draw {forget} forget identities: only {len(eligible)} identities have "
                        f">= 2 * min_images = {2 * min_images} images")
    return {eligible[k] for k in numpy_rng(seed, "forget").choice(len(eligible), forget, replace=False)}


def _test_indices(n: int, seed: int, identity: str, test_fraction: float) -> set[int]:
    n_test = min(n - 1, max(2, round(test_fraction * n)))
    return set(numpy_rng(seed, "split", identity).permutation(n)[:n_test].tolist())


def _check_cross_duplicates(records: list[FaceRecord], data_root: str, distractor_root: str | None) -> None:
    first: dict[str, FaceRecord] = {}
    pairs = []
    for r in records:
        other = first.setdefault(r.sha256, r)
        if other is not r:
            pairs.append((other, r))
    if pairs:
        def name(r: FaceRecord) -> str:
            return f"{r.resolve(data_root, distractor_root)} ({r.role} of {r.identity})"
        raise DuplicateImageError([(a.path, b.path) for a, b in pairs],
                                  f"{len(pairs)} image(s) have the same bytes under two roles/identities: "
                                  + first_few([f"{name(a)} = {name(b)}" for a, b in pairs], 3))


def _abs(root: str | Path | None) -> str | None:
    return None if root is None or root == "" else os.path.abspath(root)

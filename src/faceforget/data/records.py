"""FaceRecord and SplitManifest: the protocol's data types (plain data, JSON round-trip, content hash)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

from faceforget.fileio import canonical_json, sha256_bytes, write_text_atomic

ROLES = ("forget_train", "forget_test", "retain_train", "retain_test", "distractor")
SOURCES = ("data", "distractors")
MANIFEST_FORMAT = "faceforget-split-v1"


@dataclass(frozen=True)
class FaceRecord:
    """One image: path relative to its source root, identity label, protocol role and file sha256."""

    path: str
    identity: str
    role: str | None = None
    sha256: str | None = None
    source: str = "data"  # "data" (the --data root) or "distractors" (the --distractors root)

    def resolve(self, data_root: str | Path, distractor_root: str | Path | None = None) -> Path:
        """Absolute path of the image given the roots it is relative to."""
        if self.source == "distractors":
            if distractor_root is None:
                raise ValueError(f"{self.path} is a distractor but no distractor root was given")
            return Path(distractor_root) / self.path
        return Path(data_root) / self.path


@dataclass(frozen=True)
class SplitManifest:
    """
    The protocol's output: every image with its role, the parameters that made it, and its hash.

    `hash` covers params + records (relative paths, identities, roles, sha256), not the roots, so the
    same dataset gives the same hash on every machine.
    """

    records: tuple[FaceRecord, ...]
    params: dict = field(default_factory=dict)
    data_root: str = ""
    distractor_root: str | None = None

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON of params and records."""
        return sha256_bytes(canonical_json(self._hashed()).encode())

    def _hashed(self) -> dict:
        return {"params": self.params, "records": [asdict(r) for r in self.records]}

    def by_role(self, *roles: str) -> list[FaceRecord]:
        """Records whose role is one of `roles`, in manifest order."""
        unknown = set(roles) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}; valid: {ROLES}")
        return [r for r in self.records if r.role in roles]

    @property
    def forget_identities(self) -> list[str]:
        """Sorted names of the identities to forget."""
        return sorted({r.identity for r in self.records if r.role in ("forget_train", "forget_test")})

    @property
    def retain_identities(self) -> list[str]:
        """Sorted names of the retained identities."""
        return sorted({r.identity for r in self.records if r.role in ("retain_train", "retain_test")})

    def to_json(self) -> str:
        """Stable JSON text: identical manifests give identical bytes."""
        body = {
            "format": MANIFEST_FORMAT,
            "hash": self.hash,
            "data_root": self.data_root,
            "distractor_root": self.distractor_root,
            **self._hashed(),
        }
        return json.dumps(body, indent=1, sort_keys=True) + "\n"

    def save(self, path: str | Path) -> None:
        """Write the manifest atomically."""
        write_text_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "SplitManifest":
        """Read a manifest and check its stored hash against its content."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"split manifest not found: {path}")
        try:
            body = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(body, dict) or body.get("format") != MANIFEST_FORMAT:
            found = body.get("format") if isinstance(body, dict) else type(body).__name__
            raise ValueError(f"{path} is not a faceforget split manifest (format {found!r})")
        manifest = cls(
            records=_records(body.get("records"), path),
            params=_typed(body, "params", dict, path),
            data_root=_typed(body, "data_root", str, path, ""),
            distractor_root=_typed(body, "distractor_root", (str, type(None)), path, None),
        )
        if manifest.hash != body.get("hash"):
            raise ValueError(f"{path}: manifest hash mismatch (file edited or corrupted)")
        return manifest

    @staticmethod
    def from_records(records: Iterable[FaceRecord], params: dict, data_root: str,
                     distractor_root: str | None) -> "SplitManifest":
        """Build a manifest from role-assigned records."""
        return SplitManifest(tuple(records), dict(params), str(data_root),
                             None if distractor_root is None else str(distractor_root))



_RECORD_FIELDS = {"path": str, "identity": str, "role": (str, type(None)), "sha256": (str, type(None))}


def _typed(body: dict, key: str, kind: type | tuple[type, ...], path: Path, default: object = ...) -> object:
    """body[key] checked against `kind` (may be missing when a default is given), errors naming the file."""
    if key not in body and default is not ...:
        return default
    if key not in body or not isinstance(body[key], kind):
        raise ValueError(f"{path}: field {key!r} is missing or of the wrong type (edited by hand?)")
    return body[key]


def _records(rows: object, path: Path) -> tuple[FaceRecord, ...]:
    """FaceRecords from the manifest's "records" list; a malformed row is an error naming its index."""
    if not isinstance(rows, list):
        raise ValueError(f"{path}: field 'records' is missing or not a list (edited by hand?)")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: record {i} is not an object (edited by hand?)")
        problems = [f"unknown field {k!r}" for k in sorted(set(row) - {*_RECORD_FIELDS, "source"})]
        problems += [f"{k!r} missing or of the wrong type" for k, t in _RECORD_FIELDS.items()
                     if k not in row or not isinstance(row[k], t)]
        if row.get("role") not in (*ROLES, None) or row.get("source", "data") not in SOURCES:
            problems.append(f"role {row.get('role')!r} / source {row.get('source')!r} unknown")
        if problems:
            raise ValueError(f"{path}: record {i} is malformed: {'; '.join(problems)} (edited by hand?)")
        out.append(FaceRecord(**row))
    return tuple(out)

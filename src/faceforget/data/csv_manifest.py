"""CSV manifest reader: columns `path,identity`; paths relative to the CSV's folder or absolute."""
from __future__ import annotations

import csv
import os
from pathlib import Path

from faceforget.data.errors import DataError, first_few
from faceforget.data.records import FaceRecord

REQUIRED_COLUMNS = ("path", "identity")


def read_csv_manifest(path: str | Path) -> tuple[list[FaceRecord], Path]:
    """
    Records listed in a CSV (extra columns ignored) and the root their paths are relative to.

    The root is the CSV's folder. Absolute paths inside it are made relative; absolute paths
    outside it stay absolute (they resolve the same against any root but tie the split to this machine).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"CSV manifest not found: {path}")
    root = path.parent.absolute()
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; found {columns}, "
                            f"need {list(REQUIRED_COLUMNS)}")
        reader.fieldnames = columns
        rows = [(reader.line_num, row) for row in reader]
    records, blank, seen, repeated = [], [], set(), []
    for line, row in rows:
        rel, identity = (row.get("path") or "").strip(), (row.get("identity") or "").strip()
        if not rel or not identity:
            blank.append(line)
            continue
        rel = _relative(rel, root)
        if rel in seen:
            repeated.append(rel)
        seen.add(rel)
        records.append(FaceRecord(path=rel, identity=identity))
    if blank:
        raise DataError(f"{path}: empty path or identity on line(s) {first_few(blank)}")
    if repeated:
        raise DataError(f"{path}: {len(repeated)} path(s) listed more than once: {first_few(repeated)}")
    if not records:
        raise DataError(f"{path} lists no images")
    absent = [r.path for r in records if not (root / r.path).is_file()]
    if absent:
        raise DataError(f"{path}: {len(absent)} of {len(records)} listed files not found "
                        f"(relative to {root}): {first_few(absent)}")
    return records, root


def _relative(rel: str, root: Path) -> str:
    """A posix path relative to `root` when possible, else the absolute path."""
    p = Path(rel)
    if p.is_absolute():
        try:
            return p.relative_to(root).as_posix()
        except ValueError:
            return p.as_posix()
    return Path(os.path.normpath(p)).as_posix()

"""Dispatch a `--data` argument to its reader: a folder per identity, or a CSV manifest."""
from __future__ import annotations

from pathlib import Path

from faceforget.data.csv_manifest import read_csv_manifest
from faceforget.data.errors import DataError
from faceforget.data.folders import scan_folder
from faceforget.data.records import FaceRecord


def read_records(data: str | Path) -> tuple[Path, list[FaceRecord]]:
    """(root, records) for a folder-per-identity directory or a `.csv` manifest with path,identity."""
    data = Path(data)
    if data.is_dir():
        return data.absolute(), scan_folder(data)
    if data.is_file() and data.suffix.lower() == ".csv":
        records, root = read_csv_manifest(data)
        return root, records
    if not data.exists():
        raise DataError(f"data not found: {data}")
    raise DataError(f"unsupported data source {data}: give a folder per identity or a path,identity .csv")

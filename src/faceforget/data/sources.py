"""Dispatch a `--data` argument to its reader: folder per identity, CSV manifest, CelebA, VGGFace2, RecordIO."""
from __future__ import annotations

from pathlib import Path

from faceforget.data.celeba import is_celeba, read_celeba
from faceforget.data.csv_manifest import read_csv_manifest
from faceforget.data.errors import DataError
from faceforget.data.folders import scan_folder
from faceforget.data.recordio import read_recordio_records, recordio_file
from faceforget.data.records import FaceRecord
from faceforget.data.vggface2 import is_vggface2, read_vggface2


def read_records(data: str | Path) -> tuple[Path, list[FaceRecord]]:
    """
    (root, records) of a dataset.

    A folder per identity, a `.csv` manifest (path,identity), a CelebA or VGGFace2 root, or an
    insightface `.rec` (or a folder with `train.rec`), which is unpacked once beside itself.
    """
    data = Path(data)
    rec = recordio_file(data)
    if rec is not None:
        return read_recordio_records(rec)
    if data.is_dir() and is_celeba(data):
        return data.absolute(), read_celeba(data)
    if data.is_dir() and is_vggface2(data):
        return data.absolute(), read_vggface2(data)
    if data.is_dir():
        return data.absolute(), scan_folder(data)
    if data.is_file() and data.suffix.lower() == ".csv":
        records, root = read_csv_manifest(data)
        return root, records
    if not data.exists():
        raise DataError(f"data not found: {data}")
    raise DataError(f"unsupported data source {data}: give a folder per identity, a path,identity .csv, "
                    "a CelebA or VGGFace2 folder, or an insightface .rec")

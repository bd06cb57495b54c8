"""
Where the demo's LFW comes from: --data, FACEFORGET_DATA, the cache, else a verified download, aligned.

LFW (Huang et al. 2007; Huang, Mattar, Lee, Learned-Miller 2012) is for research use only: cite its
papers and never redistribute it or use it commercially. A prepared folder holds `dlib150/` (identities
with >= 5 images) and `distractors_dlib150/` (1-4 images) as 150x150 dlib chips.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from faceforget.data.align import dlib_chip, require_dlib
from faceforget.data.download import DownloadError, extract_tar_safely, fetch_verified
from faceforget.data.errors import DataError
from faceforget.data.images import load_image
from faceforget.fileio import PRIVATE_DIR, make_private_dirs, write_json_atomic
from faceforget.progress import progress_bar

RESEARCH_ONLY = "LFW is for research use only: cite its papers and never redistribute it or use it commercially"
MIN_IMAGES = 5
LFW_SIZE = (250, 250)
CHIP_QUALITY = 95  # JPEG quality of the shipped dlib150/ chips


@dataclass(frozen=True)
class LfwArchive:
    """One downloadable LFW release: cache folder name, URL, pinned checksum and where it is published."""

    key: str
    filename: str
    url: str
    algorithm: str
    digest: str
    checksum_source: str


ARCHIVES = (
    LfwArchive("deepfunneled", "lfw-deepfunneled.tgz", "http://vis-www.cs.umass.edu/lfw/lfw-deepfunneled.tgz",
               "md5", "68331da3eb755a505a502b5aacb3c201",
               "md5sum on the LFW site; pinned in torchvision/datasets/lfw.py"),
    LfwArchive("funneled", "lfw-funneled.tgz", "https://ndownloader.figshare.com/files/5976015",
               "sha256", "b47c8422c8cded889dc5a13418c4bc2abbda121092b3533a83306f90d900100a",
               "scikit-learn sklearn/datasets/_lfw.py FUNNELED_ARCHIVE"),
)


def default_cache_dir() -> Path:
    """`$FACEFORGET_CACHE/lfw`, else `$XDG_CACHE_HOME/faceforget/lfw`, else `~/.cache/faceforget/lfw`."""
    root = os.environ.get("FACEFORGET_CACHE")
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "faceforget"
    return Path(root) / "lfw"


def locate_lfw(data: str | Path | None = None, *, download: bool = False,
               cache_dir: str | Path | None = None, progress: bool = True) -> Path:
    """
    The prepared LFW folder (holding `dlib150/`): `data`, else FACEFORGET_DATA, else the cache, else a download.

    An explicit `data` that is not a prepared folder is an error; a FACEFORGET_DATA without `dlib150/` is
    skipped (and named in the error if nothing else is found); the download runs only with `download`.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if data is not None and str(data):
        found = _prepared(Path(data))
        if found is None:
            raise DataError(f"--data {data}: no dlib150/ folder there. " + how_to_provide(cache))
        return found
    tried = ["--data: not given"]
    env = os.environ.get("FACEFORGET_DATA")
    found = _prepared(Path(env)) if env else None
    if found is not None:
        return found
    tried.append(f"FACEFORGET_DATA={env}: no dlib150/ folder there" if env else "FACEFORGET_DATA: not set")
    for candidate in (cache, *(cache / a.key for a in ARCHIVES)):
        if (found := _prepared(candidate)) is not None:
            return found
    tried.append(f"cache {cache}: no prepared copy")
    if download:
        return download_lfw(cache, progress=progress)
    raise DataError("LFW data not found (tried " + "; ".join(tried) + "). " + how_to_provide(cache))


def how_to_provide(cache: Path) -> str:
    """The three ways to give the demo its data, and the licence note."""
    return (f"Provide it with `--data DIR` or `FACEFORGET_DATA=DIR` (DIR holds dlib150/ and distractors_dlib150/), "
            f"or with internet access run `faceforget demo --download` (about 110 MB into {cache}; aligning needs "
            f"the dlib extra: pip install \"faceforget[dlib]\"). {RESEARCH_ONLY}.")


def _prepared(path: Path) -> Path | None:
    if (path / "dlib150").is_dir():
        return path
    if path.name == "dlib150" and path.is_dir():
        return path.parent
    return None


def download_lfw(cache_dir: str | Path | None = None, *, progress: bool = True) -> Path:
    """Fetch LFW (deep-funneled, else funneled), verify its checksum, extract and align it; the prepared folder."""
    require_dlib()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    failures = []
    for archive in ARCHIVES:
        if (cache / archive.key / "dlib150").is_dir():
            return cache / archive.key
        try:
            tgz = fetch_verified(archive.url, cache / archive.filename, archive.algorithm, archive.digest,
                                 progress, f"LFW {archive.filename} (research use only)")
        except DownloadError as exc:
            failures.append(str(exc))
            continue
        return prepare_lfw(tgz, cache / archive.key, archive, progress=progress)
    raise DataError("could not download LFW: " + "; ".join(failures) + ". Offline? " + how_to_provide(cache))


def prepare_lfw(tgz: Path, out_dir: Path, archive: LfwArchive, *, progress: bool = True) -> Path:
    """Extract `tgz` and write its dlib chips to `out_dir` (staged in a temp folder, then renamed)."""
    make_private_dirs(out_dir.parent)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        groups = _images_by_identity(extract_tar_safely(tgz, work / "raw"), tgz)
        staged = work / "prepared"
        with progress_bar("aligning LFW with dlib", sum(map(len, groups.values())), progress) as bar:
            for identity, paths in groups.items():
                folder = "dlib150" if len(paths) >= MIN_IMAGES else "distractors_dlib150"
                (staged / folder / identity).mkdir(parents=True)
                for path in paths:
                    chip = dlib_chip(load_image(path, LFW_SIZE))
                    Image.fromarray(chip).save(staged / folder / identity / path.name, quality=CHIP_QUALITY)
                    bar.advance()
        write_json_atomic(staged / "SOURCE.json", {
            "archive": archive.filename, "url": archive.url, archive.algorithm: archive.digest,
            "checksum_source": archive.checksum_source, "alignment": "dlib get_face_chip(size=150, padding=0.25)",
            "min_images": MIN_IMAGES, "licence": RESEARCH_ONLY,
        })
        staged.chmod(PRIVATE_DIR)  # face images: the prepared folder is owner-only
        os.rename(staged, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out_dir


def _images_by_identity(raw: Path, tgz: Path) -> dict[str, list[Path]]:
    groups: defaultdict[str, list[Path]] = defaultdict(list)
    for path in sorted(raw.glob("*/*/*.jpg")):
        groups[path.parent.name].append(path)
    if not groups:
        raise DataError(f"{tgz} holds no <folder>/<identity>/<image>.jpg files: not an LFW archive")
    return dict(sorted(groups.items()))

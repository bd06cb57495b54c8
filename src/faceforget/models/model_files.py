"""Model files shipped inside PyPI packages: located without importing the package, sha256-verified."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from faceforget.fileio import sha256_file


def package_file(package: str, relative: str, hint: str) -> Path:
    """Path of `relative` inside the installed `package`; FileNotFoundError with `hint` when absent."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {package} package is not installed: {hint}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{relative} is missing from the {package} package: {hint}")
    return path


def verify_sha256(path: str | Path, expected: str, hint: str) -> None:
    """Raise ValueError naming the file and both digests unless its sha256 is `expected`."""
    digest = sha256_file(path)
    if digest != expected:
        raise ValueError(f"checksum mismatch for {path}: sha256 {digest}, expected {expected}; {hint}")

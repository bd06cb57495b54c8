"""Errors of the data layer: each says what is wrong and where (file, folder, identity)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class DataError(ValueError):
    """A dataset, manifest or split that cannot be used as given."""


class BadImageError(DataError):
    """An image file that is missing, unreadable, corrupt or truncated."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"bad image {path}: {reason}")
        self.path = Path(path)
        self.reason = reason


class DuplicateImageError(DataError):
    """The same image bytes appear under two identities or roles."""

    def __init__(self, pairs: Sequence[tuple[str, str]], message: str) -> None:
        super().__init__(message)
        self.pairs = list(pairs)


class DatasetMismatchError(DataError):
    """A split manifest whose files are missing or differ from the dataset it is checked against."""

    def __init__(self, n_differ: int, n_total: int, examples: Sequence[str], where: str) -> None:
        super().__init__(
            f"split was made from another dataset: {n_differ} of {n_total} files differ, e.g. "
            + "; ".join(examples) + f" (checked under {where})"
        )
        self.n_differ = n_differ
        self.n_total = n_total
        self.examples = list(examples)


def first_few(items: Sequence[object], n: int = 5) -> str:
    """`a, b, c (and 7 more)`: a short listing for error messages."""
    shown = ", ".join(str(x) for x in items[:n])
    return shown + (f" (and {len(items) - n} more)" if len(items) > n else "")

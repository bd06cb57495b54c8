"""
FAISS gallery: L2-normalised float32 embeddings (cosine = inner product) plus one metadata row each.

Index kinds (`faiss_index.py`): exact `flat` by default; `auto` switches to `ivf` above `ivf_threshold`
rows. Deletes rebuild the index from the retained vectors, so a deleted person's vectors are absent from
memory and from the next saved file, and IVF centroids are retrained without them (a centroid over a few
dozen vectors can sit close to one person's mean embedding). No tombstones, no separate vector file.

Rows keep a stable integer id for their lifetime (deletes never renumber, rebuilds keep ids). Paths are
stored as given; with `root` set they are relative to it (`resolve` joins them). `model` records the model
spec the vectors came from (a registered name or a model.pt path), so a mismatch can name it. On disk:
see `store.py`; `delete_saved` is the locked read-delete-save of a saved gallery. Built with
`null_embeddings` (the model's answer to `query_quality.null_images`), a gallery can flag queries that
are probably not faces.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import faiss
import numpy as np

from faceforget.fileio import atomic_open, sha256_bytes, sha256_file, write_json_atomic
from faceforget.index.faiss_index import INDEX_KINDS, make_index, normalise
from faceforget.index.query_quality import NonFaceCheck
from faceforget.index.store import POINTER, commit, current_version, writing

FORMAT = "faceforget-gallery-v1"
INDEX_FILE, META_FILE = "index.faiss", "metadata.json"
ROW_FIELDS = {"id": int, "path": str, "identity": str}
LOAD_ATTEMPTS = 5  # a reader whose version a writer removed meanwhile retries with the new one


class Labelled(Protocol):
    """Anything with an image path and an identity label (e.g. `FaceRecord`)."""

    path: str
    identity: str


@dataclass(frozen=True)
class Row:
    """One gallery entry: stable id, image path as stored, identity."""

    id: int
    path: str
    identity: str


@dataclass(frozen=True)
class Hit:
    """One search result; `score` is the cosine similarity."""

    id: int
    identity: str
    path: str
    score: float


class Gallery:
    """A searchable set of face embeddings with identity metadata; build, search, delete, save, load."""

    def __init__(self, index: faiss.Index, rows: Iterable[Row], *, model_fingerprint: str, kind: str,
                 nprobe: int, root: str | None = None, model: str | None = None,
                 nonface: NonFaceCheck | None = None) -> None:
        self._index, self._rows = index, {r.id: r for r in rows}
        self.model_fingerprint, self.kind, self.nprobe, self.root = model_fingerprint, kind, nprobe, root
        self.model, self.nonface = model, nonface

    @classmethod
    def build(cls, embeddings: np.ndarray, records: Sequence[Labelled], *, model_fingerprint: str,
              kind: str = "auto", ivf_threshold: int = 100_000, nprobe: int = 32,
              root: str | os.PathLike | None = None, ids: Sequence[int] | None = None,
              model: str | None = None, null_embeddings: np.ndarray | None = None) -> Gallery:
        """
        Index `embeddings` (n, dim) for `records` (row i <-> record i); `ids` default to 0..n-1.

        With `null_embeddings` (the model's embeddings of `query_quality.null_images`) the non-face check
        is calibrated on these rows.
        """
        if kind not in ("auto", *INDEX_KINDS):
            raise ValueError(f"unknown index kind {kind!r}; valid: auto, {', '.join(INDEX_KINDS)}")
        if not model_fingerprint or nprobe < 1:
            raise ValueError(f"need a non-empty model_fingerprint and nprobe >= 1, got "
                             f"{model_fingerprint!r}, {nprobe}")
        vectors = normalise(embeddings, None, "embeddings")
        ids = list(range(len(records))) if ids is None else [int(i) for i in ids]
        if not len(vectors) == len(records) == len(ids) or len(set(ids)) != len(ids):
            raise ValueError(f"need one embedding and one unique id per record: {len(vectors)} embeddings, "
                             f"{len(records)} records, {len(set(ids))} unique of {len(ids)} ids")
        if kind == "auto":
            kind = "ivf" if len(vectors) > ivf_threshold else "flat"
        rows = [Row(i, str(r.path), str(r.identity)) for i, r in zip(ids, records, strict=True)]
        index = make_index(vectors, np.asarray(ids, dtype=np.int64), kind, nprobe)
        nonface = None
        if null_embeddings is not None:
            nonface = NonFaceCheck.fit(normalise(null_embeddings, vectors.shape[1], "null embeddings"), vectors)
        return cls(index, rows, model_fingerprint=model_fingerprint, kind=kind, nprobe=nprobe,
                   root=None if root is None else str(root), model=model, nonface=nonface)

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self._index.d

    @property
    def rows(self) -> list[Row]:
        """Metadata rows in insertion order."""
        return list(self._rows.values())

    @property
    def identities(self) -> set[str]:
        """Every identity with at least one row."""
        return {r.identity for r in self._rows.values()}

    def resolve(self, row: Row) -> Path:
        """Filesystem path of a row's image (joined to `root` when one is stored)."""
        return Path(row.path) if self.root is None else Path(self.root) / row.path

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The stored normalised vectors of rows `ids`, shape (len(ids), dim)."""
        if not len(ids):
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._index.reconstruct_batch(np.asarray(ids, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int, *, batch_size: int = 4096) -> list[list[Hit]]:
        """
        Top-`k` rows by cosine per query, best first, `batch_size` queries per FAISS call.

        Fewer than `k` hits come back when the gallery is smaller, or (IVF) the probed lists hold fewer rows.
        """
        if k < 1 or batch_size < 1:
            raise ValueError(f"k and batch_size must be >= 1, got k={k}, batch_size={batch_size}")
        q = normalise(queries, self.dim, "queries")
        k = min(k, len(self))
        if k == 0:
            return [[] for _ in range(len(q))]
        hits: list[list[Hit]] = []
        for start in range(0, len(q), batch_size):
            scores, ids = self._index.search(q[start:start + batch_size], k)
            for row_scores, row_ids in zip(scores, ids, strict=True):
                found = [(self._rows[int(i)], float(s)) for s, i in zip(row_scores, row_ids, strict=True) if i >= 0]
                hits.append([Hit(r.id, r.identity, r.path, s) for r, s in found])
        return hits

    def nonface_scores(self, queries: np.ndarray) -> np.ndarray | None:
        """Each query's cosine to the model's non-face direction (`query_quality`); None if not calibrated."""
        return None if self.nonface is None else self.nonface.scores(normalise(queries, self.dim, "queries"))

    def delete_identities(self, names: Iterable[str]) -> int:
        """Remove every row of `names` (all must be present) and return how many rows went; in memory only."""
        names = set(names)
        unknown = sorted(names - self.identities)
        if unknown:
            raise ValueError(f"identities not in the gallery: {unknown}")
        keep = [r for r in self._rows.values() if r.identity not in names]
        removed = len(self._rows) - len(keep)
        if removed:
            ids = np.asarray([r.id for r in keep], dtype=np.int64)
            vectors = self.vectors(ids)
            self._index = make_index(vectors, ids, self.kind, self.nprobe)
            self._rows = {r.id: r for r in keep}
            if self.nonface is not None:
                self.nonface = self.nonface.refit(vectors)
        return removed

    def save(self, directory: str | os.PathLike) -> Path:
        """Write a new version (`index.faiss` + `metadata.json`) under `directory` and make it live."""
        return commit(directory, self._write)  # under the gallery's writer lock

    def _write(self, version: Path) -> None:
        with atomic_open(version / INDEX_FILE, "wb") as f:
            faiss.write_index(self._index, faiss.PyCallbackIOWriter(f.write))
        meta = {"format": FORMAT, "model_fingerprint": self.model_fingerprint, "model": self.model,
                "dim": self.dim, "kind": self.kind, "nprobe": self.nprobe, "root": self.root, "count": len(self),
                "index_sha256": sha256_file(version / INDEX_FILE), "rows": [asdict(r) for r in self.rows],
                "nonface": None if self.nonface is None else self.nonface.to_dict()}
        write_json_atomic(version / META_FILE, meta, indent=None)

    @classmethod
    def load(cls, directory: str | os.PathLike, *, model_fingerprint: str | None = None) -> Gallery:
        """Read the live version, verifying checksum, dimension, row count and (if given) the model."""
        for attempt in range(1, LOAD_ATTEMPTS + 1):
            live = _pointer(directory)
            try:
                gallery = cls._load_version(current_version(directory))
                break
            except FileNotFoundError:
                if attempt == LOAD_ATTEMPTS or _pointer(directory) == live:
                    raise  # nothing moved: the gallery really is incomplete
        if model_fingerprint is not None and model_fingerprint != gallery.model_fingerprint:
            raise ValueError(_model_mismatch(directory, gallery, model_fingerprint))
        return gallery

    @classmethod
    def _load_version(cls, version: Path) -> Gallery:
        meta = _read_metadata(version / META_FILE)
        index_path = version / INDEX_FILE
        if not index_path.is_file():
            raise FileNotFoundError(f"gallery index missing: {index_path}")
        blob = index_path.read_bytes()  # read once: the checksum covers exactly the bytes parsed
        if sha256_bytes(blob) != meta["index_sha256"]:
            raise ValueError(f"{index_path} is corrupt: sha256 does not match {META_FILE}")
        try:
            index = faiss.deserialize_index(np.frombuffer(blob, dtype=np.uint8))
        except RuntimeError as exc:
            raise ValueError(f"{index_path} is not a readable FAISS index: {exc}") from exc
        if (index.d, index.ntotal) != (meta["dim"], meta["count"]) or meta["count"] != len(meta["rows"]):
            raise ValueError(f"{version}: index has dim {index.d} and {index.ntotal} rows, metadata says dim "
                             f"{meta['dim']}, count {meta['count']}, {len(meta['rows'])} rows")
        nonface = meta.get("nonface")
        if nonface is not None:
            nonface = NonFaceCheck.from_dict(nonface, str(version / META_FILE), index.d)
        return cls(index, [Row(**r) for r in meta["rows"]], model_fingerprint=meta["model_fingerprint"],
                   kind=meta["kind"], nprobe=meta["nprobe"], root=meta["root"], model=meta.get("model"),
                   nonface=nonface)


def delete_saved(directory: str | os.PathLike, names: Iterable[str]) -> int:
    """Delete identities from the saved gallery: load the latest version, delete, save, all under its lock."""
    with writing(directory):
        gallery = Gallery.load(directory)
        removed = gallery.delete_identities(names)
        gallery.save(directory)
    return removed


def _pointer(directory: str | os.PathLike) -> str | None:
    """The version name `CURRENT` holds now (None when it cannot be read)."""
    try:
        return (Path(directory) / POINTER).read_text().strip()
    except OSError:
        return None


def _model_mismatch(directory: str | os.PathLike, gallery: Gallery, given: str) -> str:
    """The refusal for a search with another model: which model the gallery needs, and the other way out."""
    built, spec = gallery.model_fingerprint, gallery.model
    use = (f"search it with --model {spec}" if spec else "search it with the model it was built with")
    return (f"gallery {directory} was built with model {spec or '(not recorded)'} (fingerprint {built}), not "
            f"with the given model (fingerprint {given}): {use}, or rebuild it for the new model with "
            f"`faceforget index rebuild --gallery {directory} --model MODEL`")


def _read_metadata(path: Path) -> dict:
    """Parse `metadata.json`, checking its format tag, required fields and every row's fields."""
    if not path.is_file():
        raise FileNotFoundError(f"gallery metadata missing: {path}")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not {FORMAT} metadata")
    missing = sorted({"model_fingerprint", "dim", "kind", "nprobe", "root", "count", "index_sha256",
                      "rows"} - meta.keys())
    if missing:
        raise ValueError(f"{path} lacks fields {missing}")
    if meta["kind"] not in INDEX_KINDS or not isinstance(meta["rows"], list):
        raise ValueError(f"{path}: kind {meta['kind']!r} is not one of {INDEX_KINDS} or rows is not a list")
    for i, row in enumerate(meta["rows"]):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: row {i} is not an object")
        problems = [f"{k!r} missing or not {t.__name__}" for k, t in ROW_FIELDS.items()
                    if not isinstance(row.get(k), t)]
        problems += [f"unknown field {k!r}" for k in sorted(set(row) - set(ROW_FIELDS))]
        if problems:
            raise ValueError(f"{path}: row {i} is malformed: {'; '.join(problems)}")
    return meta

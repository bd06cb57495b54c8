"""Locating LFW (explicit > env > cache), the offline message, and download_lfw against a fake server."""
from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceforget.data import lfw
from faceforget.data.download import extract_tar_safely
from faceforget.data.errors import DataError
from faceforget.data.lfw import LfwArchive, default_cache_dir, download_lfw, locate_lfw

DEEP_URL, FUNNELED_URL = "https://lfw.invalid/deep.tgz", "https://lfw.invalid/funneled.tgz"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty LFW cache folder from FACEFORGET_CACHE; FACEFORGET_DATA unset."""
    monkeypatch.delenv("FACEFORGET_DATA", raising=False)
    monkeypatch.setenv("FACEFORGET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "lfw"


def _prepared(root: Path) -> Path:
    (root / "dlib150" / "alice").mkdir(parents=True)
    return root


def test_explicit_beats_env_beats_cache(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit, env = _prepared(tmp_path / "explicit"), _prepared(tmp_path / "env")
    _prepared(cache / "deepfunneled")
    monkeypatch.setenv("FACEFORGET_DATA", str(env))
    assert locate_lfw(explicit) == explicit
    assert locate_lfw(str(explicit / "dlib150")) == explicit
    assert locate_lfw() == env
    monkeypatch.delenv("FACEFORGET_DATA")
    assert locate_lfw() == cache / "deepfunneled"
    assert locate_lfw(cache_dir=_prepared(tmp_path / "elsewhere")) == tmp_path / "elsewhere"


def test_env_without_data_falls_back_to_the_cache(cache: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEFORGET_DATA", str(tmp_path / "missing"))
    _prepared(cache)
    assert locate_lfw() == cache


def test_explicit_data_without_dlib150_is_an_error(cache: Path, tmp_path: Path) -> None:
    _prepared(cache)
    with pytest.raises(DataError, match=r"--data .*empty: no dlib150/ folder"):
        locate_lfw(tmp_path / "empty")


def test_missing_data_is_one_message_saying_how_to_provide_it(cache: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lfw, "download_lfw", lambda *a, **k: pytest.fail("download without download=True"))
    monkeypatch.setenv("FACEFORGET_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as info:
        locate_lfw()
    message = str(info.value)
    for part in ("--data: not given", f"FACEFORGET_DATA={tmp_path / 'nowhere'}", f"cache {cache}", "--data DIR",
                 "FACEFORGET_DATA=DIR", "faceforget demo --download", 'pip install "faceforget[dlib]"',
                 "research use only"):
        assert part in message


def test_download_runs_only_when_asked(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(lfw, "download_lfw", lambda where, progress: calls.append(where) or tmp_path)
    assert locate_lfw(download=True, progress=False) == tmp_path
    assert calls == [cache]


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACEFORGET_CACHE", "/srv/ff")
    assert default_cache_dir() == Path("/srv/ff/lfw")
    monkeypatch.delenv("FACEFORGET_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "faceforget" / "lfw"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "faceforget" / "lfw"


def _tgz(members: dict[str, bytes], top: str = "lfw-deepfunneled") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (250, 250, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


def _lfw_members(images: Callable[[str, int], bytes]) -> dict[str, bytes]:
    """alice: 5 images (-> dlib150), bob: 2 (-> distractors)."""
    counts = {"alice": 5, "bob": 2}
    return {f"{n}/{n}_{k + 1:04d}.jpg": images(n, k) for n, c in counts.items() for k in range(c)}


def _serve(monkeypatch: pytest.MonkeyPatch, table: dict[str, bytes], digests: dict[str, str] | None = None
           ) -> list[str]:
    """Fake urlopen serving `table`; the archive constants pinned to sha256 of the served bytes (or `digests`)."""
    calls: list[str] = []

    def urlopen(url: str, timeout: float) -> io.BytesIO:
        calls.append(url)
        if url not in table:
            raise urllib.error.URLError("Temporary failure in name resolution")
        response = io.BytesIO(table[url])
        response.headers = {"Content-Length": str(len(table[url]))}
        return response

    digests = digests or {u: hashlib.sha256(b).hexdigest() for u, b in table.items()}
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(lfw, "ARCHIVES", (
        LfwArchive("deepfunneled", "deep.tgz", DEEP_URL, "sha256", digests.get(DEEP_URL, "0" * 64), "test"),
        LfwArchive("funneled", "funneled.tgz", FUNNELED_URL, "sha256", digests.get(FUNNELED_URL, "0" * 64), "test"),
    ))
    return calls


@pytest.fixture
def stub_aligner(monkeypatch: pytest.MonkeyPatch) -> None:
    """Alignment without dlib: the central 150x150 square."""
    monkeypatch.setattr(lfw, "require_dlib", lambda: None)
    monkeypatch.setattr(lfw, "dlib_chip", lambda image: image[50:200, 50:200])


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_download_verifies_extracts_and_prepares(cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                 stub_aligner: None) -> None:
    calls = _serve(monkeypatch, {DEEP_URL: _tgz(_lfw_members(lambda n, k: _jpeg(k + 10 * (n == "bob"))))})
    root = locate_lfw(download=True, progress=False)
    assert root == cache / "deepfunneled" and calls == [DEEP_URL]
    assert len(list((root / "dlib150" / "alice").glob("*.jpg"))) == 5
    assert len(list((root / "distractors_dlib150" / "bob").glob("*.jpg"))) == 2
    assert Image.open(root / "dlib150" / "alice" / "alice_0001.jpg").size == (150, 150)
    assert json.loads((root / "SOURCE.json").read_text())["url"] == DEEP_URL
    assert [p for p in _files(cache) if p.startswith(".")] == []  # no temp files or folders left
    assert download_lfw(cache, progress=False) == root and calls == [DEEP_URL]  # prepared: no second fetch


def test_download_falls_back_to_funneled(cache: Path, monkeypatch: pytest.MonkeyPatch, stub_aligner: None) -> None:
    members = _lfw_members(lambda n, k: _jpeg(k))
    calls = _serve(monkeypatch, {FUNNELED_URL: _tgz(members, top="lfw_funneled")})
    assert download_lfw(cache, progress=False) == cache / "funneled"
    assert calls == [DEEP_URL, FUNNELED_URL]


def test_offline_download_is_one_clear_error(cache: Path, monkeypatch: pytest.MonkeyPatch,
                                             stub_aligner: None) -> None:
    _serve(monkeypatch, {})
    with pytest.raises(DataError) as info:
        locate_lfw(download=True, progress=False)
    for part in (DEEP_URL, FUNNELED_URL, "name resolution", "Offline?", "--data DIR", "research use only"):
        assert part in str(info.value)
    assert not cache.exists() or _files(cache) == []


def test_checksum_mismatch_leaves_nothing(cache: Path, monkeypatch: pytest.MonkeyPatch, stub_aligner: None) -> None:
    calls = _serve(monkeypatch, {DEEP_URL: _tgz(_lfw_members(lambda n, k: _jpeg(k)))}, digests={DEEP_URL: "f" * 64})
    with pytest.raises(DataError, match=f"checksum mismatch for {DEEP_URL}: expected sha256 f{{64}}"):
        download_lfw(cache, progress=False)
    assert calls == [DEEP_URL] and _files(cache) == []


def test_unsafe_archive_is_refused_and_nothing_prepared(cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                        stub_aligner: None) -> None:
    _serve(monkeypatch, {DEEP_URL: _tgz({"../../evil.jpg": _jpeg(0)})})
    with pytest.raises(DataError, match=r"unsafe path 'lfw-deepfunneled/\.\./\.\./evil\.jpg'"):
        download_lfw(cache, progress=False)
    assert _files(cache) == ["deep.tgz"]  # the verified archive stays; no folder, no temp left
    assert not (cache.parent.parent / "evil.jpg").exists()


@pytest.mark.parametrize("kind", ["absolute", "parent", "symlink"])
def test_extract_refuses_escaping_members(tmp_path: Path, kind: str) -> None:
    info = tarfile.TarInfo({"absolute": "/tmp/evil", "parent": "a/../../evil", "symlink": "link"}[kind])
    if kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    archive = tmp_path / "bad.tar"
    with tarfile.open(archive, "w") as tar:
        tar.addfile(tarfile.TarInfo("fine.txt"), io.BytesIO(b""))
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(DataError, match="unsafe"):
        extract_tar_safely(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_download_without_dlib_says_how_to_install(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _serve(monkeypatch, {})
    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(DataError, match=r'pip install "faceforget\[dlib\]"'):
        download_lfw(cache, progress=False)
    assert calls == []


def test_download_with_dlib_reproduces_the_shipped_chips(lfw_root: Path, cache: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("dlib")
    raw = lfw_root / "raw250_sample" / "Adrien_Brody"
    members = {f"{p.parent.name}/{p.name}": p.read_bytes() for p in sorted(raw.glob("*.jpg"))[:6]}
    members["Noise_Person/Noise_Person_0001.jpg"] = _jpeg(3)  # no face: dlib's fallback box
    _serve(monkeypatch, {DEEP_URL: _tgz(members)})
    root = download_lfw(cache, progress=False)
    chips = sorted((root / "dlib150" / "Adrien_Brody").glob("*.jpg"))
    assert len(chips) == 6 and (root / "distractors_dlib150" / "Noise_Person" / "Noise_Person_0001.jpg").is_file()
    diffs = [np.abs(np.asarray(Image.open(c), float)
                    - np.asarray(Image.open(lfw_root / "dlib150" / "Adrien_Brody" / c.name), float)).mean()
             for c in chips]
    assert np.mean(diffs) < 4, diffs

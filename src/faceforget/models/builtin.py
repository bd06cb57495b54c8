"""The visible list of built-in model registrations."""
from faceforget.models.dlib_resnet import load_dlib_resnet
from faceforget.models.registry import MODEL_REGISTRY, register_model

if "dlib" not in MODEL_REGISTRY:
    register_model("dlib", load_dlib_resnet)

"""The visible list of registered unlearning methods (one module per method)."""
from faceforget.unlearn.methods.dispersion import Dispersion
from faceforget.unlearn.registry import METHOD_REGISTRY, register_method

for _cls in (Dispersion,):
    if _cls.name not in METHOD_REGISTRY:
        register_method(_cls)

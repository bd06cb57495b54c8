"""The visible list of registered unlearning methods (one module per method)."""
from faceforget.unlearn.methods.boundary_expanding import BoundaryExpanding
from faceforget.unlearn.methods.boundary_shrink import BoundaryShrink
from faceforget.unlearn.methods.dispersion import Dispersion
from faceforget.unlearn.methods.finetune import Finetune
from faceforget.unlearn.methods.gradient_ascent import GradientAscent
from faceforget.unlearn.methods.l1_sparse import L1Sparse
from faceforget.unlearn.methods.neggrad_plus import NegGradPlus
from faceforget.unlearn.methods.random_labeling import RandomLabeling
from faceforget.unlearn.methods.salun import SalUn
from faceforget.unlearn.methods.scrub import Scrub
from faceforget.unlearn.registry import METHOD_REGISTRY, register_method

BASELINES = (RandomLabeling, GradientAscent, NegGradPlus, BoundaryShrink, BoundaryExpanding, Scrub, SalUn, Finetune,
             L1Sparse)

for _cls in (Dispersion, *BASELINES):
    if _cls.name not in METHOD_REGISTRY:
        register_method(_cls)

"""Non-affine guidance operations, one file per method. Each declares the space it acts in."""

from .adaptive import Adaptive
from .apg import Project
from .base import Op
from .cfg_pp import Renoised
from .cost_grad import CostError, CostFn, CostGrad
from .plausibility import PlausibilityMask
from .renormalize import Renormalize
from .rescale import Rescale
from .zero_star import ZeroStar

__all__ = ["Adaptive", "CostError", "CostFn", "CostGrad", "Op",
           "PlausibilityMask", "Project", "Renoised", "Renormalize", "Rescale", "ZeroStar"]

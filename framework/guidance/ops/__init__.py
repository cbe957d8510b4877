"""Non-affine guidance operations, one file per method. Each declares the space it acts in."""

from framework.guidance.ops.adaptive import Adaptive
from framework.guidance.ops.apg import Project
from framework.guidance.ops.base import Op
from framework.guidance.ops.cfg_pp import Renoised
from framework.guidance.ops.cost_grad import CostError, CostFn, CostGrad
from framework.guidance.ops.plausibility import PlausibilityMask
from framework.guidance.ops.renormalize import Renormalize
from framework.guidance.ops.rescale import Rescale
from framework.guidance.ops.zero_star import ZeroStar

__all__ = ["Adaptive", "CostError", "CostFn", "CostGrad", "Op",
           "PlausibilityMask", "Project", "Renoised", "Renormalize", "Rescale", "ZeroStar"]

"""The multi-condition guidance algebra.

Write guidance as mathematics over model branches::

    from framework.guidance import cond, uncond, presets as G
    g = uncond() + 1.5 * (cond("image") - uncond()) + 7.5 * (cond("image", "text") - cond("image"))
    G.nested(["image", "text"], [1.5, 7.5])     # the same expression

and evaluate it with a :class:`Guider`, which plans the fewest batched forward passes.
"""

from framework.guidance import presets
from framework.guidance.branches import (
    AttnBlur,
    AttnIdentity,
    Branch,
    Perturbation,
    SkipLayers,
    TimeShift,
    cond,
    independent,
    noised,
    uncond,
)
from framework.guidance.engine import Guider
from framework.guidance.expr import AffineError, Expr, Linear, Window, Zero
from framework.guidance.ops import (
    Adaptive,
    CostError,
    CostFn,
    CostGrad,
    Project,
    Renoised,
    Renormalize,
    Rescale,
    ZeroStar,
)
from framework.guidance.schedules import Weight, const, cosine, linear, piecewise, schedule, window
from framework.guidance.spaces import DiscreteSpaces, FlowSpaces, SpaceConverter, SpaceError, VPSpaces
from framework.guidance.state import GuidanceState, GuidedOutput, Perturbations, StepStats
from framework.guidance.syntax import GuidanceSyntaxError, parse

__all__ = [
    "Adaptive", "AffineError", "AttnBlur", "AttnIdentity", "Branch", "CostError", "CostFn", "CostGrad",
    "DiscreteSpaces", "Expr",
    "FlowSpaces", "GuidanceState", "GuidanceSyntaxError", "GuidedOutput", "Guider", "Linear",
    "Perturbation", "Perturbations", "Project", "Renoised", "Renormalize", "Rescale",
    "SkipLayers", "SpaceConverter", "SpaceError", "StepStats", "TimeShift", "VPSpaces",
    "Weight", "Window", "Zero", "ZeroStar", "cond", "const", "cosine", "independent", "linear",
    "noised", "parse", "piecewise", "presets", "schedule", "uncond", "window",
]

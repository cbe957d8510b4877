"""Generator families: each owns its loss, prediction spaces and samplers; all share the guidance engine."""

from .autoregressive import Autoregressive
from .base import Family, SampleOutput
from .diffusion import Diffusion
from .flow import Flow
from .masked import Masked

__all__ = ["Autoregressive", "Diffusion", "Family", "Flow", "Masked", "SampleOutput"]

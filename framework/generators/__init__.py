"""Generator families: each owns its loss, prediction spaces and samplers; all share the guidance engine."""

from framework.generators.autoregressive import Autoregressive
from framework.generators.base import Family, SampleOutput
from framework.generators.diffusion import Diffusion
from framework.generators.flow import Flow
from framework.generators.masked import Masked

__all__ = ["Autoregressive", "Diffusion", "Family", "Flow", "Masked", "SampleOutput"]

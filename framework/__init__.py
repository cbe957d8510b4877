"""polyguide: conditional generation across modalities with a multi-condition guidance algebra.

The import package is ``framework``; the distribution and CLI are ``polyguide``.
"""

from framework import guidance
from framework.core import conditions
from framework.core.conditions import Conditions, ConditionSpec, DropoutSpec

__version__ = "0.1.0"
__all__ = ["ConditionSpec", "Conditions", "DropoutSpec", "__version__", "conditions", "guidance"]

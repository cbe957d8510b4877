"""polyguide: conditional generation across modalities with a multi-condition guidance algebra.

The import package is ``framework``; the distribution and CLI are ``polyguide``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from framework import guidance
    from framework.core import conditions
    from framework.core.conditions import Conditions, ConditionSpec
    from framework.core.dropout import DropoutSpec

__version__ = "0.1.0"
__all__ = ["ConditionSpec", "Conditions", "DropoutSpec", "__version__", "conditions", "guidance"]

# imported on first use (PEP 562), so `polyguide --help` and the CLI's argument checks start
# without importing torch
_LAZY = {"guidance": ("framework.guidance", None), "conditions": ("framework.core.conditions", None),
         "Conditions": ("framework.core.conditions", "Conditions"),
         "ConditionSpec": ("framework.core.conditions", "ConditionSpec"),
         "DropoutSpec": ("framework.core.dropout", "DropoutSpec")}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'framework' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    return value if attr is None else getattr(value, attr)

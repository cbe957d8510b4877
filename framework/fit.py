"""``polyguide fit``: Lightning's own CLI over :class:`~framework.training.GenerativeModule`.

``polyguide fit --config recipes/toy/points_flow.yaml --trainer.max_steps 2000`` is
``LightningCLI`` with any ``LightningDataModule`` given by ``data.class_path`` in the config,
so every Lightning trainer option (strategies such as ``ddp``/``fsdp``, devices, precision,
callbacks) works unchanged.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.cli import LightningCLI

from .training import GenerativeModule

__all__ = ["fit_main"]


def fit_main(args: list[str]) -> int:
    """Run ``LightningCLI`` with ``args`` (e.g. ``["fit", "--config", "x.yaml"]``); returns 0."""
    LightningCLI(GenerativeModule, L.LightningDataModule, subclass_mode_data=True, args=args,
                 save_config_kwargs={"overwrite": True}, parser_kwargs={"prog": "polyguide"})
    return 0

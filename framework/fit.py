"""``polyguide fit``: Lightning's own CLI over :class:`~framework.training.GenerativeModule`.

``polyguide fit --config recipes/toy/points_flow.yaml --trainer.max_steps 2000`` is
``LightningCLI`` with any ``LightningDataModule`` given by ``data.class_path`` in the config,
so every Lightning trainer option (strategies such as ``ddp``/``fsdp``, devices, precision,
callbacks) works unchanged.

A recipe whose ``model`` section names a ``class_path`` trains that ``LightningModule`` instead
(e.g. a modality's codec, ``recipes/audio/codec.yaml``); its other recipes keep the plain
``GenerativeModule`` form.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.cli import LightningCLI

from .training import GenerativeModule

__all__ = ["fit_main"]


def _names_model_class(args: list[str]) -> bool:
    """Whether a ``--config`` file (or a ``--model.class_path`` argument) names the model's class."""
    from omegaconf import OmegaConf

    for i, a in enumerate(args):
        if a.startswith("--model.class_path") or (a == "--model" and i + 1 < len(args)):
            return True
        path = args[i + 1] if a == "--config" and i + 1 < len(args) else (
            a.partition("=")[2] if a.startswith("--config=") else None)
        if path:
            try:
                model = OmegaConf.load(path).get("model")
            except (OSError, ValueError):
                continue  # LightningCLI reports an unreadable config itself
            if isinstance(model, dict) or OmegaConf.is_dict(model):
                if "class_path" in model:
                    return True
    return False


def fit_main(args: list[str]) -> int:
    """Run ``LightningCLI`` with ``args`` (e.g. ``["fit", "--config", "x.yaml"]``); returns 0."""
    if _names_model_class(args):
        LightningCLI(L.LightningModule, L.LightningDataModule, subclass_mode_model=True,
                     subclass_mode_data=True, args=args, save_config_kwargs={"overwrite": True},
                     parser_kwargs={"prog": "polyguide"})
        return 0
    LightningCLI(GenerativeModule, L.LightningDataModule, subclass_mode_data=True, args=args,
                 save_config_kwargs={"overwrite": True}, parser_kwargs={"prog": "polyguide"})
    return 0

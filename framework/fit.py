"""``polyguide fit``: Lightning's own CLI over :class:`~framework.training.GenerativeModule`.

``polyguide fit --config recipes/toy/points_flow.yaml --trainer.max_steps 2000`` is
``LightningCLI`` with any ``LightningDataModule`` given by ``data.class_path`` in the config,
so every Lightning trainer option (strategies such as ``ddp``/``fsdp``, devices, precision,
callbacks) works unchanged.

A configuration mistake — a missing config file, a value of the wrong type, an unknown option, a
model or data module whose constructor refuses its arguments — is a
:class:`~framework.errors.UserError` (one line from ``polyguide``, exit 2); errors while training
keep their traceback.
"""

from __future__ import annotations

import argparse

import lightning as L
from lightning.pytorch.cli import LightningCLI

from .errors import ArgumentError, UserError, one_line
from .training import GenerativeModule

__all__ = ["fit_main"]

_MAX_MESSAGE = 400


class _CLI(LightningCLI):
    """``LightningCLI`` whose configuration errors are user errors."""

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except UserError:
            raise
        except (ValueError, TypeError, FileNotFoundError) as e:  # a constructor refused its arguments
            raise ArgumentError(f"the configuration could not be built: {one_line(e)}") from e


def fit_main(args: list[str]) -> int:
    """Run ``LightningCLI`` with ``args`` (e.g. ``["fit", "--config", "x.yaml"]``); returns 0."""
    try:
        _CLI(GenerativeModule, L.LightningDataModule, subclass_mode_data=True, args=args,
             save_config_kwargs={"overwrite": True},
             parser_kwargs={"prog": "polyguide", "exit_on_error": False})
    except argparse.ArgumentError as e:  # jsonargparse's parse errors (exit_on_error=False)
        text = one_line(e)
        if len(text) > _MAX_MESSAGE:  # jsonargparse may quote a whole file
            text = text[:_MAX_MESSAGE] + " …"
        raise ArgumentError(f"{text} (see polyguide fit --help)") from None
    return 0

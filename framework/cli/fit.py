"""``polyguide fit``: Lightning's own CLI over :class:`~framework.training.module.GenerativeModule`.

``polyguide fit --config recipes/toy/points_flow.yaml --trainer.max_steps 2000`` is
``LightningCLI`` with any ``LightningDataModule`` given by ``data.class_path`` in the config,
so every Lightning trainer option (strategies such as ``ddp``/``fsdp``, devices, precision,
callbacks) works unchanged. Two defaults make its checkpoints safe: the trainer saves through
:class:`~framework.training.checkpoint_io.AtomicCheckpointIO` (unless the config names its own checkpoint
plugin), and a recipe's ``lightning.pytorch.callbacks.ModelCheckpoint`` runs as
:class:`framework.training.checkpoint_io.ModelCheckpoint` (same arguments; ``last`` never trails), and
its ``lightning.pytorch.callbacks.EMAWeightAveraging`` as :class:`framework.training.ema.EMAWeightAveraging`
(same arguments; it pickles for ``ddp_spawn`` and averages the full weights under FSDP). A run
shorter than 500 steps whose config leaves ``log_every_n_steps`` out logs ``train/loss`` about ten
times, and the progress bar counts totals right after a resume and with gradient accumulation
(:mod:`framework.training.progress`). ``sys.argv`` is left as it is, so ``strategy: ddp`` starts its
other processes with this same command.

A recipe whose ``model`` section names a ``class_path`` trains that ``LightningModule`` instead
(e.g. a modality's codec, ``recipes/audio/codec.yaml``); its other recipes keep the plain
``GenerativeModule`` form.

Recipes and checkpoints run no code: jsonargparse builds only classes on the allow-list of
:mod:`framework.core.allowlist` (extended with ``POLYGUIDE_ALLOW_CLASSES``).

A configuration mistake — a missing config file, a value of the wrong type, an unknown option, a
model or data module whose constructor refuses its arguments, a bad ``--ckpt_path`` — is a
:class:`~framework.core.errors.UserError` (one line from ``polyguide``, exit 2); errors while training
keep their traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.cli import LightningCLI

from framework.cli.recipe_files import check_recipes
from framework.core import allowlist
from framework.core.errors import ArgumentError, UserError, one_line
from framework.model.checkpoints import load_checkpoint, read_checkpoint
from framework.training.checkpoint_io import install
from framework.training.module import GenerativeModule

__all__ = ["fit_main"]

_LIGHTNING_CHECKPOINT = {"lightning.pytorch.callbacks.ModelCheckpoint",
                         "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint",
                         "pytorch_lightning.callbacks.ModelCheckpoint"}
_OURS = "framework.training.checkpoint_io.ModelCheckpoint"
_LIGHTNING_EMA = {"lightning.pytorch.callbacks.EMAWeightAveraging",
                  "lightning.pytorch.callbacks.weight_averaging.EMAWeightAveraging",
                  "pytorch_lightning.callbacks.EMAWeightAveraging"}
_OUR_EMA = "framework.training.ema.EMAWeightAveraging"
_MAX_MESSAGE = 400
#: Lightning warnings that tell a polyguide user nothing to act on (matched from their start).
#: Everything else, e.g. a logging interval longer than the run, still shows.
_NOISE = (
    r"LightningCLI's args parameter is intended",  # `polyguide fit` passes its own argv on purpose
    r"Starting from v1\.9\.0, `tensorboardX` has been removed",  # CSVLogger is what recipes use
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning's own call into torch
)
_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


class _NoTips(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing ..." advertisements."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence :data:`_NOISE` and Lightning's tips while LightningCLI runs; restore afterwards."""
    tips = _NoTips()
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    with warnings.catch_warnings():
        for message in _NOISE:
            warnings.filterwarnings("ignore", message=message)
        for log in loggers:
            log.addFilter(tips)
        # sys.argv stays as it is: Lightning's `ddp` launcher starts the other processes by running
        # sys.argv again, which must be this `polyguide fit ...` command
        try:
            yield
        finally:
            for log in loggers:
                log.removeFilter(tips)


class _CLI(LightningCLI):
    """``LightningCLI`` with atomic checkpoints, whose configuration errors are user errors."""

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        allowlist.check_class_paths(config.as_dict(), "the configuration")  # before anything is built
        for cb in config.get("trainer.callbacks") or []:
            if getattr(cb, "class_path", None) in _LIGHTNING_CHECKPOINT:
                cb.class_path = _OURS
            elif getattr(cb, "class_path", None) in _LIGHTNING_EMA:  # picklable, FSDP-aware
                cb.class_path = _OUR_EMA
        trainer = config.get("trainer")
        steps = trainer.get("max_steps") if trainer is not None else None
        if trainer is not None and trainer.get("log_every_n_steps") is None and steps and 0 < steps < 500:
            # Lightning's 50 logs no train/loss at all in a run shorter than 50 steps: ~10 points a run
            trainer["log_every_n_steps"] = max(1, steps // 10)

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except UserError:
            raise
        except (ValueError, TypeError, FileNotFoundError) as e:  # a constructor refused its arguments
            raise ArgumentError(f"the configuration could not be built: {one_line(e)}") from e

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads --ckpt_path's hyper-parameters first: check the file with our loader
        sub = self.config.get("subcommand")
        path = self.config[sub].get("ckpt_path") if sub else None
        if path and Path(path).exists():  # 'last', 'best'... are names the trainer resolves later
            if self.subclass_mode_model:  # another LightningModule (a codec, a distillation run):
                ckpt = read_checkpoint(path)  # read as safely, but not a GenerativeModule's
                hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
                allowlist.check_class_paths(hp, f"checkpoint {path}")
            else:
                load_checkpoint(path)
        super()._parse_ckpt_path()

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        from framework.training.progress import adopt

        trainer = super().instantiate_trainer(**kwargs)
        install(trainer)
        adopt(trainer)  # progress totals right after a resume and with gradient accumulation
        return trainer


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
    """Run ``LightningCLI`` with ``args`` (e.g. ``["fit", "--config", "x.yaml"]``); returns 0.

    Raises:
        UserError: a configuration mistake or a bad ``--ckpt_path`` (the CLI prints one line).
    """
    check_recipes(args)  # before OmegaConf or jsonargparse read them: bad YAML, alias bombs, FIFOs
    common = dict(subclass_mode_data=True, args=args, save_config_kwargs={"overwrite": True},
                  parser_kwargs={"prog": "polyguide", "exit_on_error": False})
    try:
        with _quiet(), allowlist.enforced():  # recipes and checkpoints build allow-listed classes only
            if _names_model_class(args):  # e.g. a codec: any LightningModule named by class_path
                _CLI(L.LightningModule, L.LightningDataModule, subclass_mode_model=True, **common)
            else:
                _CLI(GenerativeModule, L.LightningDataModule, **common)
    except argparse.ArgumentError as e:  # jsonargparse's parse errors (exit_on_error=False)
        text = one_line(e)
        if len(text) > _MAX_MESSAGE:  # jsonargparse may quote a whole file
            text = text[:_MAX_MESSAGE] + " …"
        raise ArgumentError(f"{text} (see polyguide fit --help)") from None
    return 0

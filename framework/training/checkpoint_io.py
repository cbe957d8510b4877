"""Training checkpoints that never tear and never trail.

* :class:`AtomicCheckpointIO` is Lightning's ``TorchCheckpointIO`` with the save done by
  :func:`~framework.core.atomic.atomic_save` (a temporary file beside the checkpoint, fsynced, renamed,
  directory fsynced): a kill at any moment leaves the old or the new checkpoint, never a torn one,
  whatever filesystem ``$TMPDIR`` is on. Lightning's own save stages the file in ``$TMPDIR`` and,
  when that is another filesystem, falls back to truncating the checkpoint and copying into it.
  Loading goes through :func:`~framework.model.checkpoints.read_checkpoint` (``weights_only=True``, one
  clear line for a bad file).
* :class:`ModelCheckpoint` is Lightning's callback writing ``last.ckpt`` *before* the step
  checkpoint of the same step, so after a kill ``last.ckpt`` is never older than the newest step
  checkpoint, and writing it at the run's final step too.

:meth:`GenerativeModule.setup <framework.training.module.GenerativeModule.setup>` installs the IO plugin on
any trainer that still has Lightning's default one, and ``polyguide fit`` uses both, so recipes get
them without asking.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint as _LightningModelCheckpoint

from framework.core.atomic import atomic_save
from framework.model.checkpoints import read_checkpoint

__all__ = ["AtomicCheckpointIO", "ModelCheckpoint", "install"]


def _is_local(path: Any) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save checkpoints atomically and durably beside their destination; load them safely."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
                        ) -> None:
        """Write ``checkpoint`` to ``path`` (local paths atomically; remote URLs as Lightning does)."""
        if storage_options is not None or not _is_local(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        local = str(path).removeprefix("file://")
        atomic_save(local, lambda f: torch.save(checkpoint, f))
        return None

    def load_checkpoint(self, path: Any, map_location: Callable | None = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        """Read a local checkpoint with ``weights_only=True`` whatever is asked (see
        :func:`~framework.model.checkpoints.read_checkpoint`); remote URLs as Lightning does."""
        if not _is_local(path):
            return super().load_checkpoint(path, weights_only=True)
        return read_checkpoint(str(path).removeprefix("file://"))


def install(trainer: Any) -> None:
    """Give ``trainer`` an :class:`AtomicCheckpointIO` if it still uses Lightning's default IO."""
    strategy = trainer.strategy
    if type(strategy.checkpoint_io) is TorchCheckpointIO:  # a user's own plugin is left alone
        strategy.checkpoint_io = AtomicCheckpointIO()


def _last_epoch(trainer: Any) -> bool:
    """At a training epoch's end: whether the run stops after it (``max_steps`` reached, the last of
    ``max_epochs``, or a callback asked to stop). Not ``fit_loop.done``, which logs when true."""
    if trainer.max_steps is not None and trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
        return True
    max_epochs = trainer.max_epochs
    if max_epochs is not None and max_epochs > 0 and trainer.current_epoch + 1 >= max_epochs:
        return True
    return bool(trainer.should_stop)


class ModelCheckpoint(_LightningModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (same arguments, same state key), but with ``save_last=True``
    the ``last`` checkpoint of a step is written before that step's top-k checkpoint, holding the
    bookkeeping as it will be once both are written. A kill between the two writes therefore leaves
    ``last`` at the newer step, never behind a step checkpoint. And ``last`` is always written at the
    final step of a run (:meth:`on_train_epoch_end`)."""

    _writing_last = False
    _last_written_at: int | None = None

    def _save_checkpoint(self, trainer: Any, filepath: str) -> None:
        if self.save_last is True and not self._writing_last:
            self._writing_last = True
            try:
                super()._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            finally:
                self._writing_last = False
            self._last_written_at = trainer.global_step
        super()._save_checkpoint(trainer, filepath)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Lightning's, and when the run stops here (``max_steps`` or ``max_epochs`` reached) and
        nothing was saved at this step, ``last`` at the final step: with ``max_steps: 30`` and
        ``val_check_interval: 20`` Lightning's own ``last`` stays at step 20."""
        super().on_train_epoch_end(trainer, pl_module)
        if self.save_last and _last_epoch(trainer) and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_last_checkpoint(self, trainer: Any, monitor_candidates: dict[str, torch.Tensor]) -> None:
        if self.save_last is True and self._last_written_at == trainer.global_step:
            return  # written just before this step's top-k checkpoint
        self._writing_last = True
        try:
            super()._save_last_checkpoint(trainer, monitor_candidates)
        finally:
            self._writing_last = False

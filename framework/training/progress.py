"""Lightning's progress bars with totals that hold after a resume and with gradient accumulation.

The bar counts the batches of the epoch (``batch_idx + 1``), but Lightning sizes it, in a run that
stops at ``max_steps``, by the *optimizer steps* left: ``min(batches per epoch, max_steps −
global_step)``. With ``accumulate_grad_batches: 2`` that shows "40/20"; resumed at step 21 of 60 it
shows "60/39". Here the total is the batch index at which this epoch will end: the batches already
run in it plus the steps left times the accumulation. The rich bar's "Epoch 0/-2" (``max_epochs``
is −1 when only ``max_steps`` is given) becomes "Epoch 0".

``polyguide fit`` turns the trainer's progress bar (the default one or one the config names) into
the matching class here; it keeps all its settings.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

__all__ = ["RichProgress", "TQDMProgress", "adopt", "epoch_total"]


def epoch_total(trainer: Any) -> int | float:
    """Batches this epoch will run (the bar's total, counted as its ``batch_idx + 1``)."""
    n = trainer.num_training_batches
    if not trainer.max_steps or trainer.max_steps < 0:
        return n
    ran = trainer.fit_loop.epoch_loop.batch_progress.current.ready  # restored mid-epoch on resume
    ran = ran if ran < n else 0  # the previous epoch's count, before the loop resets it
    left = (trainer.max_steps - trainer.global_step) * trainer.accumulate_grad_batches
    return min(n, ran + left)


class _Totals:
    """:func:`epoch_total` as the training total, also for the epoch a resumed run continues (Lightning
    does not call ``on_train_epoch_start`` when it restarts mid-epoch, so its bar has no total)."""

    @property
    def total_train_batches(self) -> int | float:
        return epoch_total(self.trainer)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        super().on_train_start(trainer, pl_module)
        if trainer.fit_loop.restarted_mid_epoch:
            self.on_train_epoch_start(trainer, pl_module)


class TQDMProgress(_Totals, TQDMProgressBar):
    """Lightning's ``TQDMProgressBar`` with the totals of :class:`_Totals`."""


class RichProgress(_Totals, RichProgressBar):
    """Lightning's ``RichProgressBar`` with the totals of :class:`_Totals`, and no "/-2" after the
    epoch when there is no ``max_epochs``."""

    def _get_train_description(self, current_epoch: int) -> str:
        text = f"Epoch {current_epoch}"
        if self.trainer.max_epochs is not None and self.trainer.max_epochs > 0:
            text += f"/{self.trainer.max_epochs - 1}"
        return f"{text:{len(self.validation_description)}}"


def adopt(trainer: Any) -> None:
    """Give ``trainer``'s progress bar, if it is exactly Lightning's rich or tqdm one, the totals
    of this module (same object, same settings)."""
    ours = {RichProgressBar: RichProgress, TQDMProgressBar: TQDMProgress}
    for cb in trainer.callbacks:
        if type(cb) in ours:
            cb.__class__ = ours[type(cb)]

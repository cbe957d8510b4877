"""Lightning's ``EMAWeightAveraging`` made fit for several processes.

:class:`EMAWeightAveraging` has Lightning's arguments and behaviour (the same formula,
``ema ← decay·ema + (1 − decay)·θ``, the same checkpoint keys) with two differences:

* its averaging function is a module-level function bound by :func:`functools.partial`, so the
  callback pickles and ``strategy: ddp_spawn`` can send it to the spawned processes (Lightning's
  uses ``torch.optim.swa_utils.get_ema_avg_fn``, a closure that cannot be pickled);
* under FSDP the module's parameters are flat shards, so updating, swapping and restoring the
  average run inside ``FullyShardedDataParallel.summon_full_params``: every process keeps a full
  copy of the averaged weights (FSDP saves memory on the raw weights and optimizer state, not on the
  average).

``polyguide fit`` runs a recipe's ``lightning.pytorch.callbacks.EMAWeightAveraging`` as this class.
Every process updates its average from the same (all-reduced) weights, so the averages agree on
every rank; :meth:`on_save_checkpoint` records each process's digest of its average under
``ema_digests`` in the checkpoint, so that anyone can check.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Iterator
from typing import Any

import torch
from lightning.pytorch.callbacks import EMAWeightAveraging as _LightningEMA

from framework.training.resume import gather_objects

__all__ = ["EMAWeightAveraging", "ema_update", "full_params", "state_digest"]


@torch.no_grad()
def ema_update(ema_param: torch.Tensor, current_param: torch.Tensor, num_averaged: torch.Tensor,
               decay: float) -> torch.Tensor:
    """``decay · ema_param + (1 − decay) · current_param`` (any shape; ``num_averaged`` unused), the
    formula of ``torch.optim.swa_utils.get_ema_avg_fn``."""
    return decay * ema_param + (1 - decay) * current_param


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """A SHA-256 over a state dict's names and tensor bytes (equal digests: bit-identical states)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@contextlib.contextmanager
def full_params(trainer: Any, writeback: bool) -> Iterator[None]:
    """Under FSDP, the full (unsharded) parameters in the module while the block runs; else nothing."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    wrapped = getattr(trainer.strategy, "model", None) if trainer is not None else None
    if isinstance(wrapped, FSDP):
        with FSDP.summon_full_params(wrapped, writeback=writeback):
            yield
    else:
        yield


class EMAWeightAveraging(_LightningEMA):
    """Lightning's ``EMAWeightAveraging`` (same arguments) with a picklable averaging function and
    FSDP support (see the module's docstring)."""

    def __init__(self, device: torch.device | str | int | None = None, use_buffers: bool = True,
                 decay: float = 0.999, update_every_n_steps: int = 1,
                 update_starting_at_step: int | None = None, update_starting_at_epoch: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(device=device, use_buffers=use_buffers, decay=decay,
                         update_every_n_steps=update_every_n_steps,
                         update_starting_at_step=update_starting_at_step,
                         update_starting_at_epoch=update_starting_at_epoch, **kwargs)
        self.decay = decay
        self._kwargs["avg_fn"] = functools.partial(ema_update, decay=decay)
        self._trainer: Any = None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._trainer = trainer
        super().setup(trainer, pl_module, stage)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        with full_params(trainer, writeback=False):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        with full_params(trainer, writeback=False):
            super().on_train_epoch_end(trainer, pl_module)

    def _swap_models(self, pl_module: Any) -> None:
        with full_params(self._trainer, writeback=True):
            super()._swap_models(pl_module)

    def _copy_average_to_current(self, pl_module: Any) -> None:
        with full_params(self._trainer, writeback=True):
            super()._copy_average_to_current(pl_module)

    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        with full_params(trainer, writeback=True):
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if self._average_model is None:
            return
        # every process saves (Lightning writes rank 0's file), so this collective is safe
        checkpoint["ema_digests"] = gather_objects(state_digest(self._average_model.module.state_dict()))

"""Lightning's ``EMAWeightAveraging`` made fit for several processes.

:class:`EMAWeightAveraging` has Lightning's arguments and behaviour (the same formula,
``ema ← decay·ema + (1 − decay)·θ``, the same checkpoint keys) with these differences:

* its averaging function is a module-level function bound by :func:`functools.partial`, so the
  callback pickles and ``strategy: ddp_spawn`` can send it to the spawned processes (Lightning's
  uses ``torch.optim.swa_utils.get_ema_avg_fn``, a closure that cannot be pickled);
* under Lightning's ``ModelParallelStrategy`` (torch's FSDP2, the tested FSDP) the average is a copy
  of the module sharded the same way, so each process averages, swaps and restores its own shards
  (DTensors); checkpoints gather the average whole, so ``state_dict`` holds ordinary full tensors.
  Resuming (``--ckpt_path``) restores both from the single-file checkpoint;
* under ``FSDPStrategy`` (FSDP1, GPUs only, never run here) the module's parameters are flat shards,
  so updating, swapping and restoring the average run inside
  ``FullyShardedDataParallel.summon_full_params``: every process keeps a full copy of the averaged
  weights.

``polyguide fit`` runs a recipe's ``lightning.pytorch.callbacks.EMAWeightAveraging`` as this class.
Every process updates its average from the same (all-reduced) weights, so the averages agree on
every rank; :meth:`on_save_checkpoint` records each process's digest of its average under
``ema_digests`` in the checkpoint, so that anyone can check.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
from collections.abc import Iterator
from typing import Any

import torch
from lightning.pytorch.callbacks import EMAWeightAveraging as _LightningEMA
from lightning.pytorch.utilities import rank_zero_warn
from torch.optim.swa_utils import AveragedModel

from framework.training.resume import gather_objects

__all__ = ["EMAWeightAveraging", "ema_update", "full_params", "full_tensor", "reshard", "state_digest"]


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


def reshard(module: torch.nn.Module) -> None:
    """Put every FSDP2-sharded submodule of ``module`` back into its sharded state (DTensor shards in
    place of the whole parameters a forward pass may leave, as the root's does), so that parameters
    line up shard for shard with an equally sharded copy; nothing for other modules."""
    from torch.distributed.fsdp import FSDPModule

    for m in module.modules():
        if isinstance(m, FSDPModule):
            m.reshard()


def full_tensor(value: Any) -> Any:
    """A ``DTensor`` (an FSDP2 shard) gathered whole, on the CPU (a collective: every process calls
    it); anything else as it is."""
    from torch.distributed.tensor import DTensor

    return value.full_tensor().cpu() if isinstance(value, DTensor) else value


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
        """At ``fit``: the average, a copy of the module. Under Lightning's ``ModelParallelStrategy``
        (FSDP2, a ``device_mesh`` on the module) the copy is taken before the module is sharded and
        then sharded the same way (``configure_model``), so each process averages only its own shard.
        (Lightning's own setup would deep-copy a sharded module, and warns whenever ``configure_model``
        is overridden, which this project's module does.)"""
        self._trainer = trainer
        if stage != "fit":
            return
        mesh = getattr(pl_module, "device_mesh", None)
        pl_module._device_mesh = None  # the copy must not carry (and deep-copy) the process mesh
        try:
            self._average_model = AveragedModel(pl_module, device=self._device or pl_module.device,
                                                use_buffers=self._use_buffers, **self._kwargs)
        finally:
            pl_module._device_mesh = mesh
        if mesh is not None:
            self._average_model.module._device_mesh = mesh
            self._average_model.module.configure_model()
            pl_module.configure_model()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        reshard(pl_module)
        with full_params(trainer, writeback=False):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        reshard(pl_module)
        with full_params(trainer, writeback=False):
            super().on_train_epoch_end(trainer, pl_module)

    def _swap_models(self, pl_module: Any) -> None:
        reshard(pl_module)
        with full_params(self._trainer, writeback=True):
            super()._swap_models(pl_module)

    def _copy_average_to_current(self, pl_module: Any) -> None:
        reshard(pl_module)
        with full_params(self._trainer, writeback=True):
            super()._copy_average_to_current(pl_module)

    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        if self._average_model is not None and getattr(pl_module, "device_mesh", None) is not None:
            self._load_sharded(pl_module, checkpoint)
            return
        with full_params(trainer, writeback=True):
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def _load_sharded(self, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        """FSDP2: ``ModelParallelStrategy`` has loaded (and removed) the checkpoint's ``state_dict``,
        the average, into the sharded module; that becomes the sharded average, and the raw weights
        (``current_model_state``, full tensors) go into the module, each process keeping its shards.
        A checkpoint without them starts both from ``state_dict``, as Lightning's callback does."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        reshard(pl_module)
        average = self._average_model
        for a, c in zip(itertools.chain(average.module.parameters(), average.module.buffers()),
                        itertools.chain(pl_module.parameters(), pl_module.buffers()), strict=True):
            a.data.copy_(c.data)
        if "current_model_state" not in checkpoint or "averaging_state" not in checkpoint:
            rank_zero_warn("The checkpoint was not created with WeightAveraging. Both the current and the "
                           "average model will be initialized with state_dict.")
            return
        for name, value in checkpoint["averaging_state"].items():
            getattr(average, name).copy_(value)
        set_model_state_dict(pl_module, checkpoint["current_model_state"],
                             options=StateDictOptions(full_state_dict=True, strict=True))

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if self._average_model is None:
            return
        # FSDP2: the average is sharded (DTensors); checkpoints ship it whole. Every process saves
        # (Lightning writes rank 0's file), so these collectives, and the one below, are safe.
        checkpoint["state_dict"] = {name: full_tensor(value)
                                    for name, value in checkpoint["state_dict"].items()}
        checkpoint["ema_digests"] = gather_objects(state_digest(checkpoint["state_dict"]))

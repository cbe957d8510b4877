"""Start training from another trained model's backbone weights (e.g. a masked diffusion LM from an
autoregressive one: AR-to-diffusion adaptation, as in DiffuLLaMA and Dream).

    trainer:
      callbacks:
        - class_path: framework.training.warm_start.WarmStart
          init_args: {checkpoint: recipes/text/checkpoints/shakespeare_ar.ckpt}

Every backbone tensor the source also has is copied (one of another shape is an error: another
architecture). Positional embeddings of a longer
source are cut: the autoregressive backbone has one more position (its BOS token in front), so
``offset`` (default: the difference in length) skips it and token ``j`` keeps the embedding it had
at position ``j``. Tensors the source lacks (the time embedding of an iterative family) keep their
initialisation, but the time MLP's output layer starts at zero, so the time input starts as a
no-op and the warm-started network computes what the source did (apart from attention now being
bidirectional when the target is not causal). Nothing is copied when resuming from a checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

__all__ = ["WarmStart"]


class WarmStart(L.Callback):
    """Copy a trained checkpoint's backbone weights into the model before training starts.

    Args:
        checkpoint: a polyguide checkpoint (read with the safe loader).
        offset: positions of the source's positional embedding to skip (default: the difference
            in length, ``0`` for equal lengths).
    """

    def __init__(self, checkpoint: str | Path, offset: int | None = None) -> None:
        self.checkpoint, self.offset = Path(checkpoint), offset
        self.copied: list[str] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or trainer.ckpt_path is not None:
            return
        from framework.training.module import load

        source = load(self.checkpoint).backbone.state_dict()
        target = pl_module.backbone.state_dict()
        plan, mismatched = {}, []
        for name, value in target.items():
            src = source.get(name)
            if src is None:
                continue
            if name == "pos" and src.shape[1:] == value.shape[1:] and src.shape[0] > value.shape[0]:
                off = src.shape[0] - value.shape[0] if self.offset is None else self.offset
                src = src[off:off + value.shape[0]]
            if src.shape != value.shape:
                mismatched.append(f"{name} {tuple(src.shape)} vs {tuple(value.shape)}")
            plan[name] = src
        if mismatched or not plan:
            raise ValueError(f"warm start: {self.checkpoint} does not fit this model (another architecture: "
                             f"{'; '.join(mismatched[:3]) or 'no tensor in common'})")
        with torch.no_grad():
            for name, src in plan.items():
                target[name].copy_(src)
            time_mlp = getattr(pl_module.backbone, "time_mlp", None)
            if time_mlp is not None and not any(n.startswith("time_mlp.") for n in plan):
                time_mlp[-1].weight.zero_()
                time_mlp[-1].bias.zero_()
        self.copied = list(plan)

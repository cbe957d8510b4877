"""The LightningModule every recipe trains: :class:`~framework.core.model.GenerativeModel` plus training.

Everything needed to rebuild the model is a constructor argument (saved by
``save_hyperparameters``), so a checkpoint alone restores it: ``framework.load(path)``.
EMA of the weights comes from Lightning's ``EMAWeightAveraging`` callback (its checkpoints
hold the averaged weights in ``state_dict``). Checkpoints are written atomically beside their
destination (:class:`~framework.training.checkpoint_io.AtomicCheckpointIO`, installed on any trainer that
has Lightning's default IO), so a kill during a save leaves the old or the new file, and they hold
the random states, so resuming from any checkpoint continues bit for bit (:mod:`framework.training.resume`).

Condition dropout is per sample. By default it is *derived from the guidance the model will
be sampled with*: ``guidance=["nested([shape, color], [2, 4])", ...]`` trains exactly the
condition subsets those expressions evaluate (:meth:`DropoutSpec.for_guidance`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from framework.core import plugins
from framework.core.checkpoints import export, load_model
from framework.core.conditions import Conditions, random_requests
from framework.core.model import FAMILIES, GenerativeModel
from framework.core.plugins import PluginError
from framework.generators import SampleOutput
from framework.training.resume import rng_state, set_rng_state

__all__ = ["FAMILIES", "GenerativeModel", "GenerativeModule", "export", "load"]


class GenerativeModule(GenerativeModel, L.LightningModule):
    """A conditional generator of any family on the shared backbone, trainable by Lightning.

    The constructor arguments are :class:`~framework.core.model.GenerativeModel`'s (see there).
    """

    def _store_hparams(self, hparams: dict[str, Any]) -> None:
        self.save_hyperparameters(hparams)  # Lightning's: written into every checkpoint

    @property
    def hparams(self):
        return L.LightningModule.hparams.fget(self)

    @property
    def device(self) -> torch.device:
        return L.LightningModule.device.fget(self)

    # ------------------------------------------------------------------ training
    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        x, conds = self._batch(batch)
        conds = self.dropout.apply(conds).to(x.device)
        loss = self.family.loss(self.backbone, x, conds)
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        return loss

    # ------------------------------------------------------------------ exact resumption
    def setup(self, stage: str) -> None:
        from framework.training.checkpoint_io import install

        install(self.trainer)  # atomic checkpoints, whatever trainer runs this module

    def on_validation_start(self) -> None:
        # validation must not move training's random streams: then the training trajectory does not
        # depend on when (or whether) validation runs, and a resumed run draws what the original drew
        self._rng_outside_validation = rng_state()

    def on_validation_end(self) -> None:
        state, self._rng_outside_validation = getattr(self, "_rng_outside_validation", None), None
        if state is not None:
            set_rng_state(state)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # a save from within validation records the training state validation will give back
        checkpoint["rng_states"] = getattr(self, "_rng_outside_validation", None) or rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._rng_to_restore = checkpoint.get("rng_states")

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # restored here, not at load time: nothing between a save and the next training step draws
        # from the generators in an uninterrupted run, while resuming may (sanity checks, set-up)
        state, self._rng_to_restore = getattr(self, "_rng_to_restore", None), None
        if state is not None:
            set_rng_state(state)

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        x, conds = self._batch(batch)
        gen = torch.Generator().manual_seed(batch_idx)
        loss = self.family.loss(self.backbone, x, conds.to(x.device), gen)
        self.log("val/loss", loss, prog_bar=True, batch_size=x.shape[0], sync_dist=True)
        return loss

    def on_validation_epoch_end(self) -> None:
        """Sample each ``val_guidance`` expression and log its scores as ``val/<label>/<metric>``.

        Scores come from the data module's ``score(media, conditions)`` (with its
        ``val_conditions(n)``) if it has one, else from the modality's judge
        (``Modality.judge(...).evaluate(media, requested)``) on uniformly drawn labels of every
        categorical condition; a modality without a judge logs only the NFE.
        """
        spec = self.hparams.val_guidance
        if not spec or self.trainer.sanity_checking:
            return
        steps, length = self.hparams.val_steps, self.shape[-1]
        if self.hparams.family == "autoregressive" and steps is not None and steps != length:
            rank_zero_warn(f"val_steps={steps}: validation samples {steps} of this autoregressive model's "
                           f"{length} tokens, so it scores truncated samples; leave val_steps out for all "
                           f"{length}")  # Lightning's rank_zero_warn says it once per message
        conds, score = self._validation_scorer(getattr(self.trainer, "datamodule", None))
        for label, g in spec.items():
            out = self.sample(conds, g, steps=self.hparams.val_steps, seed=0)
            if score is not None:
                for k, v in score(out).items():
                    self.log(f"val/{label}/{k}", float(v), batch_size=conds.batch_size)
            self.log(f"val/{label}/nfe", float(out.nfe), batch_size=conds.batch_size)

    def _validation_scorer(self, dm: Any) -> tuple[Conditions, Callable[[SampleOutput], dict] | None]:
        n = self.hparams.val_samples
        if dm is not None and hasattr(dm, "score"):
            conds = dm.val_conditions(n)
            return conds, lambda out: dm.score(out.media if out.media is not None else out.samples, conds)
        categorical = [k for k, s in self.specs.items() if s.kind == "categorical"]
        requested = random_requests(self.specs, categorical, n, seed=0)
        conds = Conditions.from_raw(self.specs, dict(requested), n)
        judge = self._validation_judge()
        if judge is None or not categorical:
            return conds, None
        return conds, lambda out: judge.evaluate(out.media.cpu(), requested)

    def _validation_judge(self) -> Any:
        """The modality's judge, built once, or ``None`` (no modality, or one that provides no
        metrics: said once). It is cached where the modality keeps its shipped checkpoints
        (``recipes_dir/checkpoints``, whose trained judges ``polyguide eval`` uses too) if that
        folder exists, else under the trainer's ``default_root_dir/judges``."""
        if not hasattr(self, "_val_judge"):
            self._val_judge = None
            if self.hparams.get("modality"):
                modality = plugins.get(self.hparams.modality)
                shipped = Path(modality.recipes_dir) / "checkpoints" if modality.recipes_dir else None
                cache = shipped if shipped is not None and shipped.is_dir() else (
                    Path(self.trainer.default_root_dir) / "judges")
                try:
                    self._val_judge = modality.judge(self.specs, self.codec, cache)
                except (PluginError, ValueError) as e:
                    rank_zero_warn(f"val_guidance is set but validation samples are not scored: {e} (give "
                                   f"the data module a score(media, conditions), or the modality a judge)")
        return self._val_judge

    @torch.no_grad()
    def val_loss(self, loader) -> float:
        """Mean training loss over a data loader, with a fixed noise seed per batch (comparable runs)."""
        losses = []
        for i, batch in enumerate(loader):
            x, conds = self._batch(batch)
            losses.append(self.family.loss(self.backbone, x, conds, torch.Generator().manual_seed(i)))
        return float(torch.stack(losses).mean())

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr,
                                weight_decay=self.hparams.weight_decay)
        warm = max(1, self.hparams.warmup_steps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def load(checkpoint: str | Path, map_location: str | torch.device = "cpu") -> GenerativeModule:
    """Rebuild a trained model from a checkpoint alone, ready to sample (eval mode).

    Raises:
        CheckpointError: one line naming the file and what is wrong with it (see
            :func:`~framework.core.checkpoints.load_model`).
    """
    return load_model(checkpoint, map_location)


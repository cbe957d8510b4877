"""The LightningModule every recipe trains: :class:`~framework.model.generative.GenerativeModel` + training.

Everything needed to rebuild the model is a constructor argument (saved by
``save_hyperparameters``), so a checkpoint alone restores it: ``framework.training.module.load(path)``.
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

import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from framework.core import plugins
from framework.core.conditions import ConditionError, Conditions
from framework.core.dropout import DropoutSpec
from framework.core.errors import ArgumentError
from framework.core.plugins import PluginError
from framework.evaluation import random_requests
from framework.generators import SampleOutput
from framework.guidance.syntax import parse
from framework.model.checkpoints import export, load_model
from framework.model.generative import FAMILIES, GenerativeModel
from framework.training.resume import gather_objects, rng_state, set_rng_state

__all__ = ["FAMILIES", "GenerativeModel", "GenerativeModule", "batch_size", "data_parallel_mesh", "export",
           "load", "shard"]


class GenerativeModule(GenerativeModel, L.LightningModule):
    """A conditional generator of any family on the shared backbone, trainable by Lightning.

    The constructor arguments are :class:`~framework.model.generative.GenerativeModel`'s (see there,
    all by keyword), and:

    Args:
        extend_dropout: when the dropout is derived from ``guidance`` (no ``dropout`` given), derive it
            from ``val_guidance``'s expressions too, so that validation evaluates only condition subsets
            the model trains, instead of stopping before the first step with an error naming the
            untrained subset. The expressions added are stored in ``guidance`` (``hparams.yaml``,
            checkpoints), so a reloaded model derives the same dropout; the flag itself is not stored.
    """

    def __init__(self, extend_dropout: bool = False, **kwargs: Any) -> None:
        guidance = list(kwargs.get("guidance") or ())
        added = [g for g in (kwargs.get("val_guidance") or {}).values() if g not in guidance]
        if extend_dropout and kwargs.get("dropout") is None and guidance and added:
            kwargs["guidance"] = guidance + added
            rank_zero_info(f"extend_dropout: the condition dropout is derived from val_guidance's "
                           f"{', '.join(added)} too")
        super().__init__(**kwargs)

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
        # the global batch's loss: the mean over processes (each logs its own share otherwise)
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0], sync_dist=True)
        return loss

    # ------------------------------------------------------------------ sharding (FSDP2)
    def configure_model(self) -> None:
        """Under Lightning's ``ModelParallelStrategy`` (torch's FSDP2), shard the trainable network:
        ``fully_shard`` each of the backbone's blocks, then the backbone (its embeddings, conditioner
        and head). The codec and anything else outside the backbone stay whole on every process. A
        no-op without a device mesh (every other strategy) and when the backbone is already sharded
        (Lightning may call this hook more than once).

        Raises:
            ArgumentError: a mesh with tensor parallelism (the backbone is sharded data-parallel only).
        """
        mesh = self.device_mesh
        if mesh is not None:
            shard(self.backbone, data_parallel_mesh(mesh))

    # ------------------------------------------------------------------ exact resumption
    def setup(self, stage: str) -> None:
        from framework.training.checkpoint_io import install
        from framework.training.progress import adopt

        install(self.trainer)  # atomic checkpoints, whatever trainer runs this module
        adopt(self.trainer)  # its progress bar: "Epoch 4", not "Epoch 4/-2", and totals that hold
        if stage == "fit":
            self.check_val_guidance()
            rank_zero_info(DropoutSpec.table(self.dropout.record()))

    def check_val_guidance(self) -> None:
        """Before the first step: every ``val_guidance`` expression must evaluate only condition
        subsets the dropout trains (``guidance`` is checked when the model is built).

        Raises:
            ConditionError: one line naming the label, the expression and the untrained subset.
        """
        for label, text in (self.hparams.get("val_guidance") or {}).items():
            try:
                self.dropout.check(parse(text), self.specs, strict=True)
            except ConditionError as e:
                raise ConditionError(f"val_guidance {label}: {e} (model.extend_dropout: true trains it "
                                     f"too)") from None

    @property
    def hparams_initial(self):
        """What loggers record (``hparams.yaml``): the constructor arguments and ``dropout_trained``,
        the dropout actually trained, derived or given (:meth:`DropoutSpec.record`)."""
        hp = L.LightningModule.hparams_initial.fget(self)
        hp["dropout_trained"] = self.dropout.record()
        return hp

    def on_validation_start(self) -> None:
        # validation must not move training's random streams: then the training trajectory does not
        # depend on when (or whether) validation runs, and a resumed run draws what the original drew
        self._rng_outside_validation = rng_state()

    def on_validation_end(self) -> None:
        state, self._rng_outside_validation = getattr(self, "_rng_outside_validation", None), None
        if state is not None:
            set_rng_state(state)

    def on_train_start(self) -> None:
        # seed_everything gives every process the same seed; process r > 0 then draws its own dropout
        # and noise (else each would repeat rank 0's draws); rank 0 keeps the single-process stream
        rank = self.trainer.global_rank
        if rank > 0:
            seed = (torch.initial_seed() * 1_000_003 + rank) % 2**32
            random.seed(seed)
            np.random.seed(seed)  # noqa: NPY002 (the legacy global state, as Lightning seeds it)
            torch.manual_seed(seed)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # a save from within validation records the training state validation will give back
        mine = getattr(self, "_rng_outside_validation", None) or rng_state()
        checkpoint["rng_states"] = mine
        checkpoint["dropout"] = self.dropout.record()  # what `polyguide explain --checkpoint` shows
        # every process saves (Lightning writes rank 0's file): each one's states, in rank order
        checkpoint["rng_states_per_rank"] = gather_objects(mine)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        per_rank = checkpoint.get("rng_states_per_rank") or []
        trainer = self._trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        if len(per_rank) == world:
            self._rng_to_restore = per_rank[rank]
        else:
            self._rng_to_restore = checkpoint.get("rng_states")
            if world > 1 or len(per_rank) > 1:
                rank_zero_warn(f"resuming with {world} process(es) from a checkpoint of "
                               f"{len(per_rank) or 1}: the data order and random draws differ from the "
                               f"original run's")

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

    def on_validation_epoch_start(self) -> None:
        """Sample each ``val_guidance`` expression and log its scores as ``val/<label>/<metric>``.

        This runs after the callbacks' ``on_validation_epoch_start``, so with an EMA callback the
        samples come from the averaged weights, the ones checkpoints save (Lightning's
        ``WeightAveraging`` swaps them in there and back in ``on_validation_epoch_end``, before the
        module's own hook of that name would run).

        Scores come from the data module's ``score(media, conditions)`` (with its
        ``val_conditions(n)``) if it has one, else from the modality's judge
        (``Modality.judge(...).evaluate(media, requested)``) on uniformly drawn labels of every
        categorical condition; a modality without a judge logs only the NFE. Every process samples
        the same requests with the same seed from the same weights, so the values agree on every
        rank and ``sync_dist`` (the mean over processes) logs that same value everywhere.
        """
        from framework.training.ema import full_params

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
            with full_params(self.trainer, writeback=False):  # FSDP: the whole weights, not this shard
                out = self.sample(conds, g, steps=self.hparams.val_steps, seed=0)
            self._log_media(label, out)
            scores = dict(score(out)) if score is not None else {}
            scores["nfe"] = out.nfe
            for k, v in scores.items():
                self.log(f"val/{label}/{k}", float(v), batch_size=conds.batch_size, sync_dist=True)

    #: samples of each val_guidance label shown in TensorBoard
    MEDIA_SAMPLES = 8

    def _log_media(self, label: str, out: SampleOutput) -> None:
        """The first :attr:`MEDIA_SAMPLES` validation samples into a ``TensorBoardLogger``, if the
        run has one (:func:`framework.training.media.log_samples`): images ``[B, C, H, W]`` as a grid,
        mono audio ``[B, 1, T]`` as clips (at the codec's ``sample_rate``, else 16 kHz), text models'
        samples as text, other media as the modality's writer draws them (motion: its animated GIF)."""
        from lightning.pytorch.loggers import TensorBoardLogger

        from framework.training.media import log_samples

        loggers = [lg for lg in self.loggers if isinstance(lg, TensorBoardLogger)]
        media, k = out.media, self.MEDIA_SAMPLES
        if not loggers or not isinstance(media, torch.Tensor) or self.trainer.global_rank != 0:
            return
        for lg in loggers:
            log_samples(lg.experiment, f"val/{label}", self.global_step, out.samples[:k], media[:k],
                        self.codec, self.hparams.get("modality"))

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
        metrics: said once). It is the one ``polyguide eval`` uses by default, cached in
        :func:`framework.core.plugins.judge_cache` (the modality's shipped checkpoints folder)."""
        if not hasattr(self, "_val_judge"):
            self._val_judge = None
            if self.hparams.get("modality"):
                modality = plugins.get(self.hparams.modality)
                try:
                    self._val_judge = modality.judge(self.specs, self.codec, plugins.judge_cache(modality))
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


def data_parallel_mesh(mesh: Any) -> Any:
    """The one-dimensional data-parallel mesh of Lightning's ``ModelParallelStrategy`` mesh
    (``("data_parallel", "tensor_parallel")``), which must have no tensor parallelism.

    Raises:
        ArgumentError: the tensor-parallel size is above 1 (as with the strategy's ``"auto"`` sizes on
            one node), naming the settings that shard data-parallel.
    """
    names = mesh.mesh_dim_names or ()
    if "tensor_parallel" in names and mesh["tensor_parallel"].size() > 1:
        raise ArgumentError(
            f"ModelParallelStrategy with tensor_parallel_size={mesh['tensor_parallel'].size()}: polyguide's "
            f"backbone is sharded data-parallel only (FSDP2); set data_parallel_size to the number of "
            f"processes ({mesh.size()}) and tensor_parallel_size: 1")
    return mesh["data_parallel"] if "data_parallel" in names else mesh


def shard(backbone: torch.nn.Module, mesh: Any) -> None:
    """``torch.distributed.fsdp.fully_shard`` each block of ``backbone.blocks`` (if it has them), then
    ``backbone`` itself, over the one-dimensional ``mesh``; nothing if ``backbone`` is sharded already."""
    from torch.distributed.fsdp import FSDPModule, fully_shard

    if isinstance(backbone, FSDPModule):
        return
    for block in getattr(backbone, "blocks", ()):
        fully_shard(block, mesh=mesh)
    fully_shard(backbone, mesh=mesh)


def batch_size(batch: Mapping[str, Any]) -> int:
    """Samples in a training batch (``x`` ``[B, ...]`` or ``media`` ``[B, ...]``): the
    ``batch_size_fn`` for Lightning's ``ThroughputMonitor``
    (``--trainer.callbacks.batch_size_fn framework.training.module.batch_size``)."""
    return len(batch["media"] if "media" in batch else batch["x"])


def load(checkpoint: str | Path, map_location: str | torch.device = "cpu") -> GenerativeModule:
    """Rebuild a trained model from a checkpoint alone, ready to sample (eval mode).

    Raises:
        CheckpointError: one line naming the file and what is wrong with it (see
            :func:`~framework.model.checkpoints.load_model`).
    """
    return load_model(checkpoint, map_location, cls=GenerativeModule)


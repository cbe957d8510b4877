"""Guidance distillation: a student that gives the teacher's *guided* prediction in one forward.

A :class:`GuidanceDistillation` recipe trains a copy of a trained checkpoint (the teacher) whose
conditions gain one scalar condition, the guidance weight (``w`` by default,
:class:`~framework.core.conditions.ConditionSpec` of kind ``scalar``). For a *family* of
guidance expressions written with a ``{w}`` placeholder, e.g. ``"cfg((shape, color), {w})"``,
the student learns

    student(x_t, t, c ∪ {w})  ≈  guided teacher prediction of ``family.format(w=w)`` at (x_t, t, c)

at inputs drawn along the family's own training path (:meth:`~framework.generators.Family.training_inputs`:
noised data and training times for diffusion and flow, masked sequences for masked diffusion,
teacher-forced prefixes for autoregressive models). The teacher is evaluated by the guidance
engine (:class:`~framework.guidance.Guider`), so every guidance the engine can plan — several
conditions, negative prompts, non-affine operations, ``-inf`` logits — can be distilled, and the
target is exactly what sampling the teacher would combine at that step.

* continuous families: mean squared error to the guided prediction in the network's own space;
* discrete families: ``KL(p_teacher ‖ p_student)`` over the vocabulary, with ``p_teacher`` the
  renormalised guided distribution (``log_softmax`` of the guided log-probabilities, as the
  samplers do), on the positions the family's loss scores; excluded (``-inf``) tokens add nothing.

Rows without ``w`` (``plain_rate`` of them, the others' conditions dropped like the teacher's
training) learn the teacher's own unguided prediction, so the student keeps every branch the
teacher had and can itself be guided: ``cond(shape, color, w=4)`` is one evaluation per step,
and ``uncond + 2*(cond(shape, color, w=2) - uncond)`` still works.

Every guided row draws its own weight from ``weights = [low, high]``: ``low + (high − low)·u^skew``
(``skew > 1`` puts more rows at the low end, where the guided prediction changes fastest) and
exactly ``low`` with probability ``low_rate`` (for CFG, ``w = 1`` is the conditional prediction
itself). The teacher still runs once per batch: its branches are evaluated together on every
guided row, and each row's weight is combined from those outputs
(:meth:`~framework.guidance.Guider.combine`), so a weight per row costs no more network
evaluations than one per batch. The family's weights must not depend on τ (a window or a
schedule cannot be distilled into a per-step model that is not told τ; checked).

At the end of training the student (EMA weights when the trainer averages them) is written to
``export`` as an ordinary polyguide checkpoint: ``framework.training.module.load`` and
``polyguide sample`` read it like any other.
"""

from __future__ import annotations

import contextvars
import hashlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch

from framework.core.atomic import atomic_save
from framework.core.conditions import Conditions
from framework.generators import Autoregressive, Masked
from framework.guidance.expr import PROBE_TAUS
from framework.model.checkpoints import CheckpointError, load_model
from framework.training.module import GenerativeModule, data_parallel_mesh, shard
from framework.training.student import discrete_kl, family_at, student_hparams, teacher_guider

__all__ = ["GuidanceDistillation", "discrete_kl", "export_student", "family_at", "student_hparams",
           "teacher_guider"]


class GuidanceDistillation(L.LightningModule):
    """Train a one-pass student of a teacher's guided predictions (see the module docstring).

    Args:
        teacher: the teacher checkpoint (any family; a ``polyguide fit`` or export checkpoint).
        guidance: the family of guidance expressions, with ``{w}`` where the weight goes, e.g.
            ``"cfg((shape, color), {w})"`` or ``"nested([shape, color], [2, {w}])"``.
        weights: ``[low, high]``: the range of weights drawn, one per row.
        condition: the name of the student's scalar weight condition.
        plain_rate: fraction of rows without the weight: they learn the teacher's own (unguided)
            prediction under the teacher's condition dropout.
        groups: distinct weights per batch (``None``: a weight per row; older recipes drew one
            per group of rows).
        skew: ``w = low + (high − low)·u^skew``, ``u ~ U(0, 1)``: 1 is uniform, > 1 favours ``low``.
        low_rate: probability that a guided row's weight is exactly ``low``.
        sample_w: the weight in the student's default guidance ``cond(<kept>, w=sample_w)``.
        lr, weight_decay, warmup_steps: AdamW with linear warm-up, on the student.
        cosine: after the warm-up, decay the learning rate to 0 at the trainer's ``max_steps``
            (a cosine): the last steps average out the noise that hides small weight differences.
        weight_power: guided rows weigh ``max(|w|, 1)^−weight_power`` in the loss (see
            :meth:`row_weights`; 0: every row alike).
        export: where to write the student checkpoint when training ends (atomically).
    """

    def __init__(self, teacher: str, guidance: str, weights: Sequence[float] = (1.0, 8.0),
                 condition: str = "w", plain_rate: float = 0.2, groups: int | None = None,
                 skew: float = 1.0, low_rate: float = 0.0, weight_power: float = 0.0,
                 sample_w: float = 3.0, lr: float = 3e-4, weight_decay: float = 0.0,
                 warmup_steps: int = 100, cosine: bool = False, export: str | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        if len(weights) != 2 or not float(weights[0]) <= float(weights[1]):
            raise ValueError(f"weights must be [low, high] with low ≤ high, got {list(weights)}")
        if groups is not None and groups < 1:
            raise ValueError(f"groups must be ≥ 1 (or null: a weight per row), got {groups}")
        if not skew > 0:
            raise ValueError(f"skew must be > 0, got {skew}")
        if not 0.0 <= low_rate <= 1.0:
            raise ValueError(f"low_rate must be in [0, 1], got {low_rate}")
        where = f"teacher checkpoint {teacher}"
        model = _isolated(load_model, teacher)  # CheckpointError names the file
        model.requires_grad_(False)
        hp, self.kept = student_hparams(model, guidance, condition, plain_rate, sample_w, where)
        self._check_constant_weights(guidance, float(weights[0]), float(weights[1]))
        lo, hi = float(weights[0]), float(weights[1])
        # the weight the teacher's branches are planned at: mid-range, where no term has weight 0
        # (cfg at w = 1 prunes its unconditional branch); every other weight is combined from them
        self._plan_w = (lo + hi) / 2
        planned = teacher_guider(model, family_at(guidance, self._plan_w))
        needed = planned.plan(0.0, planned.new_state())
        for w in (lo, hi):  # the engine's checks, before any training
            g = teacher_guider(model, family_at(guidance, w))
            extra = {b for bs in g.plan(0.0, g.new_state()).values() for b in bs} - \
                {b for bs in needed.values() for b in bs}
            if extra:
                raise ValueError(f"the guidance family {guidance!r} evaluates {sorted(map(repr, extra))} "
                                 f"at w={w:g} but not at w={self._plan_w:g}; its branches must not change "
                                 f"with w")
        self.student = _isolated(GenerativeModule, **hp)
        missing, unexpected = self.student.load_state_dict(model.state_dict(), strict=False)
        new = [k for k in missing if f".{condition}" not in k]
        if new or unexpected:
            raise CheckpointError(f"{where}: its weights do not initialise the student (missing "
                                  f"{new[:3]}, unexpected {list(unexpected)[:3]})")
        # the teacher is not a sub-module: not trained, averaged or saved in the student's checkpoints
        self.__dict__["teacher"] = model.eval()
        self.teacher_sha256 = hashlib.sha256(Path(teacher).read_bytes()).hexdigest()

    @staticmethod
    def _check_constant_weights(template: str, lo: float, hi: float) -> None:
        for w in (lo, hi):
            expr = family_at(template, w)
            first = expr.coefficients(PROBE_TAUS[0])
            if any(expr.coefficients(tau) != first for tau in PROBE_TAUS[1:]):
                raise ValueError(f"the guidance family {template!r} changes with the sampling progress τ "
                                 f"(a window or schedule); a distilled student is not told τ, so its "
                                 f"weights must be constant")

    # ------------------------------------------------------------------ the objective
    def targets(self, x_in: torch.Tensor, t: torch.Tensor, conds: Conditions, w: torch.Tensor,
                plain: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, Conditions]:
        """The teacher's targets and the student's conditions for one batch.

        Args:
            x_in, t: the network inputs ``[B, ...]`` and times ``[B]`` (``training_inputs``).
            conds: the batch's conditions (teacher conditions only).
            w: ``[B]`` guidance weights (ignored on plain rows).
            plain: bool ``[B]``: rows that learn the teacher's unguided prediction.

        Returns:
            ``(target, student_conditions)``: the target in the student's native space (discrete
            families: normalised log-probabilities) ``[B, ...]``, and the conditions with ``w``.
        """
        teacher, fam = self.teacher, self.student.family
        weight = next(teacher.parameters(), None)  # a teacher may hold no weights (exact toy networks)
        if weight is not None and weight.device != x_in.device:
            teacher.to(x_in.device)
        discrete = isinstance(fam, (Masked, Autoregressive))
        B = x_in.shape[0]
        dropped = teacher.dropout.apply(conds, generator)
        target = None
        present = {}
        for n in conds.names:  # guided rows: the conditions the family keeps; plain rows: dropout
            keep = conds.present[n] & (n in self.kept)
            present[n] = torch.where(plain, dropped.present[n].to(keep.device), keep)
        student_conds = Conditions({**conds.values, self.hparams.condition: w.float()},
                                   {**present, self.hparams.condition: ~plain})
        with torch.no_grad():
            if bool(plain.any()):
                rows = plain.nonzero().squeeze(1)
                c = Conditions({n: conds.values[n][rows] for n in conds.names},
                               {n: present[n][rows] for n in conds.names})
                out = teacher.backbone(x_in[rows], t[rows], c)
                out = torch.log_softmax(out.float(), dim=-1) if discrete else out
                target = torch.empty((B, *out.shape[1:]), dtype=out.dtype, device=out.device)
                target[rows] = out
            guided = (~plain).nonzero().squeeze(1)
            if guided.numel():
                # one batched teacher pass of the family's branches on every guided row (planned at a
                # weight that needs them all), then each row's own weight combined from those outputs
                guider = teacher_guider(teacher, family_at(self.hparams.guidance, self._plan_w))
                xg, tg, cg = x_in[guided], t[guided], conds.index(guided)
                step = guider.step(xg, tg, 0.0, cg, guider.new_state(generator))
                wg = w[guided]
                for value in torch.unique(wg):
                    rows = (wg == value).nonzero().squeeze(1)
                    out = guider.combine(family_at(self.hparams.guidance, float(value)), step, xg, tg, 0.0,
                                         cg, guider.new_state(generator), rows)
                    out = torch.log_softmax(out.float(), dim=-1) if discrete else out
                    if target is None:
                        target = torch.empty((B, *out.shape[1:]), dtype=out.dtype, device=out.device)
                    target[guided[rows]] = out
        return target, student_conds

    def draw(self, B: int, device: torch.device, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row weights ``[B]`` and plain-row flags ``[B]``.

        A weight per row (``groups`` distinct values when set): ``low + (high − low)·u^skew`` with
        ``u ~ U(0, 1)``, and exactly ``low`` with probability ``low_rate``.
        """
        lo, hi = (float(v) for v in self.hparams.weights)
        groups = self.hparams.groups
        G = B if groups is None else min(groups, B)
        values = lo + (hi - lo) * torch.rand(G, generator=generator) ** float(self.hparams.skew)
        values = torch.where(torch.rand(G, generator=generator) < self.hparams.low_rate, lo, values)
        w = values[torch.arange(B) % G]
        plain = torch.rand(B, generator=generator) < self.hparams.plain_rate
        return w.to(device), plain.to(device)

    def distill_loss(self, batch: Mapping[str, Any], generator: torch.Generator | None = None
                     ) -> torch.Tensor:
        """The distillation loss of one data batch (see the module docstring)."""
        x0, conds = self.teacher._batch(batch)  # the data carries the teacher's conditions
        conds = conds.to(x0.device)
        x_in, t, counts = self.student.family.training_inputs(x0, generator)
        w, plain = self.draw(x0.shape[0], x0.device, generator)
        target, student_conds = self.targets(x_in, t, conds, w, plain, generator)
        pred = self.student.backbone(x_in, t, student_conds)
        rows = self.row_weights(w, plain)  # [B], mean 1
        if isinstance(self.student.family, (Masked, Autoregressive)):
            counts = torch.ones(pred.shape[:-1], device=pred.device) if counts is None else counts
            return discrete_kl(target, pred, counts * rows.view(-1, *[1] * (counts.ndim - 1)))
        per_row = (pred - target.to(pred.dtype)).pow(2).flatten(1).mean(1)
        return (per_row * rows).mean()

    def row_weights(self, w: torch.Tensor, plain: torch.Tensor) -> torch.Tensor:
        """Loss weights ``[B]`` of the rows, normalised to mean 1: ``max(|w|, 1)^−weight_power`` on
        guided rows, 1 on plain rows. The guided target moves away from the conditional prediction
        roughly in proportion to ``w`` (for CFG, ``(w − 1)·(c − u)``), so the student's error does too;
        ``weight_power = 2`` evens out the rows' share of the loss, and with it the error relative
        to what separates neighbouring weights, which otherwise is largest at the low end."""
        rows = w.float().abs().clamp_min(1.0).pow(-float(self.hparams.weight_power))
        rows = torch.where(plain, torch.ones_like(rows), rows)
        return rows / rows.mean()

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.distill_loss(batch)
        self.log("train/distill", loss, prog_bar=True, batch_size=len(next(iter(batch.values()))))
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.distill_loss(batch, torch.Generator().manual_seed(batch_idx))
        self.log("val/distill", loss, prog_bar=True, sync_dist=True)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.student.parameters(), lr=self.hparams.lr,
                                weight_decay=self.hparams.weight_decay)
        warm = max(1, self.hparams.warmup_steps)
        total = int(self.trainer.max_steps) if self._trainer is not None else -1
        if self.hparams.cosine and total <= warm:
            raise ValueError(f"cosine: true needs the trainer's max_steps above warmup_steps={warm}, "
                             f"got {total}")
        cosine = bool(self.hparams.cosine)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, warm, total, cosine))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def configure_model(self) -> None:
        """Under Lightning's ``ModelParallelStrategy`` (torch's FSDP2): shard the student's backbone as
        :meth:`GenerativeModule.configure_model` does; the frozen teacher stays whole on every process.
        A no-op without a device mesh (every other strategy).

        Raises:
            ArgumentError: a mesh with tensor parallelism (see :func:`data_parallel_mesh`).
        """
        mesh = self.device_mesh
        if mesh is not None:
            shard(self.student.backbone, data_parallel_mesh(mesh))

    # ------------------------------------------------------------------ the student's checkpoint
    def setup(self, stage: str) -> None:
        from framework.training.checkpoint_io import install

        install(self.trainer)

    def on_train_end(self) -> None:
        # runs after the callbacks' on_train_end: an EMA callback has put the averaged weights in
        if not self.hparams.export:
            return
        from framework.training.ema import full_tensor

        # under FSDP2 the student's weights are shards: every process gathers them (a collective)
        state = {k: full_tensor(v.detach()) for k, v in self.student.state_dict().items()}
        if self.trainer.is_global_zero:
            path = self.save_student(self.hparams.export, state=state)
            print(f"wrote the student to {path}")

    def save_student(self, dest: str | Path, steps: int | None = None,
                     state: Mapping[str, torch.Tensor] | None = None) -> Path:
        """Write the student as an ordinary polyguide checkpoint (atomically); returns the path.
        ``steps``: the training steps behind it (default: the trainer's); ``state``: its weights
        (default: the student's ``state_dict()``; whole tensors, which FSDP2 shards are not)."""
        if steps is None:
            steps = int(self.trainer.global_step) if self._trainer is not None else 0
        state = self.student.state_dict() if state is None else state
        ckpt = {"state_dict": {k: v.detach().cpu() for k, v in state.items()},
                "hyper_parameters": dict(self.student.hparams),
                "pytorch-lightning_version": L.__version__,
                "distillation": {"teacher": str(self.hparams.teacher), "teacher_sha256": self.teacher_sha256,
                                 "guidance": self.hparams.guidance,
                                 "weights": [float(v) for v in self.hparams.weights],
                                 "condition": self.hparams.condition,
                                 "steps": steps}}
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        return atomic_save(dest, lambda f: torch.save(ckpt, f))


def export_student(checkpoint: str | Path, dest: str | Path) -> Path:
    """Write the student of a distillation run's Lightning checkpoint (e.g. ``last.ckpt`` of a run
    stopped early; EMA weights when the run averaged them) as an ordinary polyguide checkpoint.

    The checkpoint is read with ``weights_only=True``; its teacher is loaded again from the path it
    names. Raises :class:`CheckpointError` naming the file when it is not a distillation checkpoint.
    """
    from framework.model.checkpoints import read_checkpoint

    ckpt = read_checkpoint(checkpoint)
    hp = dict(ckpt.get("hyper_parameters") or {}) if isinstance(ckpt, dict) else {}
    hp.pop("_instantiator", None)
    hp.pop("_class_path", None)
    if "teacher" not in hp or "state_dict" not in ckpt:
        raise CheckpointError(f"checkpoint {checkpoint}: is not a guidance-distillation checkpoint "
                              f"(no teacher among its hyper-parameters)")
    module = _isolated(GuidanceDistillation, **hp)
    module.load_state_dict(ckpt["state_dict"])
    return module.save_student(dest, steps=int(ckpt.get("global_step", 0)))


def _lr_factor(step: int, warm: int, total: int, cosine: bool) -> float:
    """Linear warm-up over ``warm`` steps, then 1, or a cosine from 1 to 0 at ``total``."""
    if step < warm:
        return (step + 1) / warm
    if not cosine:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))


def _isolated(fn, *args: Any, **kwargs: Any) -> Any:
    """Build a model outside the hyper-parameter context of this module's own construction:
    LightningCLI hands its configuration to ``save_hyperparameters`` through a context variable,
    and Lightning collects the arguments of every enclosing ``__init__`` frame, either of which
    would mix this module's arguments into the teacher's or the student's. An empty
    :class:`contextvars.Context` and a plain function frame keep them apart."""
    return contextvars.Context().run(fn, *args, **kwargs)

"""The LightningModule every recipe trains: backbone + family + conditions + dropout.

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

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch

from framework.core import plugins, shipped
from framework.core.atomic import atomic_save
from framework.core.checkpoints import build_model, check_compatible, load_checkpoint, load_model
from framework.core.conditions import Conditions, ConditionSpec, DropoutSpec
from framework.core.errors import ArgumentError
from framework.core.plugins import Codec
from framework.generators import Autoregressive, Diffusion, Family, Flow, Masked, SampleOutput
from framework.guidance.branches import cond
from framework.guidance.expr import Expr
from framework.guidance.ops.cost_grad import CostFn, find_costs, unknown_cost
from framework.guidance.syntax import parse
from framework.nn import Backbone, BackboneConfig
from framework.training.resume import rng_state, set_rng_state

__all__ = ["FAMILIES", "GenerativeModule", "export", "load"]

FAMILIES: dict[str, type[Family]] = {"diffusion": Diffusion, "flow": Flow, "masked": Masked,
                                     "autoregressive": Autoregressive}


def _dropout_from_config(rates: Mapping[str, float]) -> DropoutSpec:
    """YAML keys are strings: ``"text"`` is one condition, ``"text+image"`` a joint event."""
    return DropoutSpec({(tuple(k.split("+")) if "+" in k else k): float(v) for k, v in rates.items()})


class GenerativeModule(L.LightningModule):
    """A conditional generator of any family on the shared backbone.

    Args:
        family: ``diffusion``, ``flow``, ``masked`` or ``autoregressive``.
        family_args: keyword arguments of the family (``vocab_size`` for token families,
            ``prediction``, ``sampler``/``solver``...).
        shape: one sample's shape: ``[L, D]`` continuous tokens or ``[L]`` token ids (taken from
            the codec when a ``modality`` is given).
        modality: a registered modality plugin (``"image"``...); batches then carry raw
            ``media`` that the representation's codec encodes, and samples are decoded back.
        representation: the modality's representation and its arguments, e.g.
            ``{"name": "patches", "size": 16, "patch": 2}``.
        conditions: condition specs as dicts (``name``, ``kind``, ``labels``, ``dim``, ``null``).
        backbone: :class:`BackboneConfig` fields (``dim``, ``depth``, ``heads``...); the input,
            output, time and causal settings follow from the family and ``shape``. For the
            autoregressive family, ``{"type": "gpt2", "n_layer": ..., "n_embd": ..., "n_head": ...}``
            trains a transformers ``GPT2LMHeadModel`` instead (conditions as prefix tokens,
            :class:`~framework.nn.CausalLMAdapter`), so ``generate()`` can run the same weights.
        guidance: guidance expressions (text) the model will be sampled with; training dropout
            is derived from them unless ``dropout`` is given, and sampling defaults to the first.
        dropout: explicit per-condition (``"a"``) and joint (``"a+b"``) dropout probabilities.
        dropout_rate: total drop rate used when deriving dropout from ``guidance``, or the
            per-condition rate when neither ``guidance`` nor ``dropout`` is given.
        lr, weight_decay, warmup_steps: AdamW with linear warm-up.
        val_guidance: label → guidance text sampled at each validation epoch and scored by the
            data module's ``score(samples, conditions)`` if it has one.
        val_samples, val_steps: size and steps of those validation samples.
    """

    def __init__(self, family: str = "flow", family_args: dict[str, Any] | None = None,
                 shape: Sequence[int] | None = None, conditions: Sequence[dict[str, Any]] = (),
                 backbone: dict[str, Any] | None = None, guidance: Sequence[str] = (),
                 dropout: dict[str, float] | None = None, dropout_rate: float = 0.15,
                 lr: float = 1e-3, weight_decay: float = 0.0, warmup_steps: int = 100,
                 val_guidance: dict[str, str] | None = None, val_samples: int = 256,
                 val_steps: int = 20, modality: str | None = None,
                 representation: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r}; choose one of {sorted(FAMILIES)}")
        family_args = dict(family_args or {})
        self.codec: Codec | None = None
        self._plugin_costs: dict[str, CostFn] = {}  # built from the modality's cost factories on use
        if modality is not None:
            rep = dict(representation or {})
            if "name" not in rep:
                raise ValueError(f"modality {modality!r} needs representation: {{name: ..., ...}}")
            self.codec = plugins.get(modality).codec(rep.pop("name"), **rep)
            shape = self._codec_shape(shape, family_args)
        if shape is None:
            raise ValueError("give the sample shape (or a modality whose codec defines it)")
        self.family: Family = FAMILIES[family](**family_args)
        self.shape = tuple(int(s) for s in shape)
        self.specs = {c["name"]: ConditionSpec(**c) for c in conditions}
        self.guidance: list[Expr] = [parse(g) for g in guidance]
        backbone = dict(backbone or {})
        arch = backbone.pop("type", "polyguide")
        if arch == "gpt2":
            self.backbone: torch.nn.Module = self._gpt2(backbone)
        elif arch == "polyguide":
            self.backbone = Backbone(self._backbone_config(backbone))
        else:
            raise ValueError(f"unknown backbone type {arch!r}; use 'polyguide' or 'gpt2'")
        self.dropout = self._dropout(dropout, dropout_rate)
        for g in self.guidance:
            self.dropout.check(g, self.specs, strict=True)  # the recipe must train what it samples

    # ------------------------------------------------------------------ construction
    def _codec_shape(self, shape: Sequence[int] | None, family_args: dict[str, Any]) -> tuple[int, ...]:
        """The codec decides the representation; explicit settings must agree with it."""
        codec = self.codec
        if shape is not None and tuple(shape) != codec.shape:
            raise ValueError(f"shape {list(shape)} disagrees with the codec's {list(codec.shape)}")
        if codec.vocab_size is not None:
            v = family_args.setdefault("vocab_size", codec.vocab_size)
            if v != codec.vocab_size:
                raise ValueError(f"family_args.vocab_size={v} but the codec has {codec.vocab_size} tokens")
        return codec.shape

    def _backbone_config(self, overrides: dict[str, Any]) -> BackboneConfig:
        fam, conds = self.family, tuple(self.specs.values())
        common = dict(conditions=conds, **overrides)
        if isinstance(fam, Masked):
            if len(self.shape) != 1:
                raise ValueError(f"masked diffusion samples shape [L]; got {list(self.shape)}")
            return BackboneConfig(seq_len=self.shape[0], vocab_size=fam.vocab_size + 1,
                                  out_dim=fam.vocab_size, time_scale=1000.0, **common)
        if isinstance(fam, Autoregressive):
            K = fam.codebooks
            if len(self.shape) != (1 if K == 1 else 2):
                want = "[L]" if K == 1 else f"[{K}, T] (codebooks, frames)"
                raise ValueError(f"this autoregressive model samples shape {want}; got {list(self.shape)}")
            steps = self.shape[-1] + K - 1  # + the delay pattern's extra steps
            return BackboneConfig(seq_len=steps + 1, vocab_size=fam.input_vocab, out_dim=fam.vocab_size,
                                  time=False, causal=True, codebooks=K, **common)
        if len(self.shape) != 2:
            raise ValueError(f"continuous families sample shape [L, D] tokens; got {list(self.shape)}")
        scale = 1.0 if isinstance(fam, Diffusion) else 1000.0  # integer steps vs t in [0, 1]
        return BackboneConfig(seq_len=self.shape[0], in_dim=self.shape[1], time_scale=scale, **common)

    def _gpt2(self, args: dict[str, Any]) -> torch.nn.Module:
        from transformers import GPT2Config, GPT2LMHeadModel

        from framework.nn import CausalLMAdapter

        if not isinstance(self.family, Autoregressive) or len(self.shape) != 1:
            raise ValueError("a gpt2 backbone serves the autoregressive family on single-stream tokens")
        V, specs = self.family.vocab_size, tuple(self.specs.values())
        cfg = GPT2Config(vocab_size=CausalLMAdapter.vocab_needed(V, specs),
                         n_positions=self.shape[0] + 1 + len(specs), bos_token_id=V, eos_token_id=V,
                         pad_token_id=V, **args)
        return CausalLMAdapter(GPT2LMHeadModel(cfg), V, specs)

    def _dropout(self, rates: dict[str, float] | None, rate: float) -> DropoutSpec:
        if rates is not None:
            spec = _dropout_from_config(rates)
            spec.validate(self.specs)
            return spec
        if self.guidance:
            return DropoutSpec.for_guidance(self.guidance, self.specs, rate=rate)
        return DropoutSpec({n: rate for n, s in self.specs.items() if s.needs_dropout})

    # ------------------------------------------------------------------ training
    def _batch(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, Conditions]:
        if "media" in batch:
            if self.codec is None:
                raise ValueError("the batch carries raw 'media' but the model has no modality/codec")
            x = self.codec.encode(batch["media"])
        else:
            x = batch["x"]
        values = dict(batch.get("conditions", {}))
        missing = set(self.specs) - set(values)
        if missing:
            raise ValueError(f"batch lacks conditions {sorted(missing)}; it has {sorted(values)}")
        present = {n: batch["present"][n] for n in batch.get("present", {})}
        return x, Conditions(values, present)

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
        dm = getattr(self.trainer, "datamodule", None)
        spec = self.hparams.val_guidance
        if not spec or dm is None or not hasattr(dm, "score") or self.trainer.sanity_checking:
            return
        conds = dm.val_conditions(self.hparams.val_samples)
        for label, g in spec.items():
            out = self.sample(conds, g, steps=self.hparams.val_steps, seed=0)
            for k, v in dm.score(out.media if out.media is not None else out.samples, conds).items():
                self.log(f"val/{label}/{k}", v, batch_size=conds.batch_size)
            self.log(f"val/{label}/nfe", float(out.nfe), batch_size=conds.batch_size)

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

    # ------------------------------------------------------------------ sampling
    def costs_for(self, guidance: Expr, given: Mapping[str, CostFn] | None = None) -> dict[str, CostFn]:
        """The costs ``guidance``'s cost terms name: ``given`` ones first, then those the modality
        plugin provides (built once per model, on first use). An unknown name is an error listing
        every available cost."""
        out = dict(given or {})
        factories = {}
        if self.hparams.get("modality"):
            factories = dict(plugins.get(self.hparams.modality).costs)
        built = self._plugin_costs
        for name in dict.fromkeys(n.name for n in find_costs(guidance)):
            if name in out:
                continue
            if name not in factories:
                raise unknown_cost(name, set(out) | set(factories))
            if name not in built:
                built[name] = factories[name](self.codec, self.specs)
            out[name] = built[name]
        return out

    def conditions(self, raw: Mapping[str, Any], n: int) -> Conditions:
        """Raw condition values (labels, tensors) → a batch of ``n`` (unknown names are errors)."""
        return Conditions.from_raw(self.specs, raw, n)

    @torch.no_grad()
    def sample(self, conditions: Conditions | Mapping[str, Any], guidance: Expr | str | None = None,
               *, n: int | None = None, steps: int = 30, seed: int | None = None,
               progress: bool = False, callback=None, weak: GenerativeModule | None = None,
               init: torch.Tensor | Sequence[Any] | None = None, strict: bool = False,
               costs: Mapping[str, CostFn] | None = None) -> SampleOutput:
        """Sample with guidance.

        Args:
            conditions: a :class:`Conditions` batch, or raw values (``{"shape": "circle"}``)
                broadcast to ``n`` samples.
            guidance: an expression or text; defaults to the first training guidance, else
                plain conditional sampling.
            steps: sampling steps (tokens for autoregressive models).
            seed: makes sampling reproducible.
            weak: a weaker model for ``.on("weak")`` branches (autoguidance); it must match this
                one (:func:`~framework.core.checkpoints.check_compatible`) or ``CheckpointError`` is raised.
            strict: raise (instead of warning) if the guidance needs untrained condition subsets.
            costs: cost name → ``fn(x0 [B, *shape], conditions) -> [B]`` for cost terms
                (``presets.cost``), on top of the costs the model's modality plugin provides
                (:attr:`framework.core.plugins.Modality.costs`; these take precedence over them).
            init: a starting state; for autoregressive models a prompt: ids ``[n, P]``, or ``n``
                prompts of different lengths (token-id lists, or strings the model's text codec
                encodes), left-padded and decoded as if each were alone.

        Returns:
            :class:`SampleOutput` with ``samples`` ``[n, *shape]`` and per-step statistics.
        """
        if not isinstance(conditions, Conditions):
            if n is None:
                raise ValueError("give n when conditions are raw values")
            conditions = self.conditions(conditions, n)
        if guidance is None:  # the recipe's guidance, else plain conditional on what was given
            given = sorted(n for n, p in conditions.present.items() if bool(p.any()))
            guidance = self.guidance[0] if self.guidance else cond(*given)
        guidance = parse(guidance) if isinstance(guidance, str) else guidance
        costs = self.costs_for(guidance, costs)
        if init is not None and not isinstance(init, torch.Tensor) and any(isinstance(p, str) for p in init):
            if not hasattr(self.codec, "prompt"):
                raise ArgumentError("text prompts need a model with a text codec; give token ids instead")
            init = [self.codec.prompt(p, 1)[0] if isinstance(p, str) else p for p in init]
        models = {"main": self.backbone}
        if weak is not None:
            check_compatible(self, weak)
            models["weak"] = weak.backbone
        was_training = self.training
        self.eval()
        try:
            shape = self.shape if not isinstance(self.family, Autoregressive) else (*self.shape[:-1], steps)
            gen = torch.Generator().manual_seed(seed) if seed is not None else None
            out = self.family.sample(models, guidance, conditions, shape, steps, specs=self.specs,
                                     generator=gen, progress=progress, callback=callback,
                                     dropout=self.dropout, strict=strict, device=self.device, init=init,
                                     costs=costs)
            if self.codec is not None:
                out.media = self.codec.decode(out.samples)
            return out
        finally:
            self.train(was_training)


def export(checkpoint: str | Path, dest: str | Path) -> Path:
    """Strip a training checkpoint to what sampling needs (hyper-parameters + weights, which are the
    EMA weights when trained with ``EMAWeightAveraging``), written atomically; ``load`` reads it.

    The optimizer state and callbacks are dropped, so a shipped checkpoint is about a third of the
    training checkpoint's size. The source is read with ``weights_only=True`` and must rebuild its
    model (:func:`~framework.core.checkpoints.load_model`): a bad file raises
    :class:`~framework.core.checkpoints.CheckpointError` and nothing is written.
    """
    ckpt = load_checkpoint(checkpoint)
    build_model(ckpt, checkpoint)  # refuse now what `load` would refuse later
    keep = {k: ckpt[k] for k in ("state_dict", "hyper_parameters", "pytorch-lightning_version") if k in ckpt}
    return atomic_save(dest, lambda f: torch.save(keep, f))


def load(checkpoint: str | Path, map_location: str | torch.device = "cpu") -> GenerativeModule:
    """Rebuild a trained model from a checkpoint alone, ready to sample (eval mode).

    ``checkpoint`` is a path; a shipped one may be named as the docs do,
    ``recipes/<modality>/checkpoints/<name>.ckpt``, from any directory, source checkout or
    installed package (:func:`framework.core.shipped.resolve`).

    Raises:
        CheckpointError: one line naming the file and what is wrong with it (see
            :func:`~framework.core.checkpoints.load_model`).
    """
    return load_model(shipped.resolve(checkpoint), map_location)


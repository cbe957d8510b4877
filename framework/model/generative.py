"""A generative model without its training: built from hyper-parameters, guided sampling.

:class:`GenerativeModel` is a plain ``torch.nn.Module`` (backbone + family + conditions +
codec) holding everything sampling needs. The Lightning module every recipe trains,
:class:`framework.training.module.GenerativeModule`, is this class plus the training hooks; both
have the same hyper-parameters and the same ``state_dict``, so a checkpoint loads into either.
Sampling (``polyguide sample``, ``explain``...) therefore never imports Lightning, whose import
costs seconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from framework.core import plugins
from framework.core.conditions import Conditions, ConditionSpec
from framework.core.dropout import DropoutSpec
from framework.core.errors import ArgumentError
from framework.core.plugins import Codec
from framework.core.sizes import build_within
from framework.generators import Autoregressive, Diffusion, Family, Flow, Masked, SampleOutput
from framework.generators.autoregressive import FirstStepMask
from framework.guidance.branches import cond
from framework.guidance.expr import Expr
from framework.guidance.ops.cost_grad import CostFn, find_costs, unknown_cost
from framework.guidance.syntax import parse
from framework.model.compat import check_compatible
from framework.nn import Backbone, BackboneConfig

__all__ = ["FAMILIES", "GenerativeModel", "HParams", "default_steps", "request_seed"]

FAMILIES: dict[str, type[Family]] = {"diffusion": Diffusion, "flow": Flow, "masked": Masked,
                                     "autoregressive": Autoregressive}
#: sampling steps of the continuous and masked families when none are given
DEFAULT_STEPS = 30


def _dropout_from_config(rates: Mapping[str, float]) -> DropoutSpec:
    """YAML keys are strings: ``"text"`` is one condition, ``"text+image"`` a joint event."""
    return DropoutSpec({(tuple(k.split("+")) if "+" in k else k): float(v) for k, v in rates.items()})


class HParams(dict):
    """The constructor arguments, readable as attributes (``model.hparams.family``), as Lightning's
    ``AttributeDict`` is."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value


def default_steps(family: str | None, shape: Sequence[int]) -> int:
    """Sampling steps when none are given: an autoregressive model's whole length (one token per
    step, ``shape[-1]``), a masked model's ``min(30, L)``, 30 for diffusion and flow."""
    if family == "autoregressive":
        return int(shape[-1])
    if family == "masked":
        return min(DEFAULT_STEPS, int(shape[-1]))
    return DEFAULT_STEPS


def _releasing(masks: Any, callback: Any, after: int = 1) -> Any:
    """A step callback that lifts the masks (:class:`FirstStepMask`) after the first ``after``
    steps, then calls ``callback``."""
    masks = list(masks)

    def step(i: int, x: torch.Tensor, out: Any) -> None:
        for m in masks if i + 1 >= after else ():
            m.active = False
        if callback is not None:
            callback(i, x, out)

    return step


def request_seed(seed: int, conditions: Conditions) -> int:
    """The generator seed for ``seed`` and a request: ``seed`` hashed with the condition values and
    presence masks (BLAKE2b, 63 bits). One seed with two different requests (say genre=comedy and
    genre=history) gives two unrelated noise draws, so weakly conditioned samples of different
    requests do not come out identical; the same seed and request always give the same draw."""
    h = hashlib.blake2b(str(int(seed)).encode(), digest_size=8)
    for name in sorted(conditions.values):
        h.update(name.encode())
        h.update(conditions.values[name].detach().cpu().contiguous().numpy().tobytes())
        h.update(conditions.present[name].detach().cpu().numpy().tobytes())
    return int.from_bytes(h.digest(), "little") & (2**63 - 1)


class GenerativeModel(torch.nn.Module):
    """A conditional generator of any family on the shared backbone (sampling; no Lightning).

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
        val_samples, val_steps: size and steps of those validation samples (``val_steps``
            ``None``: :func:`default_steps`, e.g. an autoregressive model's whole length).
    """

    def __init__(self, family: str = "flow", family_args: dict[str, Any] | None = None,
                 shape: Sequence[int] | None = None, conditions: Sequence[dict[str, Any]] = (),
                 backbone: dict[str, Any] | None = None, guidance: Sequence[str] = (),
                 dropout: dict[str, float] | None = None, dropout_rate: float = 0.15,
                 lr: float = 1e-3, weight_decay: float = 0.0, warmup_steps: int = 100,
                 val_guidance: dict[str, str] | None = None, val_samples: int = 256,
                 val_steps: int | None = None, modality: str | None = None,
                 representation: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._store_hparams({k: v for k, v in locals().items() if k not in ("self", "__class__")})
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r}; choose one of {sorted(FAMILIES)}")
        family_args = dict(family_args or {})
        self.codec: Codec | None = None
        #: the modality plugin (looked up once, here): its codec, writer, judge and costs
        self.plugin: plugins.Modality | None = None
        self._plugin_costs: dict[str, CostFn] = {}  # built from the modality's cost factories on use
        if modality is not None:
            rep = dict(representation or {})
            if "name" not in rep:
                raise ValueError(f"modality {modality!r} needs representation: {{name: ..., ...}}")
            self.plugin = plugins.get(modality)
            self.codec = self.plugin.codec(rep.pop("name"), **rep)
            shape = self._codec_shape(shape, family_args)
        if shape is None:
            raise ValueError("give the sample shape (or a modality whose codec defines it)")
        self.family: Family = FAMILIES[family](**family_args)
        self.shape = tuple(int(s) for s in shape)
        if family == "autoregressive" and val_steps is not None and val_steps > self.shape[-1]:
            raise ValueError(f"val_steps={val_steps}: this autoregressive model samples at most "
                             f"{self.shape[-1]} tokens; leave val_steps out for all of them")
        self.specs = {c["name"]: ConditionSpec(**c) for c in conditions}
        self.guidance: list[Expr] = [parse(g) for g in guidance]
        backbone = dict(backbone or {})
        arch = backbone.pop("type", "polyguide")
        if arch == "gpt2":
            self.backbone: torch.nn.Module = build_within(lambda: self._gpt2(backbone), "backbone.",
                                                          depth=backbone.get("n_layer"))
        elif arch == "polyguide":
            cfg = self._backbone_config(backbone)  # a checkpoint's sizes must fit its weights
            self.backbone = build_within(lambda: Backbone(cfg), "backbone.", depth=cfg.depth)
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
            clean = {}
            if fam.attention == "clean_causal":
                clean = dict(clean_context=fam.mask_id, prefix=fam.extra_positions)
            return BackboneConfig(seq_len=self.shape[0] + fam.extra_positions, vocab_size=fam.vocab_size + 1,
                                  out_dim=fam.vocab_size, time_scale=1000.0, **clean, **common)
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

    def _store_hparams(self, hparams: dict[str, Any]) -> None:
        """Keep the constructor arguments as :attr:`hparams` (the Lightning module saves them its
        own way, so that they go into its checkpoints)."""
        self._hparams = HParams(hparams)

    @property
    def hparams(self) -> HParams:
        """The constructor arguments (what a checkpoint stores to rebuild the model)."""
        return self._hparams

    @property
    def device(self) -> torch.device:
        """Where the weights are."""
        return next(self.parameters()).device

    # ------------------------------------------------------------------ batches
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

    # ------------------------------------------------------------------ sampling
    def costs_for(self, guidance: Expr, given: Mapping[str, CostFn] | None = None) -> dict[str, CostFn]:
        """The costs ``guidance``'s cost terms name: ``given`` ones first, then those the modality
        plugin provides (built once per model, on first use). An unknown name is an error listing
        every available cost."""
        out = dict(given or {})
        factories = {}
        if self.hparams.get("modality"):
            factories = dict(self.plugin.costs)
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
               *, n: int | None = None, steps: int | None = None, seed: int | None = None,
               progress: bool = False, callback=None, weak: GenerativeModel | None = None,
               init: torch.Tensor | Sequence[Any] | None = None, strict: bool = False,
               costs: Mapping[str, CostFn] | None = None, ban_first: torch.Tensor | None = None,
               min_new_tokens: int = 0) -> SampleOutput:
        """Sample with guidance.

        Args:
            conditions: a :class:`Conditions` batch, or raw values (``{"shape": "circle"}``)
                broadcast to ``n`` samples.
            guidance: an expression or text; defaults to the first training guidance, else
                plain conditional sampling.
            steps: sampling steps; tokens for autoregressive models, whose default is the whole
                length the model was trained on (``shape[-1]``); default 30 otherwise
                (:func:`default_steps`).
            seed: makes sampling reproducible; it is combined with the request
                (:func:`request_seed`), so different requests never share their noise.
            weak: a weaker model for ``.on("weak")`` branches (autoguidance); it must match this
                one (:func:`~framework.model.compat.check_compatible`) or ``CheckpointError`` is raised.
            strict: raise (instead of warning) if the guidance needs untrained condition subsets.
            costs: cost name → ``fn(x0 [B, *shape], conditions) -> [B]`` for cost terms
                (``presets.cost``), on top of the costs the model's modality plugin provides
                (:attr:`framework.core.plugins.Modality.costs`; these take precedence over them).
            init: a starting state; for autoregressive models a prompt: ids ``[n, P]``, or ``n``
                prompts of different lengths (token-id lists, or strings the model's text codec
                encodes), left-padded and decoded as if each were alone. With string prompts the
                default ``steps`` is what the model's length leaves after the longest prompt,
                ``media`` holds each prompt followed by its continuation (``samples``: only the new
                tokens), and a prompt that ends in a letter or digit is taken as whole words: its
                first new token may not continue that word (the codec's ``word_continuations``).
            ban_first: autoregressive: token ids the first sampled token may not be, ``[V]`` bool
                (every sample) or ``[n, V]``.
            min_new_tokens: autoregressive with an end token: the end token is banned for the first
                ``min_new_tokens`` sampled tokens (a speech is not ended before then).

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
        texts = None
        if init is not None and not isinstance(init, torch.Tensor) and any(isinstance(p, str) for p in init):
            if not hasattr(self.codec, "prompt"):
                raise ArgumentError("text prompts need a model with a text codec; give token ids instead")
            texts = list(init)
            init = [self.codec.prompt(p, 1)[0] if isinstance(p, str) else p for p in init]
            if ban_first is None and hasattr(self.codec, "word_continuations"):
                ban_first = torch.stack([self.codec.word_continuations(p) if isinstance(p, str) else
                                         torch.zeros(self.codec.vocab_size, dtype=torch.bool) for p in texts])
        models = {"main": self.backbone}
        if weak is not None:
            check_compatible(self, weak)
            models["weak"] = weak.backbone
        if steps is None:
            steps = default_steps(self.hparams.get("family"), self.shape)
            if init is not None and isinstance(self.family, Autoregressive):  # the prompt takes room
                longest = init.shape[1] if isinstance(init, torch.Tensor) else max(len(p) for p in init)
                steps = max(1, steps - longest)
        if ban_first is not None and bool(ban_first.any()):
            models = {k: FirstStepMask(m, ban_first) for k, m in models.items()}
            callback = _releasing(models.values(), callback)
        if min_new_tokens > 0:
            eos = getattr(self.family, "eos_id", None)
            if eos is None:
                raise ValueError("min_new_tokens needs an autoregressive model with an end token")
            banned = torch.zeros(self.family.vocab_size, dtype=torch.bool)
            banned[eos] = True
            models = {k: FirstStepMask(m, banned) for k, m in models.items()}
            callback = _releasing(models.values(), callback, after=min_new_tokens)
        was_training = self.training
        self.eval()
        try:
            shape = self.shape if not isinstance(self.family, Autoregressive) else (*self.shape[:-1], steps)
            gen = torch.Generator().manual_seed(request_seed(seed, conditions)) if seed is not None else None
            out = self.family.sample(models, guidance, conditions, shape, steps, specs=self.specs,
                                     generator=gen, progress=progress, callback=callback,
                                     dropout=self.dropout, strict=strict, device=self.device, init=init,
                                     costs=costs)
            if self.codec is not None:
                out.media = self.codec.decode(out.samples)
            if texts is not None and hasattr(self.codec, "decode_continuations"):
                out.media = self.codec.decode_continuations(init, out.samples)  # prompt + continuation
            return out
        finally:
            self.train(was_training)

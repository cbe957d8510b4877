"""Adapters that put external networks behind the engine's call contract.

* :class:`UNetAdapter` — a diffusers ``UNet2DModel`` (categorical conditions as one class
  embedding) or ``UNet2DConditionModel`` (a sequence condition as ``encoder_hidden_states``):
  ``model(x [B, C, H, W], t [B], conditions) -> [B, C, H, W]``.
* :class:`CausalLMAdapter` — a transformers causal LM (GPT-2, Llama, ...) with categorical
  conditions as prefix tokens: ``lm(tokens [B, L], t, conditions, cache=...) -> logits [B, L, V]``
  plus ``new_cache()``, as the autoregressive family expects.

Neither implements in-network perturbations (PAG/SEG/skip layers); branches that need them
get a clear error — use :class:`~framework.nn.Backbone` for those methods.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

import torch
from torch import nn

from framework.core.conditions import ConditionError, Conditions, ConditionSpec

__all__ = ["CausalLMAdapter", "HFCache", "UNetAdapter", "class_embeds_needed"]


def _no_perturbations(name: str, perturbations) -> None:
    if perturbations is not None:
        raise ValueError(f"{name} does not implement in-network perturbations "
                         f"({', '.join(repr(p) for p in perturbations.table)}); use framework.nn.Backbone")


def class_embeds_needed(specs: Sequence[ConditionSpec]) -> int:
    """``num_class_embeds`` a ``UNet2DModel`` needs for these categorical conditions (each + null)."""
    return math.prod(len(s.labels) + 1 for s in specs)


def _mixed_radix(conditions: Conditions, specs: Sequence[ConditionSpec]) -> torch.Tensor:
    """One class id per sample encoding every condition's label or its null (the last digit)."""
    ids, stride = None, 1
    for s in specs:
        n = len(s.labels)
        digit = torch.where(conditions.present[s.name], conditions.values[s.name].long(),
                            torch.full_like(conditions.values[s.name].long(), n))
        ids = digit * stride if ids is None else ids + digit * stride
        stride *= n + 1
    return ids


class UNetAdapter(nn.Module):
    """A diffusers U-Net behind ``model(x, t, conditions)``.

    Args:
        unet: a ``UNet2DModel`` (with ``num_class_embeds = class_embeds_needed(class_conditions)``)
            or a ``UNet2DConditionModel``.
        class_conditions: categorical conditions folded into the class embedding (null = its own
            digit, so every subset of conditions is representable).
        context_condition: the sequence condition fed as ``encoder_hidden_states``; absent rows
            get a learned null context.
        context_shape: ``(M, D)`` of that condition (for the learned null).
    """

    def __init__(self, unet: nn.Module, class_conditions: Sequence[ConditionSpec] = (),
                 context_condition: str | None = None, context_shape: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.unet, self.class_conditions = unet, tuple(class_conditions)
        need = class_embeds_needed(self.class_conditions) if self.class_conditions else None
        have = getattr(unet.config, "num_class_embeds", None)
        if need is not None and have != need:
            names = [s.name for s in self.class_conditions]
            raise ConditionError(f"the U-Net has num_class_embeds={have}; conditions {names} "
                                 f"need {need} (labels + null each)")
        self.context_condition = context_condition
        if context_condition is not None:
            if context_shape is None:
                raise ValueError("context_shape (M, D) is needed for the learned null context")
            self.null_context = nn.Parameter(torch.zeros(1, *context_shape))

    def forward(self, x: torch.Tensor, t: torch.Tensor, conditions: Conditions, perturbations=None
                ) -> torch.Tensor:
        _no_perturbations("UNetAdapter", perturbations)
        kwargs = {}
        if self.class_conditions:
            kwargs["class_labels"] = _mixed_radix(conditions, self.class_conditions)
        if self.context_condition is not None:
            ctx = conditions.values[self.context_condition]
            keep = conditions.present[self.context_condition].view(-1, 1, 1)
            kwargs["encoder_hidden_states"] = torch.where(keep, ctx, self.null_context.to(ctx.dtype))
        return self.unet(x, t, **kwargs).sample


class HFCache:
    """A transformers ``DynamicCache`` with the row operations guidance needs (select, cat)."""

    def __init__(self, cache=None) -> None:
        from transformers import DynamicCache

        self.cache = cache if cache is not None else DynamicCache()

    @property
    def length(self) -> int:
        return self.cache.get_seq_length()

    def _rebuild(self, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> HFCache:
        out = HFCache()
        for i, (k, v) in enumerate(layers):
            out.cache.update(k, v, i)
        return out

    def select(self, rows: torch.Tensor) -> HFCache:
        if self.length == 0:
            return HFCache()
        return self._rebuild([(layer.keys[rows], layer.values[rows]) for layer in self.cache.layers])

    @staticmethod
    def cat(caches: Sequence[HFCache]) -> HFCache:
        lengths = {c.length for c in caches}
        if lengths == {0}:
            return HFCache()
        if len(lengths) != 1:
            raise ValueError(f"cannot concatenate caches of lengths {sorted(lengths)}")
        per_layer = zip(*[c.cache.layers for c in caches], strict=True)
        return caches[0]._rebuild([(torch.cat([la.keys for la in ls]), torch.cat([la.values for la in ls]))
                                   for ls in per_layer])


class CausalLMAdapter(nn.Module):
    """A transformers causal LM whose conditions are prefix tokens.

    The LM's vocabulary is ``V`` data tokens, BOS (``V``), then for each categorical condition
    its labels and a null token. The first call of a sequence (empty cache) prepends one
    token per condition (the label, or the null where the condition is absent).

    Args:
        lm: e.g. ``GPT2LMHeadModel(GPT2Config(vocab_size=CausalLMAdapter.vocab_needed(V, specs), ...))``.
        vocab_size: data tokens ``V``.
        conditions: categorical condition specs, in prefix order.
    """

    def __init__(self, lm: nn.Module, vocab_size: int, conditions: Sequence[ConditionSpec] = ()) -> None:
        super().__init__()
        self.lm, self.vocab_size, self.conditions = lm, int(vocab_size), tuple(conditions)
        for s in self.conditions:
            if s.kind != "categorical":
                raise ConditionError(f"CausalLMAdapter takes categorical conditions; {s.name!r} is {s.kind}")
        need = self.vocab_needed(vocab_size, self.conditions)
        if lm.config.vocab_size < need:
            raise ConditionError(f"the LM's vocab_size={lm.config.vocab_size} < {need} needed for "
                                 f"{vocab_size} tokens + BOS + condition tokens")
        offsets, start = [], vocab_size + 1
        for s in self.conditions:
            offsets.append(start)
            start += len(s.labels) + 1
        self.offsets = offsets

    @staticmethod
    def vocab_needed(vocab_size: int, conditions: Sequence[ConditionSpec]) -> int:
        return vocab_size + 1 + sum(len(s.labels) + 1 for s in conditions)

    def prefix(self, conditions: Conditions) -> torch.Tensor:
        """Condition tokens ``[B, K]``: label token where present, the null token where absent."""
        cols = []
        for s, off in zip(self.conditions, self.offsets, strict=True):
            label = torch.where(conditions.present[s.name], conditions.values[s.name].long(),
                                torch.full_like(conditions.values[s.name].long(), len(s.labels)))
            cols.append(label + off)
        return torch.stack(cols, dim=1)

    def new_cache(self) -> HFCache:
        return HFCache()

    def forward(self, tokens: torch.Tensor, t: torch.Tensor | None, conditions: Conditions,
                cache: HFCache | None = None, perturbations=None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits ``[B, L, V]`` for ``tokens`` ``[B, L]`` (after what ``cache`` holds).

        ``attention_mask`` ``[B, S]`` covers the tokens the cache holds plus ``tokens`` (the
        condition prefix excluded), 0 at left padding; positions then count real tokens only, as
        ``generate`` does for a left-padded batch.
        """
        _no_perturbations("CausalLMAdapter", perturbations)
        k = len(self.conditions)
        fresh = cache is None or cache.length == 0
        ids = torch.cat([self.prefix(conditions), tokens], dim=1) if fresh and k else tokens
        kwargs = {}
        if attention_mask is not None:
            mask = attention_mask.long()
            if k:  # the condition prefix leads every row and is always attended
                mask = torch.cat([torch.ones_like(mask[:, :1]).expand(-1, k), mask], dim=1)
            kwargs["attention_mask"] = mask
            kwargs["position_ids"] = (mask.cumsum(1) - 1).clamp(min=0)[:, -ids.shape[1]:]
        if cache is not None:
            kwargs[self._cache_arg] = cache.cache
        out = self.lm(input_ids=ids, use_cache=cache is not None, **kwargs)
        logits = out.logits[:, (k if fresh else 0):, : self.vocab_size]
        return logits

    @property
    def _cache_arg(self) -> str:
        """Recent transformers name the cache argument ``cache`` (5.0 still ``past_key_values``)."""
        params = inspect.signature(self.lm.forward).parameters
        return "cache" if "cache" in params else "past_key_values"

"""The conditioner: every condition embedded to the backbone's width, with its null where absent
(and CADS noise where a guidance branch asks for it)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from framework.core.conditions import ConditionError, Conditions, ConditionSpec

__all__ = ["POSITION_FEATURES", "Conditioner", "ScalarEmbedding", "position_features"]


#: sinusoidal index features a ``positions: true`` sequence condition gets per element
POSITION_FEATURES = 16


def position_features(length: int, features: int = POSITION_FEATURES,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """Sinusoidal features of the element index ``[length, features]``: ``sin`` and ``cos`` of
    ``i · π / 2^k`` for ``k = 0 … features/2 − 1`` (periods 2, 4, … 2^(features/2) elements).

    Absolute indices, not fractions of the length, so element ``i`` of a sequence means the same
    whatever its length; the periods double like a binary counter, so every index up to
    ``2^(features/2 − 1)`` gets a distinct, smoothly varying code.
    """
    if features < 2 or features % 2:
        raise ValueError(f"position features must be a positive even number, got {features}")
    i = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    freqs = torch.pi / 2.0 ** torch.arange(features // 2, dtype=torch.float32, device=device)
    return torch.cat([torch.sin(i * freqs), torch.cos(i * freqs)], dim=-1)


class Conditioner(nn.Module):
    """Embeds every condition to ``dim`` features and substitutes nulls where absent.

    Categorical → ``nn.Embedding``; vector/sequence → ``nn.Linear``; scalar →
    :class:`ScalarEmbedding`. A sequence condition with ``positions`` has
    :func:`position_features` of each element's index appended to its value before the
    ``nn.Linear`` (``[B, L, dim + POSITION_FEATURES]`` in), so the model knows element order.
    The null is a learned vector (``learned``), zeros (``zeros``), or an extra mask-token
    embedding (``mask``). A scalar condition's embedding and learned null start
    at zero, so adding one to a trained model (a distilled student initialised from its teacher)
    leaves its predictions unchanged until training moves them.
    CADS noise, when a branch requests it, is applied to the embedding of present rows.

    ``forward`` returns name → ``[B, dim]`` (categorical/vector) or ``[B, L, dim]`` (sequence).
    """

    def __init__(self, specs: Sequence[ConditionSpec], dim: int) -> None:
        super().__init__()
        self.specs = {s.name: s for s in specs}
        self.dim = dim
        self.embed = nn.ModuleDict()
        self.null = nn.ParameterDict()
        for s in specs:
            if s.kind == "categorical":
                self.embed[s.name] = nn.Embedding(len(s.labels) + (s.null == "mask"), dim)
            elif s.kind == "scalar":
                self.embed[s.name] = ScalarEmbedding(dim)
            else:
                extra = POSITION_FEATURES if s.positions else 0
                self.embed[s.name] = nn.Linear(s.dim + extra, dim)
            if s.null == "learned":
                init = torch.zeros(dim) if s.kind == "scalar" else torch.randn(dim) * 0.02
                self.null[s.name] = nn.Parameter(init)

    def forward(self, conditions: Conditions) -> dict[str, torch.Tensor]:
        out = {}
        for name, spec in self.specs.items():
            if name not in conditions.values:
                raise ConditionError(f"the model expects condition {name!r}, the batch has "
                                     f"{list(conditions.values)}")
            value, present = conditions.values[name], conditions.present[name]
            if spec.positions:
                pos = position_features(value.shape[1], device=value.device).to(value.dtype)
                value = torch.cat([value, pos.expand(value.shape[0], -1, -1)], dim=-1)
            emb = self.embed[name](value)
            if name in conditions.cads:
                emb = _cads_noise(emb, conditions.cads[name], conditions.generator)
            if spec.null == "learned":
                null = self.null[name].to(emb.dtype).expand_as(emb)
            elif spec.null == "zeros":
                null = torch.zeros_like(emb)
            else:  # the extra embedding row is the mask token
                mask_id = torch.full(value.shape[:1], len(spec.labels), dtype=torch.long,
                                     device=value.device) if spec.kind == "categorical" else None
                null = (self.embed[name](mask_id) if mask_id is not None else torch.zeros_like(emb))
            keep = present.view(-1, *[1] * (emb.ndim - 1))
            out[name] = torch.where(keep, emb, null)
        return out


class ScalarEmbedding(nn.Module):
    """A real number per sample ``[B]`` → ``[B, dim]``: the value and sinusoids of it at
    log-spaced frequencies, then an MLP whose last layer starts at zero (the embedding starts with
    no effect).

    The default frequencies, 10^-1.5 … 10^0.5 rad per unit (periods 2 to 200), vary smoothly over
    the values a guidance weight takes (~0 … 20), so values between the ones trained on are
    interpolated; much higher frequencies turn neighbouring weights into unrelated features. They
    are saved with the weights (a persistent buffer), so a model keeps the ones it was trained with.
    """

    def __init__(self, dim: int, features: int = 32) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.logspace(-1.5, 0.5, features // 2))
        self.mlp = nn.Sequential(nn.Linear(features + 1, dim), nn.SiLU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        v = value.float().reshape(-1, 1)
        args = v * self.freqs.to(v.device)[None]
        feats = torch.cat([v, torch.sin(args), torch.cos(args)], dim=-1)
        return self.mlp(feats.to(self.mlp[0].weight.dtype))


def _cads_noise(emb: torch.Tensor, params: torch.Tensor, generator: torch.Generator | None
                ) -> torch.Tensor:
    """CADS: ``ĉ = √γ·c + s·√(1−γ)·n``, then ψ-rescale to ``c``'s per-sample mean/std."""
    shape = (-1, *[1] * (emb.ndim - 1))
    sg, s, psi = (params[:, i].to(emb.dtype).view(shape) for i in range(3))
    noise = torch.randn(emb.shape, generator=generator, device=emb.device, dtype=emb.dtype)
    noised = sg * emb + s * (1 - sg * sg).clamp_min(0).sqrt() * noise
    dims = tuple(range(1, emb.ndim))
    mean_c, std_c = emb.mean(dims, keepdim=True), emb.std(dims, keepdim=True)
    mean_n, std_n = noised.mean(dims, keepdim=True), noised.std(dims, keepdim=True).clamp_min(1e-6)
    rescaled = (noised - mean_n) / std_n * std_c + mean_c
    return psi * rescaled + (1 - psi) * noised

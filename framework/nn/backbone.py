"""The shared conditional transformer used by every family and modality.

* continuous tokens ``[B, L, in_dim]`` enter through a linear projection, discrete token ids
  ``[B, L]`` through an embedding; learned positional embeddings;
* a time embedding (iterative families) and pooled conditions (categorical / vector) are
  summed into one vector that modulates every block through adaptive layer norm
  (adaLN-Zero, as in DiT); sequence conditions (``[B, M, dim]``) enter by cross-attention;
* ``causal=True`` gives a causal mask and an incremental KV cache for autoregressive use;
* perturbation hooks act **per row** inside one batch, so perturbed guidance branches
  (PAG attention identity, SEG attention blur, skipped layers) batch with ordinary ones.

Call contract (the guidance engine's model contract)::

    backbone(x, t, conditions, perturbations=None, cache=None) -> [B, L, out_dim]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from framework.core.conditions import Conditions, ConditionSpec
from framework.guidance.branches import AttnBlur, AttnIdentity, Perturbation, SkipLayers
from framework.guidance.state import Perturbations
from framework.nn.conditioner import Conditioner

__all__ = ["Backbone", "BackboneConfig", "KVCache"]


@dataclass
class BackboneConfig:
    """Hyper-parameters of :class:`Backbone` (stored in checkpoints to rebuild the model).

    Attributes:
        seq_len: maximum number of tokens.
        in_dim: feature size of continuous tokens (``None`` for discrete input).
        vocab_size: number of token ids for discrete input (``None`` for continuous input).
        out_dim: output features per token (``in_dim`` or ``vocab_size`` by default).
        dim, depth, heads, mlp_ratio: transformer size.
        time: whether a time input is embedded (diffusion, flow, masked); ``False`` for AR.
        time_scale: multiplies ``t`` before the sinusoidal embedding: 1 for integer diffusion
            steps (0..999), ~1000 for continuous time in [0, 1] (flow, masked).
        causal: causal self-attention with a KV cache (autoregressive).
        conditions: the condition specs; categorical/vector are pooled, sequence ones cross-attended.
        perturb_layers: default block indices for perturbations that name no layers (middle block).
        codebooks: parallel token streams per position (discrete input ``[B, L, K]``, output
            ``[B, L, K, out_dim]``); their embeddings are summed (multi-codebook audio tokens).
        clean_context: masked-diffusion input (not causal): the ``[MASK]`` id. Positions holding
            it pass nothing to other positions; unmasked positions attend causally to unmasked
            ones (their states are an autoregressive network's over the unmasked tokens), masked
            positions to every unmasked position, left and right, and to themselves.
        prefix: with ``clean_context``, leading positions that are never treated as masked (a BOS
            slot holding the ``[MASK]`` id).
    """

    seq_len: int
    in_dim: int | None = None
    vocab_size: int | None = None
    out_dim: int | None = None
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    time: bool = True
    time_scale: float = 1.0
    causal: bool = False
    conditions: Sequence[ConditionSpec] = field(default_factory=tuple)
    perturb_layers: tuple[int, ...] | None = None
    codebooks: int = 1
    clean_context: int | None = None
    prefix: int = 0

    def __post_init__(self) -> None:
        if (self.in_dim is None) == (self.vocab_size is None):
            raise ValueError("BackboneConfig needs exactly one of in_dim (continuous) "
                             "or vocab_size (discrete)")
        for name in ("seq_len", "dim", "depth", "heads", "codebooks"):
            value, least = getattr(self, name), 0 if name == "depth" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be a whole number ≥ {least}, got {value!r}")
        if not self.mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be positive, got {self.mlp_ratio!r}")
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim} is not divisible by heads={self.heads}")
        if self.out_dim is None:
            self.out_dim = self.in_dim if self.in_dim is not None else self.vocab_size
        if self.perturb_layers is None:
            self.perturb_layers = (self.depth // 2,)
        if self.codebooks > 1 and self.vocab_size is None:
            raise ValueError("codebooks > 1 needs discrete input (vocab_size)")
        if self.clean_context is not None and (self.causal or self.vocab_size is None or self.codebooks > 1):
            raise ValueError("clean_context needs a non-causal backbone on single-stream token ids")


class KVCache:
    """Per-layer keys/values ``[B, H, T, D]`` for incremental causal decoding.

    Rows are batch rows, so each guidance branch owns its rows; :meth:`select` keeps a
    subset of rows (a branch that stops being needed is sliced out).
    """

    def __init__(self, depth: int) -> None:
        self.k: list[torch.Tensor | None] = [None] * depth
        self.v: list[torch.Tensor | None] = [None] * depth

    @property
    def length(self) -> int:
        return 0 if self.k[0] is None else self.k[0].shape[2]

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.k[layer] is not None:
            k = torch.cat([self.k[layer], k], dim=2)
            v = torch.cat([self.v[layer], v], dim=2)
        self.k[layer], self.v[layer] = k, v
        return k, v

    @staticmethod
    def cat(caches: Sequence[KVCache]) -> KVCache:
        """Concatenate caches of equal length along the batch (row blocks in order)."""
        out = KVCache(len(caches[0].k))
        for i in range(len(out.k)):
            ks = [c.k[i] for c in caches if c.k[i] is not None]
            vs = [c.v[i] for c in caches if c.v[i] is not None]
            if ks and len(ks) != len(caches):
                raise ValueError("cannot concatenate empty and filled KV caches")
            out.k[i] = torch.cat(ks) if ks else None
            out.v[i] = torch.cat(vs) if vs else None
        return out

    def select(self, rows: torch.Tensor) -> KVCache:
        """A cache holding only ``rows`` (bool ``[B]`` or index ``[R]``)."""
        out = KVCache(len(self.k))
        out.k = [None if k is None else k[rows] for k in self.k]
        out.v = [None if v is None else v[rows] for v in self.v]
        return out


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal features of ``t`` ``[B]`` → ``[B, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _gaussian_blur_tokens(q: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur queries ``[R, H, L, D]`` along the token axis; ``sigma = inf`` → the token mean (SEG)."""
    L = q.shape[2]
    if math.isinf(sigma):
        return q.mean(dim=2, keepdim=True).expand_as(q)
    radius = min(L - 1, max(1, math.ceil(3 * sigma)))
    offsets = torch.arange(-radius, radius + 1, device=q.device, dtype=q.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    R, H, _, D = q.shape
    flat = q.permute(0, 1, 3, 2).reshape(R * H * D, 1, L)
    flat = F.conv1d(F.pad(flat, (radius, radius), mode="replicate"), kernel.view(1, 1, -1))
    return flat.reshape(R, H, D, L).permute(0, 1, 3, 2)


class _Block(nn.Module):
    def __init__(self, cfg: BackboneConfig, index: int, cross: bool) -> None:
        super().__init__()
        d, self.heads, self.index, self.causal = cfg.dim, cfg.heads, index, cfg.causal
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.cross = cross
        if cross:
            self.norm_x = nn.LayerNorm(d)
            self.xq, self.xkv, self.xproj = nn.Linear(d, d), nn.Linear(d, 2 * d), nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False)
        hidden = int(d * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d))
        self.ada = nn.Linear(d, 6 * d)
        nn.init.zeros_(self.ada.weight)  # adaLN-Zero: every block starts as the identity
        nn.init.zeros_(self.ada.bias)

    def _split(self, h: torch.Tensor) -> torch.Tensor:
        B, L, D = h.shape
        return h.view(B, L, self.heads, D // self.heads).transpose(1, 2)

    def attention(self, h: torch.Tensor, perturb: list[tuple[Perturbation, torch.Tensor]],
                  cache: KVCache | None, keys: torch.Tensor | None = None,
                  allowed: torch.Tensor | None = None) -> torch.Tensor:
        """Self-attention; ``keys``: bool ``[B, S]`` over cached + new tokens, False at padding;
        ``allowed``: bool ``[B, 1, L, L]``, which keys each query sees (``clean_context``)."""
        B, L, D = h.shape
        q, k, v = (self._split(z) for z in self.qkv(h).chunk(3, dim=-1))
        if cache is not None:
            k, v = cache.append(self.index, k, v)
        causal = self.causal and L > 1
        mask = None
        if allowed is not None:
            mask = allowed
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        elif keys is not None:
            # causal over the cached prefix, padding keys hidden; a padding query sees itself only
            # (its output is never used, and an all-hidden row would be NaN)
            S = k.shape[2]
            seen = torch.ones(L, S, dtype=torch.bool, device=h.device).tril(S - L)
            own = torch.zeros(L, S, dtype=torch.bool, device=h.device)
            own[torch.arange(L), torch.arange(S - L, S)] = True
            mask = (seen[None] & (keys[:, None, :] | own[None]))[:, None]  # [B, 1, L, S]
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        elif causal and cache is not None and k.shape[2] != L:
            # incremental prefill after earlier tokens: explicit mask over the cached prefix
            offset = k.shape[2] - L
            mask = torch.ones(L, k.shape[2], dtype=torch.bool, device=h.device).tril(offset)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        for p, rows in perturb:
            if isinstance(p, AttnIdentity):  # attention map → identity: each token passes its value
                out = torch.where(rows.view(-1, 1, 1, 1), v[:, :, -L:], out)
            elif isinstance(p, AttnBlur):  # recompute only the perturbed rows with blurred queries
                idx = rows.nonzero().squeeze(1)
                qb = _gaussian_blur_tokens(q[idx], p.sigma)
                rows_mask = None if mask is None else (mask[idx] if mask.ndim == 4 else mask)
                out = out.index_copy(0, idx, F.scaled_dot_product_attention(
                    qb, k[idx], v[idx], attn_mask=rows_mask, is_causal=rows_mask is None and causal))
        return self.proj(out.transpose(1, 2).reshape(B, L, D))

    def forward(self, h: torch.Tensor, c: torch.Tensor, seq: torch.Tensor | None,
                perturb: list[tuple[Perturbation, torch.Tensor]], cache: KVCache | None,
                keys: torch.Tensor | None = None, allowed: torch.Tensor | None = None) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(F.silu(c))[:, None].chunk(6, dim=-1)
        attn_p = [(p, r) for p, r in perturb if isinstance(p, (AttnIdentity, AttnBlur))]
        out = h + gate1 * self.attention(self.norm1(h) * (1 + scale1) + shift1, attn_p, cache, keys,
                                         allowed)
        if self.cross and seq is not None:
            B, L, D = out.shape
            q = self._split(self.xq(self.norm_x(out)))
            k, v = (self._split(z) for z in self.xkv(seq).chunk(2, dim=-1))
            out = out + self.xproj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, L, D))
        out = out + gate2 * self.mlp(self.norm2(out) * (1 + scale2) + shift2)
        for p, rows in perturb:
            if isinstance(p, SkipLayers):
                out = torch.where(rows.view(-1, 1, 1), h, out)
        return out


class Backbone(nn.Module):
    """One conditional transformer for every family (see the module docstring)."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        if cfg.vocab_size is not None:  # one table per codebook, stacked
            self.embed_in: nn.Module = nn.Embedding(cfg.vocab_size * cfg.codebooks, d)
        else:
            self.embed_in = nn.Linear(cfg.in_dim, d)
        self.pos = nn.Parameter(torch.randn(cfg.seq_len, d) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d)) if cfg.time else None
        self.conditioner = Conditioner(list(cfg.conditions), d)
        self.pooled = tuple(s.name for s in cfg.conditions if s.kind != "sequence")
        self.sequence = tuple(s.name for s in cfg.conditions if s.kind == "sequence")
        self.blocks = nn.ModuleList(_Block(cfg, i, cross=bool(self.sequence)) for i in range(cfg.depth))
        self.norm_out = nn.LayerNorm(d, elementwise_affine=False)
        self.ada_out = nn.Linear(d, 2 * d)
        self.head = nn.Linear(d, cfg.out_dim * cfg.codebooks)
        nn.init.zeros_(self.ada_out.weight)
        nn.init.zeros_(self.ada_out.bias)

    def new_cache(self) -> KVCache:
        """An empty KV cache (causal backbones only)."""
        if not self.cfg.causal:
            raise ValueError("a KV cache needs a causal backbone (BackboneConfig(causal=True))")
        return KVCache(self.cfg.depth)

    def _layer_perturbations(self, perturbations: Perturbations | None
                             ) -> list[list[tuple[Perturbation, torch.Tensor]]]:
        per_layer: list[list] = [[] for _ in range(self.cfg.depth)]
        if perturbations is None:
            return per_layer
        for p, rows in perturbations:
            if not isinstance(p, (AttnIdentity, AttnBlur, SkipLayers)):
                raise ValueError(f"the backbone does not implement perturbation {p!r}")
            layers = p.layers if p.layers is not None else self.cfg.perturb_layers
            for i in layers:
                if not 0 <= i < self.cfg.depth:
                    raise ValueError(f"{p!r} names block {i}, but the backbone has blocks "
                                     f"0..{self.cfg.depth - 1}")
                per_layer[i].append((p, rows))
        return per_layer

    def forward(self, x: torch.Tensor, t: torch.Tensor | None, conditions: Conditions,
                perturbations: Perturbations | None = None, cache: KVCache | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Predict per token.

        Args:
            x: ``[B, L, in_dim]`` continuous tokens, ``[B, L]`` token ids, or ``[B, L, K]`` ids
                of ``K`` codebooks.
            t: ``[B]`` time input (ignored when ``cfg.time`` is False; may be ``None`` then).
            conditions: a :class:`Conditions` batch of ``B`` with the model's condition specs.
            perturbations: per-row perturbations from the guidance engine.
            cache: a :class:`KVCache` for incremental causal decoding; ``x`` then holds only
                the new tokens, positioned after the cached ones.
            attention_mask: causal backbones: ``[B, S]`` over the cached and the new tokens
                (``S = cache length + L``), 1 for real tokens and 0 for (left) padding. Padding
                is hidden from attention and positions count real tokens only, so a left-padded
                row computes what the unpadded row would.

        Returns:
            ``[B, L, out_dim]`` (``[B, L, K, out_dim]`` with ``K`` codebooks).
        """
        B, L = x.shape[0], x.shape[1]
        start = cache.length if cache is not None else 0
        keys = None
        if attention_mask is not None:
            if not self.cfg.causal:
                raise ValueError("attention_mask (left padding) needs a causal backbone")
            if tuple(attention_mask.shape) != (B, start + L):
                raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}; expected "
                                 f"{(B, start + L)} (cached {start} + new {L} tokens)")
            keys = attention_mask.bool()
            positions = (keys.long().cumsum(1) - 1).clamp(min=0)[:, start:]  # [B, L]: real tokens only
        else:
            positions = torch.arange(start, start + L, device=x.device)
        if int(positions.max()) + 1 > self.cfg.seq_len:
            raise ValueError(f"sequence of {int(positions.max()) + 1} tokens exceeds the backbone's "
                             f"seq_len={self.cfg.seq_len}")
        h = self._embed(x) + self.pos[positions]
        c = torch.zeros(B, self.cfg.dim, device=h.device, dtype=h.dtype)
        if self.time_mlp is not None:
            if t is None:
                raise ValueError("this backbone embeds time; pass t of shape [B]")
            c = c + self.time_mlp(timestep_embedding(
                t.reshape(-1).expand(B) * self.cfg.time_scale, self.cfg.dim).to(h.dtype))
        emb = self.conditioner(conditions)
        for name in self.pooled:
            c = c + emb[name]
        seq = torch.cat([emb[n] for n in self.sequence], dim=1) if self.sequence else None
        allowed = None if self.cfg.clean_context is None else self._clean_context(x)
        for block, perturb in zip(self.blocks, self._layer_perturbations(perturbations), strict=True):
            h = block(h, c, seq, perturb, cache, keys, allowed)
        shift, scale = self.ada_out(F.silu(c))[:, None].chunk(2, dim=-1)
        out = self.head(self.norm_out(h) * (1 + scale) + shift)
        if self.cfg.codebooks > 1:
            out = out.view(B, L, self.cfg.codebooks, self.cfg.out_dim)
        return out

    def _clean_context(self, x: torch.Tensor) -> torch.Tensor:
        """Token ids ``[B, L]`` → which keys each query sees, ``[B, 1, L, L]`` (``clean_context``)."""
        L = x.shape[1]
        masked = x == self.cfg.clean_context
        masked[:, :self.cfg.prefix] = False
        left = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
        own = torch.eye(L, dtype=torch.bool, device=x.device)
        clean_key = ~masked[:, None, :]  # [B, 1, S]
        # a clean query: clean keys to its left (and itself); a masked query: every clean key and itself
        allowed = clean_key & (left[None] | masked[:, :, None])
        return (allowed | own[None])[:, None]

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        K = self.cfg.codebooks
        if K == 1:
            return self.embed_in(x)
        if x.ndim != 3 or x.shape[-1] != K:
            raise ValueError(f"a {K}-codebook backbone takes tokens [B, L, {K}], got {tuple(x.shape)}")
        offsets = torch.arange(K, device=x.device) * self.cfg.vocab_size
        return self.embed_in(x + offsets).sum(dim=2)

"""An analytic toy: 2-D Gaussian mixtures indexed by two categorical conditions.

Component ``(i, j)`` (``shape = i``, ``color = j``) is ``N(μ_ij, s²·I)``. Under the forward
process ``x_t = α·x0 + σ·ε`` (VP diffusion, or flow matching with ``α = 1 − t``, ``σ = t``)
every conditional marginal ``p_t(x | S)`` for a subset ``S`` of known conditions is a
mixture of ``N(α·μ_k, (α²s² + σ²)·I)`` over the components consistent with ``S``, so:

* :meth:`GaussianMixtureToy.eps` is the exact ε-prediction ``E[ε | x_t, S]`` — a model
  with no training error, in closed form through component responsibilities;
* :meth:`GaussianMixtureToy.log_prob` is the exact ``log p_t(x | S)``, whose autograd
  gradient is an independent route to the score (``ε = −σ·∇ log p_t``).

Guidance on this model is therefore checkable against ``p(x|c)^w p(x)^{1−w}`` exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from framework.core.conditions import Conditions, ConditionSpec

__all__ = ["CategoricalMixtureToy", "GaussianMixtureToy", "PrefixCache", "ToyLM"]

AlphaSigma = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def flow_alpha_sigma(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rectified flow's ``(α, σ) = (1 − t, t)``."""
    t = t.double()
    return 1 - t, t


class GaussianMixtureToy:
    """A grid of 2-D Gaussians: x position by ``shape``, y position by ``color``.

    Args:
        shapes, colors: label names of the two conditions.
        spacing: distance between neighbouring component means.
        std: per-component standard deviation ``s`` (overlap grows with ``std/spacing``).
        alpha_sigma: maps the model's time input ``t`` (``[B]``) to ``(α_t, σ_t)``.
    """

    def __init__(self, alpha_sigma: AlphaSigma, shapes: tuple[str, ...] = ("circle", "square",
                 "triangle", "star"), colors: tuple[str, ...] = ("red", "green", "blue"),
                 spacing: float = 1.0, std: float = 0.35) -> None:
        self.shapes, self.colors = tuple(shapes), tuple(colors)
        self.alpha_sigma, self.std = alpha_sigma, float(std)
        gx = (torch.arange(len(shapes), dtype=torch.float64) - (len(shapes) - 1) / 2) * spacing
        gy = (torch.arange(len(colors), dtype=torch.float64) - (len(colors) - 1) / 2) * spacing
        self.means = torch.stack(torch.meshgrid(gx, gy, indexing="ij"), dim=-1)  # [S, C, 2]

    @property
    def specs(self) -> dict[str, ConditionSpec]:
        return {"shape": ConditionSpec("shape", labels=self.shapes),
                "color": ConditionSpec("color", labels=self.colors)}

    def _mask(self, conditions: Conditions) -> torch.Tensor:
        """``[B, S, C]`` bool: components consistent with each sample's present conditions."""
        B = conditions.batch_size
        S, C = len(self.shapes), len(self.colors)
        m = torch.ones(B, S, C, dtype=torch.bool)
        if "shape" in conditions.values:
            on = conditions.present["shape"]
            hit = torch.nn.functional.one_hot(conditions.values["shape"].long(), S).bool()
            m &= torch.where(on[:, None], hit, True)[:, :, None]
        if "color" in conditions.values:
            on = conditions.present["color"]
            hit = torch.nn.functional.one_hot(conditions.values["color"].long(), C).bool()
            m &= torch.where(on[:, None], hit, True)[:, None, :]
        return m.reshape(B, -1)

    def _component_logp(self, x: torch.Tensor, t: torch.Tensor):
        a, s = (v.double().reshape(-1, 1) for v in self.alpha_sigma(t))
        var = a * a * self.std ** 2 + s * s  # [B, 1]
        mu = self.means.reshape(-1, 2)  # [K, 2]
        diff = x.double()[:, None, :] - a[:, :, None] * mu[None]  # [B, K, 2]
        logp = -0.5 * (diff ** 2).sum(-1) / var - math.log(2 * math.pi) - torch.log(var)
        return logp, diff, var, s

    def log_prob(self, x: torch.Tensor, t: torch.Tensor, conditions: Conditions) -> torch.Tensor:
        """Exact ``log p_t(x | present conditions)``, ``[B]`` (differentiable in ``x``)."""
        logp, *_ = self._component_logp(x, t)
        mask = self._mask(conditions)
        logp = logp.masked_fill(~mask, -math.inf)
        return torch.logsumexp(logp, dim=1) - torch.log(mask.sum(1).double())

    def eps(self, x: torch.Tensor, t: torch.Tensor, conditions: Conditions) -> torch.Tensor:
        """Exact ``E[ε | x_t, S]`` ``[B, 2]`` through responsibilities (the model callable)."""
        logp, diff, var, s = self._component_logp(x, t)
        r = torch.softmax(logp.masked_fill(~self._mask(conditions), -math.inf), dim=1)
        eps = s * (r[:, :, None] * diff).sum(1) / var
        return eps.to(x.dtype)

    __call__ = eps

    def x0(self, x: torch.Tensor, t: torch.Tensor, conditions: Conditions) -> torch.Tensor:
        """Exact ``E[x0 | x_t, S]`` ``[B, 2]``; defined at every ``t`` (also pure noise, α = 0)."""
        logp, diff, var, _ = self._component_logp(x, t)
        a = self.alpha_sigma(t)[0].double().reshape(-1, 1, 1)
        r = torch.softmax(logp.masked_fill(~self._mask(conditions), -math.inf), dim=1)
        post = self.means.reshape(1, -1, 2) + a * self.std ** 2 * diff / var[:, :, None]
        return (r[:, :, None] * post).sum(1).to(x.dtype)

    def classify(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest component mean of clean samples ``x`` ``[B, 2]`` → ``(shape [B], color [B])``."""
        d = torch.cdist(x.double(), self.means.reshape(-1, 2))
        k = d.argmin(dim=1)
        return k // len(self.colors), k % len(self.colors)


class CategoricalMixtureToy:
    """Token sequences drawn i.i.d. from a categorical chosen by two conditions.

    Component ``(i, j)`` emits its shape token ``i`` with probability ``purity``, its colour
    token ``S + j`` with probability ``purity`` and any other token uniformly. Given the visible
    tokens of a sequence and a subset of known conditions, the exact predictive distribution of
    any other position is ``Σ_k p(k | visible, S)·p(· | k)`` — closed form. The same predictive
    is the exact masked-diffusion ``x0`` model and the exact next-token model.

    Token ids ``0..vocab-1``; ``mask_id = vocab`` marks masked positions (masked family) and
    ``-1`` may pad unused positions.
    """

    def __init__(self, shapes: tuple[str, ...] = ("circle", "square", "triangle", "star"),
                 colors: tuple[str, ...] = ("red", "green", "blue"), noise_tokens: int = 5,
                 purity: float = 0.25) -> None:
        self.shapes, self.colors = tuple(shapes), tuple(colors)
        S, C = len(shapes), len(colors)
        self.vocab = S + C + noise_tokens
        self.mask_id = self.vocab
        rest = (1.0 - 2 * purity) / (self.vocab - 2)
        if rest <= 0:
            raise ValueError(f"purity {purity} leaves no mass for the other tokens")
        probs = torch.full((S, C, self.vocab), rest, dtype=torch.float64)
        for i in range(S):
            for j in range(C):
                probs[i, j, i] = purity
                probs[i, j, S + j] = purity
        self.probs = probs.reshape(S * C, self.vocab)  # [K, V]

    @property
    def specs(self) -> dict[str, ConditionSpec]:
        return {"shape": ConditionSpec("shape", labels=self.shapes),
                "color": ConditionSpec("color", labels=self.colors)}

    _mask = GaussianMixtureToy._mask

    def _posterior(self, counts: torch.Tensor, conditions: Conditions) -> torch.Tensor:
        """``[B, K]`` posterior over components given token counts ``[B, V]``."""
        loglik = counts.double() @ self.probs.log().T
        return torch.softmax(loglik.masked_fill(~self._mask(conditions), -math.inf), dim=1)

    def _counts(self, tokens: torch.Tensor) -> torch.Tensor:
        visible = (tokens >= 0) & (tokens < self.vocab)
        onehot = torch.nn.functional.one_hot(tokens.clamp(0, self.vocab - 1), self.vocab)
        return (onehot * visible[..., None]).sum(1)

    def masked_logits(self, tokens: torch.Tensor, t: torch.Tensor | None, conditions: Conditions
                      ) -> torch.Tensor:
        """Exact ``log p(x0_i = v | visible tokens, S)`` for every position: ``[B, L, V]``."""
        post = self._posterior(self._counts(tokens), conditions)
        logp = (post @ self.probs).log().float()
        return logp[:, None, :].expand(tokens.shape[0], tokens.shape[1], self.vocab)

    __call__ = masked_logits

    def next_logits(self, tokens: torch.Tensor, conditions: Conditions) -> torch.Tensor:
        """Exact next-token ``log p(x_{n+1} | x_≤n, S)`` at every position: ``[B, L, V]``."""
        visible = ((tokens >= 0) & (tokens < self.vocab))[..., None]
        onehot = torch.nn.functional.one_hot(tokens.clamp(0, self.vocab - 1), self.vocab) * visible
        cum = onehot.double().cumsum(dim=1)  # counts of the prefix up to and including each position
        loglik = cum @ self.probs.log().T  # [B, L, K]
        mask = self._mask(conditions)[:, None, :]
        post = torch.softmax(loglik.masked_fill(~mask, -math.inf), dim=-1)
        return (post @ self.probs).log().float()

    def sample_data(self, conditions: Conditions, length: int, generator: torch.Generator | None = None
                    ) -> torch.Tensor:
        """Draw sequences ``[B, length]`` from the components the conditions name."""
        comp = conditions.values["shape"].long() * len(self.colors) + conditions.values["color"].long()
        return torch.multinomial(self.probs[comp].float(), length, replacement=True, generator=generator)

    def classify(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Most frequent shape token and colour token of each sequence → ``(shape [B], color [B])``."""
        counts = self._counts(tokens)
        S = len(self.shapes)
        return counts[:, :S].argmax(1), counts[:, S:S + len(self.colors)].argmax(1)


class PrefixCache:
    """The toy LM's "KV cache": the tokens seen so far, ``[N, n]`` (same protocol as ``KVCache``)."""

    def __init__(self, tokens: torch.Tensor | None = None) -> None:
        self.tokens = tokens

    @property
    def length(self) -> int:
        return 0 if self.tokens is None else self.tokens.shape[1]

    def select(self, rows: torch.Tensor) -> PrefixCache:
        return PrefixCache(None if self.tokens is None else self.tokens[rows])

    @staticmethod
    def cat(caches: list[PrefixCache]) -> PrefixCache:
        parts = [c.tokens for c in caches]
        if all(p is None for p in parts):
            return PrefixCache()
        if any(p is None for p in parts):
            raise ValueError("cannot concatenate empty and filled caches")
        return PrefixCache(torch.cat(parts))


class ToyLM:
    """:class:`CategoricalMixtureToy` as an exact next-token LM with the backbone's call contract.

    ``fed`` records how many tokens each call received (to check that caching feeds one token
    per step).
    """

    def __init__(self, toy: CategoricalMixtureToy) -> None:
        self.toy = toy
        self.fed: list[tuple[int, int]] = []

    def new_cache(self) -> PrefixCache:
        return PrefixCache()

    def __call__(self, tokens: torch.Tensor, t: torch.Tensor | None, conditions: Conditions,
                 cache: PrefixCache | None = None, attention_mask: torch.Tensor | None = None
                 ) -> torch.Tensor:
        self.fed.append(tuple(tokens.shape))
        if attention_mask is not None:  # left padding: invisible to the exact model
            tokens = tokens.masked_fill(~attention_mask[:, -tokens.shape[1]:].bool(), -1)
        full = tokens if cache is None or cache.tokens is None else torch.cat([cache.tokens, tokens], 1)
        if cache is not None:
            cache.tokens = full
        return self.toy.next_logits(full, conditions)[:, -tokens.shape[1]:]

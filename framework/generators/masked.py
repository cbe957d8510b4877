"""Masked (absorbing-state) discrete diffusion on token ids — MDLM / MaskGIT style.

Forward process: each token is replaced by ``[MASK]`` independently with probability
``t ∈ (0, 1]``. The network sees the partly masked sequence and predicts ``logits`` for the
clean token at every position (``[B, L, V]``; the mask id is ``V``, an extra input token).

Training minimises the MDLM bound for the linear schedule,
``E_t[(1/t)·Σ_{masked i} −log p(x0_i | x_t)] / L`` — an upper bound on the per-token
negative log-likelihood, so ``exp`` of it bounds perplexity (:meth:`Masked.nll_bound`).

Sampling starts fully masked and commits tokens over ``steps`` steps (cosine schedule of
how many stay masked, or ``schedule="linear"``: the same number every step). At each step guidance
combines per-branch log-probabilities, the family renormalises them with ``log_softmax``, draws a
token for every masked position (temperature, optional top-k), and commits the most confident draws
(``order="confidence"``, MaskGIT), a random subset (``order="random"``, MDLM-style ancestral order)
or the leftmost masked positions (``order="left_to_right"``, semi-autoregressive). Without
``remask`` committed tokens never change; with ``remask = η > 0`` (ReMDM-style remasking) every
step but the last also puts back the ``⌈η·n⌉`` least confident of the ``n`` tokens it sampled so
far (their confidence: the log-probability they were drawn with), to be drawn again in context.
With ``shift`` the network's output at position ``i`` predicts token ``i + 1`` (the last position's
predicts token 0), as an autoregressive network's does: a masked model adapted from one keeps its
next-token head (DiffuLLaMA, Dream) instead of relearning a same-position one. With ``bos`` as well,
the network sees one more position in front (``[mask_id] + x``, the id an autoregressive source
uses as its BOS) and token 0 is predicted from it, as in the autoregressive model, instead of from
the last position. ``attention="clean_causal"`` keeps masked positions from passing anything to other
positions and lets unmasked ones attend causally to each other (masked ones read every unmasked
token): with ``shift`` and ``bos``, decoding left to right one token per step then asks the network
exactly what the autoregressive network it was adapted from is asked.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from framework.core.conditions import Conditions
from framework.generators.base import Family, StepCallback, progress_tau
from framework.guidance import GuidanceState, Guider
from framework.guidance.spaces import DiscreteSpaces

__all__ = ["ORDERS", "Masked"]

#: unmasking orders: MaskGIT's most confident draws first, a random subset, the leftmost first
ORDERS = ("confidence", "random", "left_to_right")


class Masked(Family):
    """Absorbing-state discrete diffusion.

    Args:
        vocab_size: number of data tokens ``V``; the mask token id is ``V``.
        order: ``confidence`` (MaskGIT), ``random`` (MDLM's ancestral order) or ``left_to_right``
            (the leftmost masked positions first: semi-autoregressive decoding, as LLaDA's blocks
            of one token; each token still sees the whole sequence, masked to its right).
        temperature: sampling temperature applied after guidance and renormalisation.
        choice_temperature: with ``order="confidence"``, Gumbel noise of this scale, annealed to 0
            over the steps, is added to the confidences that choose which draws to commit (MaskGIT's
            "choice temperature"); 0 (default) commits strictly the most confident draws, which
            makes samples of one request near-copies when a few tokens dominate.
        t_min: smallest training mask rate (keeps the 1/t weight finite).
        top_k: keep only the ``top_k`` most likely tokens when drawing (after guidance).
        remask: ReMDM remasking rate ``η`` (0: committed tokens are final).
        stratified: draw a batch's training mask rates stratified over ``(0, 1)`` (one uniform
            offset, ``B`` evenly spaced rates; MDLM's low-discrepancy sampler) instead of
            independently: the same bound, lower-variance gradients.
        reuse_unchanged: reuse the network's output exactly when no token changed since the
            previous step (with more steps than positions the cosine schedule commits none on
            many steps); such steps count in ``StepStats.cached``, not in NFE.
        shift: the output at position ``i`` predicts token ``i + 1`` and the last position's
            predicts token 0 (:meth:`align`), the autoregressive layout; for a model warm-started
            from an autoregressive one.
        schedule: ``cosine`` (MaskGIT) or ``linear`` (``L / steps`` tokens every step: with
            ``steps = L`` and left-to-right order exactly one token per step, each seeing all
            tokens to its left; the cosine schedule commits 0 on some steps and 2 on others).
        suffix: the share of training rows masked as a suffix instead of at random (the last
            ``⌈t·L⌉`` positions at mask rate ``t``): the pattern left-to-right decoding meets.
        bos: with ``shift``, a BOS position in front: the network input is ``[mask_id] + x``
            (``L + 1`` positions; position 0 always holds ``mask_id``, which is an autoregressive
            source's BOS id) and its output at position ``i`` predicts token ``i`` (the last
            output is dropped), so token 0 is predicted from the BOS position as in the
            autoregressive model. The backbone then has ``L + 1`` positions.
        attention: ``full`` (bidirectional over every position) or ``clean_causal``: masked
            positions pass nothing to others, unmasked positions attend causally to unmasked ones,
            masked positions to every unmasked one (:class:`~framework.nn.BackboneConfig`'s
            ``clean_context``). With ``shift``, decoding left to right one token per step then asks
            the network exactly what an autoregressive one is asked; other orders still read the
            unmasked tokens on both sides of a masked position.
    """

    name = "masked"
    native_space = "logits"
    output_space = "logprobs"

    def __init__(self, vocab_size: int,
                 order: Literal["confidence", "random", "left_to_right"] = "confidence",
                 temperature: float = 1.0, t_min: float = 1e-3, reuse_unchanged: bool = True,
                 top_k: int | None = None, remask: float = 0.0, stratified: bool = False,
                 choice_temperature: float = 0.0, shift: bool = False,
                 suffix: float = 0.0, schedule: Literal["cosine", "linear"] = "cosine",
                 bos: bool = False, attention: Literal["full", "clean_causal"] = "full") -> None:
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be ≥ 2, got {vocab_size}")
        if order not in ORDERS:
            raise ValueError(f"unmasking order must be one of {', '.join(map(repr, ORDERS))}, got {order!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if choice_temperature < 0:
            raise ValueError(f"choice_temperature must be ≥ 0, got {choice_temperature}")
        if schedule not in ("cosine", "linear"):
            raise ValueError(f"schedule must be 'cosine' or 'linear', got {schedule!r}")
        self.schedule = schedule
        if not 0 <= suffix <= 1:
            raise ValueError(f"suffix must be in [0, 1], got {suffix}")
        self.choice_temperature = float(choice_temperature)
        self.shift, self.suffix, self.bos = bool(shift), float(suffix), bool(bos)
        if attention not in ("full", "clean_causal"):
            raise ValueError(f"attention must be 'full' or 'clean_causal', got {attention!r}")
        self.attention = attention
        if self.bos and not self.shift:
            raise ValueError("bos (a BOS position in front) needs shift: true (the output at position i "
                             "then predicts token i from the tokens before it)")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be ≥ 1, got {top_k}")
        if not 0 <= remask < 1:
            raise ValueError(f"remask must be in [0, 1), got {remask}")
        self.top_k, self.remask, self.stratified = top_k, float(remask), bool(stratified)
        self.vocab_size, self.mask_id = int(vocab_size), int(vocab_size)
        self.order, self.temperature, self.t_min = order, float(temperature), float(t_min)
        self.reuse_unchanged = bool(reuse_unchanged)
        self.converter = DiscreteSpaces()

    def guider(self, guidance, models, **kwargs) -> Guider:
        """A :class:`Guider` that, with ``reuse_unchanged``, reuses a network's output when a step
        committed no token (same tokens, same mask rate): bit-identical, and free."""
        guider = super().guider(guidance, models, **kwargs)
        guider.reuse_unchanged = self.reuse_unchanged
        return guider

    @property
    def extra_positions(self) -> int:
        """Positions the network has beyond the sequence's ``L``: 1 with ``bos``, else 0."""
        return int(self.bos)

    def network_input(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``[B, L]`` → the network's input: ``[B, L + 1]`` with ``mask_id`` in front with
        ``bos``, else ``x`` itself."""
        if not self.bos:
            return x
        return torch.cat([torch.full_like(x[:, :1], self.mask_id), x], dim=1)

    def align(self, out: torch.Tensor) -> torch.Tensor:
        """Network output ``[B, L(+1), V]`` → the prediction of token ``i`` at position ``i``
        ``[B, L, V]`` (with ``shift``, position ``i - 1``'s output; token 0 takes the last
        position's, or with ``bos`` the BOS position's)."""
        if self.bos:
            return out[:, :-1]
        return out.roll(1, dims=1) if self.shift else out

    # ------------------------------------------------------------------ training
    def corrupt(self, x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask each token of ``x0`` ``[B, L]`` with probability ``t`` ``[B]`` → ``(x_t, masked)``."""
        masked = torch.rand(x0.shape, generator=generator).to(x0.device) < t[:, None]
        return torch.where(masked, torch.full_like(x0, self.mask_id), x0), masked

    def _train_corrupt(self, x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`corrupt`, with a ``suffix`` share of the rows masked as a suffix (``[B, L]``)."""
        xt, masked = self.corrupt(x0, t, generator)
        if self.suffix > 0:
            L = x0.shape[1]
            rows = torch.rand(x0.shape[0], generator=generator).to(x0.device) < self.suffix
            first = L - torch.ceil(t * L).long()  # [B]: the first masked position
            tail = torch.arange(L, device=x0.device)[None] >= first[:, None]
            masked = torch.where(rows[:, None], tail, masked)
            xt = torch.where(masked, torch.full_like(x0, self.mask_id), x0)
        return xt, masked

    def _mask_rates(self, n: int, generator: torch.Generator | None, device) -> torch.Tensor:
        """Training mask rates ``[n]`` in ``[t_min, 1)``: independent, or stratified."""
        if self.stratified:
            u = (torch.rand(1, generator=generator) + torch.arange(n) / n) % 1.0
        else:
            u = torch.rand(n, generator=generator)
        return u.to(device).clamp_min(self.t_min)

    def loss(self, model, x0: torch.Tensor, conditions: Conditions,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """The MDLM bound in nats per token, averaged over the batch."""
        self._check_tokens(x0)
        t = self._mask_rates(x0.shape[0], generator, x0.device)
        xt, masked = self._train_corrupt(x0, t, generator)
        logits = self.align(model(self.network_input(xt), t, conditions))
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), x0.reshape(-1),
                              reduction="none").view_as(x0)
        return ((nll * masked).sum(1) / t / x0.shape[1]).mean()

    def training_inputs(self, x0, generator=None):
        """Partly masked sequences at mask rates ``t ~ U(t_min, 1)``, as the network sees them
        (``[B, L + 1]`` with ``bos``); the outputs that predict a masked token count (``[B, L]``,
        or ``[B, L + 1]`` with ``bos``, in the network's output layout: shifted with ``shift``)."""
        self._check_tokens(x0)
        t = self._mask_rates(x0.shape[0], generator, x0.device)
        xt, masked = self._train_corrupt(x0, t, generator)
        if self.bos:
            counts = torch.cat([masked, torch.zeros_like(masked[:, :1])], dim=1)
        else:
            counts = masked.roll(-1, dims=1) if self.shift else masked
        return self.network_input(xt), t, counts

    @torch.no_grad()
    def nll_bound(self, model, x0: torch.Tensor, conditions: Conditions, samples: int = 8,
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """Monte-Carlo estimate of the per-token NLL bound (nats) of each sequence, ``[B]``."""
        total = torch.zeros(x0.shape[0], device=x0.device)
        for _ in range(samples):
            t = torch.rand(x0.shape[0], generator=generator).to(x0.device).clamp_min(self.t_min)
            xt, masked = self.corrupt(x0, t, generator)
            logits = self.align(model(self.network_input(xt), t, conditions))
            nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), x0.reshape(-1),
                                  reduction="none").view_as(x0)
            total += (nll * masked).sum(1) / t / x0.shape[1]
        return total / samples

    def _check_tokens(self, x: torch.Tensor) -> None:
        if x.dtype not in (torch.long, torch.int32, torch.int64):
            raise TypeError(f"masked diffusion works on token ids; got dtype {x.dtype}")
        if bool(((x < 0) | (x >= self.vocab_size)).any()):
            raise ValueError(f"token ids must be in 0..{self.vocab_size - 1}; "
                             f"found {int(x.min())}..{int(x.max())}")

    # ------------------------------------------------------------------ sampling
    def init_state(self, n, shape, generator, device, init=None):
        """All ``[MASK]``, or ``init`` (``[n, L]`` with ``mask_id`` where tokens are to be infilled)."""
        if len(shape) != 1:
            raise ValueError(f"masked diffusion samples token sequences of shape (L,), got {shape}")
        if init is not None:
            return super().init_state(n, shape, generator, device, init.long())
        return torch.full((n, *shape), self.mask_id, dtype=torch.long, device=device)

    def still_masked(self, i: int, steps: int, length: int) -> int:
        """How many positions remain masked after step ``i`` (0 after the last)."""
        if self.schedule == "linear":
            return length * (steps - i - 1) // steps
        return math.floor(length * math.cos(math.pi / 2 * (i + 1) / steps))

    def run(self, guider: Guider, state: GuidanceState, x: torch.Tensor, conditions: Conditions,
            steps: int, generator, bar, callback: StepCallback | None) -> torch.Tensor:
        B, L = x.shape
        sampled = torch.zeros_like(x, dtype=torch.bool)  # tokens this run drew (remasking candidates)
        conf = torch.zeros(B, L, device=x.device)  # the log-probability each was drawn with
        for i in range(steps):
            masked = x == self.mask_id
            t = masked.float().mean(1)  # the current mask rate is the model's time input
            out = guider.step(self.network_input(x), t, progress_tau(i, steps), conditions, state)
            logp = torch.log_softmax(self.align(out.denoise.float()) / self.temperature, dim=-1)
            if self.top_k is not None and self.top_k < self.vocab_size:
                kth = logp.topk(self.top_k, dim=-1).values[..., -1:]
                logp = torch.log_softmax(logp.masked_fill(logp < kth, -math.inf), dim=-1)
            draw = torch.multinomial(logp.exp().reshape(-1, self.vocab_size), 1,
                                     generator=generator).view(B, L).to(x.device)
            if self.order == "confidence":
                score = logp.gather(-1, draw[..., None]).squeeze(-1)
                if self.choice_temperature > 0:
                    u = torch.rand((B, L), generator=generator).to(x.device).clamp(1e-10, 1 - 1e-10)
                    anneal = self.choice_temperature * (1 - (i + 1) / steps)
                    score = score - anneal * torch.log(-torch.log(u))  # + Gumbel noise
            elif self.order == "left_to_right":
                score = -torch.arange(L, device=x.device, dtype=torch.float).expand(B, L)
            else:
                score = torch.rand((B, L), generator=generator).to(x.device)
            score = score.masked_fill(~masked, -math.inf)
            n_commit = masked.sum(1) - self.still_masked(i, steps, L)
            rank = score.argsort(dim=1, descending=True).argsort(dim=1)
            commit = masked & (rank < n_commit[:, None])
            x = torch.where(commit, draw, x)
            if self.remask > 0:
                conf = torch.where(commit, logp.gather(-1, draw[..., None]).squeeze(-1), conf)
                sampled = (sampled | commit) & (x != self.mask_id)
                if i < steps - 1:
                    x = self._remask(x, sampled, conf)
            bar.update(1)
            if callback is not None:
                callback(i, x, out)
        return x

    def _remask(self, x: torch.Tensor, sampled: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
        """Put back the ``⌈η·n⌉`` least confident of each row's ``n`` sampled tokens (``[B, L]``)."""
        k = torch.ceil(self.remask * sampled.sum(1)).long()  # [B]
        score = conf.masked_fill(~sampled, math.inf)
        rank = score.argsort(dim=1).argsort(dim=1)
        return x.masked_fill(sampled & (rank < k[:, None]), self.mask_id)

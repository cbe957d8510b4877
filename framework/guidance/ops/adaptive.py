"""Adaptive Guidance — *Adaptive Guidance: Training-free Acceleration of Conditional Diffusion
Models* (Castillo et al., 2023).

Guide with ``inner`` until the cosine similarity ``γ_t = cos(ε̃, ε_ref)`` between the guided
prediction and the unguided (reference) one exceeds ``γ̄``; from then on evaluate only the
reference branch (``ε̃ = ε_ref``). The switch is one-way.

``per_sample=True`` (default) switches **each row** on its own: a row whose cosine exceeds
``γ̄`` leaves ``inner``'s extra branches from the next step on, and those branches are
evaluated on the remaining rows only (the planner compacts the batch for them; the
autoregressive family slices the row out of their KV caches). ``per_sample=False`` is the
per-batch policy: switch once every row agrees. When every row crosses ``γ̄`` at the same
step the two are identical.

At high noise every ε-prediction is close to ``x/σ``, so the cosine is near 1 before guidance
has acted; ``after`` (a progress τ) keeps the policy from switching before that point.

``patience=k`` (hysteresis; the paper's rule is ``patience=1``, the default): a row (per
batch: the batch) leaves only once ``γ_t > γ̄`` has held at ``k`` consecutive steps; a step
below ``γ̄`` resets its count, so one noisy crossing no longer ends a row's guidance.

``measure="probs"`` (token models, **our choice of space, not the paper's**, which works on
continuous ε): the cosine of the next-token *probabilities* ``softmax(ℓ̃)`` and
``softmax(ℓ_ref)`` (per position, then over the row) instead of the logits'. A logit vector's
cosine is dominated by the many unlikely tokens and stays in 0.9988–0.9997 whatever guidance
does; the probabilities' cosine is 1 where guidance changes no likely token and drops where it
does.
"""

from __future__ import annotations

from typing import Any

import torch

from framework.guidance.branches import Branch
from framework.guidance.expr import Expr
from framework.guidance.ops.base import Op
from framework.guidance.spaces import SpaceError


def row_cosine(guided: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``[B]`` cosine of each row of ``guided`` and ``ref`` (``[B, ...]``) over the entries both
    keep finite (logits: ``-inf`` marks excluded tokens)."""
    b = guided.shape[0]
    g, r = guided.reshape(b, -1).float(), ref.reshape(b, -1).float()
    both = torch.isfinite(g) & torch.isfinite(r)
    return torch.nn.functional.cosine_similarity(g.where(both, 0.0), r.where(both, 0.0), dim=1)


MEASURES = ("value", "probs")


def _measured(value: torch.Tensor, measure: str) -> torch.Tensor:
    """``value`` (``[B, ..., V]``) as the cosine sees it: itself, or softmax over the last dim."""
    if measure == "probs":  # -inf logits: probability 0
        return torch.softmax(value.float(), dim=-1)
    return value


def _check_per_sample_inner(inner: Expr) -> None:
    """Nodes that keep per-row state or gradients cannot run on a shrinking subset of rows."""
    from framework.guidance.ops.apg import Project
    from framework.guidance.ops.cost_grad import CostGrad

    for node in inner.walk():
        bad = None
        if isinstance(node, Project) and node.momentum != 0.0:
            bad = "APG momentum (a per-row running average)"
        elif isinstance(node, CostGrad):
            bad = "a cost-gradient term"
        if bad is not None:
            raise ValueError(f"per-sample adaptive guidance evaluates its inner guidance on a shrinking "
                             f"subset of rows, which {bad} cannot follow ({node!r}); use "
                             f"adaptive(..., per_sample=False)")


class Adaptive(Op):
    """Stop evaluating ``inner``'s extra branches once guidance no longer changes the prediction
    (per row with ``per_sample=True``, for the whole batch otherwise)."""

    def __init__(self, inner: Expr, threshold: float = 0.99, fallback: Expr | None = None,
                 space: str | None = None, after: float = 0.0, per_sample: bool = True,
                 patience: int = 1, measure: str = "value") -> None:
        inner.check()
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"adaptive threshold is a cosine in [-1, 1], got {threshold}")
        if not 0.0 <= after <= 1.0:
            raise ValueError(f"adaptive 'after' is a progress τ in [0, 1], got {after}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"adaptive 'patience' is a number of consecutive converged steps ≥ 1, "
                             f"got {patience!r}")
        self.inner, self.threshold, self.after = inner, float(threshold), float(after)
        if measure not in MEASURES:
            raise ValueError(f"adaptive 'measure' is one of {MEASURES}, got {measure!r}")
        self.per_sample, self.patience, self.measure = bool(per_sample), patience, measure
        if self.per_sample:
            _check_per_sample_inner(inner)
        self.fallback = fallback if fallback is not None else inner.reference()
        self.fallback.check()
        self.space = space

    def children(self) -> tuple[Expr, ...]:
        return (self.inner, self.fallback)

    def needed(self, tau: float, state: Any) -> frozenset[Branch]:
        own = state.of(self)
        fallback = self.fallback.needed(tau, state)
        if own.get("switched", False):
            return fallback
        active = own.get("active")
        if active is None or bool(active.all()):
            return self.inner.needed(tau, state) | fallback
        # Some rows have left: the branches only ``inner`` needs run on the remaining rows
        # (a per-sample node nested inside sees only those rows too).
        outer = state.row_scope
        state.row_scope = active if outer is None else outer & active
        try:
            inner = self.inner.needed(tau, state)
            for b in inner - fallback:
                state.need_rows(b, active)
        finally:
            state.row_scope = outer
        return fallback

    def compute(self, ctx: Any, space: str) -> torch.Tensor:
        """``[B, ...]``: guided rows, the reference on rows that left; updates the per-row
        convergence counts and the switch."""
        if self.measure == "probs" and space not in ("logits", "logprobs"):
            raise SpaceError(f"adaptive(..., measure='probs') compares next-token probabilities, so it "
                             f"needs a token model's logits; it is asked for {space!r}")
        own = ctx.state.of(self)
        ref = self.fallback.value(ctx, space)
        B = ref.shape[0]
        full = getattr(ctx, "batch_size", B)  # inside another per-sample node: part of the batch
        seen = getattr(ctx, "batch_rows", None)
        if own.get("switched", False):
            return ref
        active = own.get("active")
        if active is not None and active.shape[0] != full:
            raise ValueError(f"adaptive guidance started with a batch of {active.shape[0]} rows but "
                             f"now sees {full}; use a fresh guidance state per sampling run")
        here = None if active is None else (active if seen is None else active[seen])
        if here is None or bool(here.all()):
            rows = torch.arange(B, device=ref.device)
            out = guided = self.inner.value(ctx, space)
            ref_rows = ref
        else:  # evaluate the guidance on the rows still guided only
            rows = here.nonzero().squeeze(1)
            guided = self.inner.value(ctx.restrict(rows), space)
            ref_rows = ref[rows]
            out = ref.clone()
            out[rows] = guided.to(out.dtype)
        cos = row_cosine(_measured(guided, self.measure), _measured(ref_rows, self.measure))
        ctx.record("adaptive_cosine", float(cos.min()))
        ctx.record("adaptive_rows", float(rows.numel()))
        if ctx.tau < self.after or ctx.state.corrector:
            return out
        full_rows = rows if seen is None else seen[rows]  # these rows' ids in the whole batch
        converged = self._streak(own, cos > self.threshold, full_rows, full)
        if self.per_sample:
            if bool(converged.any()):
                left = (torch.ones(full, dtype=torch.bool, device=ref.device) if active is None
                        else active.clone())
                gone = full_rows[converged]
                left[gone] = False  # takes effect from the next step on
                own["active"] = left
                at = own.setdefault("left_at_step", torch.full((full,), -1, dtype=torch.long))
                at[gone.cpu()] = ctx.state.step
                if not bool(left.any()):
                    own["switched"], own["switched_at_step"] = True, ctx.state.step
        elif bool(converged.all()):
            own["switched"], own["switched_at_step"] = True, ctx.state.step
        return out

    def _streak(self, own: dict, above: torch.Tensor, full_rows: torch.Tensor, full: int) -> torch.Tensor:
        """``[R]`` rows (per batch: every row) whose cosine has been above ``γ̄`` for ``patience``
        consecutive steps, given this step's ``above`` (``[R]``) for the rows ``full_rows``."""
        if self.patience == 1:
            return above
        if not self.per_sample:  # the batch's count: steps at which every row agreed
            own["streak_all"] = own.get("streak_all", 0) + 1 if bool(above.all()) else 0
            return above & (own["streak_all"] >= self.patience)
        streak = own.get("streak")
        if streak is None:
            streak = own["streak"] = torch.zeros(full, dtype=torch.long, device=above.device)
        streak[full_rows] = torch.where(above, streak[full_rows] + 1, 0)
        return streak[full_rows] >= self.patience

    def __repr__(self) -> str:
        extra = "" if self.per_sample else ", per_sample=False"
        extra += f", patience={self.patience}" if self.patience != 1 else ""
        extra += f", measure={self.measure!r}" if self.measure != "value" else ""
        return f"adaptive({self.inner!r}, threshold={self.threshold:g}, after={self.after:g}{extra})"

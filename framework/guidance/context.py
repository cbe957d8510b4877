"""What expression nodes see while one guided step is evaluated (:class:`StepContext`), and the
checks of branch outputs and the guided prediction for non-finite values."""

from __future__ import annotations

import math

import torch

from framework.guidance.branches import Branch
from framework.guidance.expr import Expr, Linear
from framework.guidance.ops.cost_grad import CostError, cost_gradient
from framework.guidance.ops.cost_grad import unknown_cost as _unknown_cost

__all__ = ["StepContext", "all_finite", "check_branch_output", "check_some_token_left"]


class StepContext:
    """What expression nodes see while evaluating one step."""

    def __init__(self, x, t, tau, state, converter, native, preds, conditions=None, costs=None,
                 graphs=None, evaluated=None):
        self.x, self.t, self.tau, self.state = x, t, tau, state
        self.converter, self.native, self.preds = converter, native, preds
        #: branch → bool [B] rows it was evaluated on, for branches run on part of the batch
        self.evaluated: dict[Branch, torch.Tensor] = evaluated or {}
        self._batch_rows: torch.Tensor | None = None  # all rows at the top level (made when read)
        self.batch_size = x.shape[0]
        self.conditions, self.costs = conditions, costs or {}
        self.graphs: dict[Branch, tuple[torch.Tensor, torch.Tensor]] = graphs or {}
        self._converted: dict[tuple[Branch, str], torch.Tensor] = {}
        self._coefs: dict[int, dict[Expr, float]] = {}
        self._grads: dict[tuple[str, Branch, bool], torch.Tensor] = {}
        self.records: dict[str, float] = {}
        #: a prediction already proven finite while evaluating (the engine skips checking it again)
        self.known_finite: torch.Tensor | None = None
        self.backward = 0
        self.cost_evals = 0

    @property
    def batch_rows(self) -> torch.Tensor:
        """The rows of the sampled batch this context sees: long ``[R]`` (all rows at the top level)."""
        if self._batch_rows is None:
            self._batch_rows = torch.arange(self.x.shape[0], device=self.x.device)
        return self._batch_rows

    def restrict(self, rows: torch.Tensor) -> StepContext:
        """The same step seen on the rows ``rows`` (long ``[R]``, indices into this context's rows)
        only: ``x``, ``t``, conditions and
        every branch prediction evaluated on all of those rows are sliced; a branch evaluated
        on other rows only is absent (reading it raises). Records go to this context."""
        preds = {b: p[rows] for b, p in self.preds.items()
                 if b not in self.evaluated or bool(self.evaluated[b][rows].all())}
        sub = StepContext(self.x[rows], self.t[rows], self.tau, self.state, self.converter,
                           self.native, preds,
                           self.conditions.index(rows) if self.conditions is not None else None,
                           self.costs)
        sub.records = self.records
        sub._batch_rows, sub.batch_size = self.batch_rows[rows], self.batch_size
        return sub

    def cost_gradient(self, name: str, branch: Branch, through_model: bool) -> torch.Tensor:
        """``∇ cost(x̂0)`` ``[B, *shape]`` for ``x̂0`` of ``branch``: w.r.t. ``x̂0`` (detached), or
        w.r.t. ``x_t`` through the network when ``through_model``. Once per key and step."""
        key = (name, branch, through_model)
        if key in self._grads:
            return self._grads[key]
        if name not in self.costs:
            raise _unknown_cost(name, self.costs)
        if through_model:
            if branch not in self.graphs:
                raise RuntimeError(f"branch {branch!r} ran without autograd, but cost {name!r} "
                                   f"back-propagates through it (the planner missed it)")
            out, xg = self.graphs[branch]
            with torch.enable_grad():
                x0 = self.converter.convert(out, self.native, "x0", x=xg, t=self.t)
            if not out.requires_grad:  # x0 may still depend on x_t through the conversion alone
                raise CostError(f"cost {name!r} with through_model=True: the network's output for "
                                f"{branch!r} carries no gradient (does the network disable autograd?)")
            grad = cost_gradient(self.costs[name], name, x0, xg, self.conditions, retain_graph=True)
            self.backward += 1
        else:
            x0 = self.pred(branch, "x0").detach().requires_grad_(True)
            grad = cost_gradient(self.costs[name], name, x0, x0, self.conditions, retain_graph=False)
        self.cost_evals += 1
        self.record(f"cost_grad_norm[{name}]", float(grad.reshape(grad.shape[0], -1).norm(dim=1).mean()))
        self._grads[key] = grad
        return grad

    def pred(self, branch: Branch, space: str) -> torch.Tensor:
        key = (branch, space)
        if key not in self._converted:
            if branch not in self.preds:
                raise RuntimeError(f"branch {branch!r} was not planned at τ={self.tau:g}; "
                                   f"an operation's needed() is inconsistent with its value()")
            self._converted[key] = self.convert(self.preds[branch], self.native, space)
        return self._converted[key]

    def convert(self, value: torch.Tensor, src: str, dst: str, mass: float = 1.0) -> torch.Tensor:
        return self.converter.convert(value, src, dst, x=self.x, t=self.t, mass=mass)

    def coefficients(self, node: Linear) -> dict[Expr, float]:
        if id(node) not in self._coefs:
            self._coefs[id(node)] = node.coefficients(self.tau)
        return self._coefs[id(node)]

    def record(self, key: str, value: float) -> None:
        self.records[key] = value


def all_finite(v: torch.Tensor) -> bool:
    """Whether every entry of ``v`` is finite. A sum is non-finite whenever an entry is (NaN and
    ±inf propagate), so a finite sum proves it with one reduction and no mask; only a non-finite
    (or overflowing) sum needs the element-wise test."""
    return math.isfinite(float(v.sum())) or bool(torch.isfinite(v).all())


def check_branch_output(branch: Branch, pred: torch.Tensor, excluding: bool, step: int, tau: float) -> None:
    """NaN and +inf are never legal; -inf only where it excludes tokens (``excluding``)."""
    if all_finite(pred):
        return
    for name, bad in (("NaN", torch.isnan(pred)), ("+inf", torch.isposinf(pred)),
                      ("-inf", None if excluding else torch.isneginf(pred))):
        if bad is not None and bool(bad.any()):
            where = tuple(int(i) for i in bad.nonzero()[0])
            raise FloatingPointError(
                f"guided prediction at step {step} (τ={tau:g}) is not finite; non-finite branch "
                f"outputs: {branch!r} returned {name} (first at index {where})"
                + ("" if name != "-inf" else "; -inf is legal only in logit/log-probability spaces, "
                   "where it marks an excluded token"))
    check_some_token_left(pred, f"branch {branch!r}", step, tau)


def check_some_token_left(pred: torch.Tensor, what: str, step: int, tau: float) -> None:
    """A distribution whose every token is -inf has nothing to sample."""
    empty = torch.isneginf(pred).all(dim=-1)
    if bool(empty.any()):
        where = tuple(int(i) for i in empty.nonzero()[0])
        raise FloatingPointError(f"{what} marks every token -inf at index {where} (step {step}, "
                                 f"τ={tau:g}): no token is left to choose")

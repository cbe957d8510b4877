"""The pass planner and evaluator.

Per step the :class:`Guider`: evaluates the weights at τ; drops zero-weight terms and the
branches only they needed; de-duplicates branches shared between terms; groups branches by
network; packs each group into **one batched forward** (chunked under ``max_batch`` rows);
converts outputs into the spaces the expression's operations declare; combines; and
returns a :class:`GuidedOutput` with exact per-step statistics.

Cost-gradient terms (``presets.cost``) read ``x̂0`` from one branch. Branches whose ``x̂0`` a
``through_model=True`` term back-propagates through run in their own batched forward under
autograd; every other branch runs without a graph. Statistics count the network's backward
passes and the cost evaluations separately from NFE (:class:`StepStats`).

Model contract (every network)::

    model(x: [N, ...], t: [N], conditions: Conditions[N]) -> [N, ...]
    model(..., perturbations=Perturbations)   # only when a branch is perturbed
    model(..., branches=(Branch, ...))         # only if ``model.branch_aware`` (per-branch KV caches)
    model(..., branches=..., rows=(LongTensor, ...))  # and ``model.row_aware``: batch rows per branch

where ``N`` = branches × batch, or the sum of the rows each branch runs on when per-sample
adaptive guidance has compacted the batch for some branches. Rows of one branch are contiguous.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from framework.core.conditions import ConditionError, Conditions, ConditionSpec, DropoutSpec, _unknown
from framework.guidance.branches import KEEP, Branch, Independent, Noised, Perturbation, Replace, TimeShift
from framework.guidance.expr import Expr, Linear, check_zero_directions
from framework.guidance.ops.base import Op
from framework.guidance.ops.cfg_pp import Renoised
from framework.guidance.ops.cost_grad import CostError, CostFn, CostGrad, cost_gradient, find_costs
from framework.guidance.ops.cost_grad import unknown_cost as _unknown_cost
from framework.guidance.spaces import SpaceConverter, SpaceError

__all__ = ["GuidanceState", "GuidedOutput", "Guider", "Perturbations", "StepStats"]

ModelFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Perturbations:
    """Which rows of a batched forward are perturbed, and how.

    Attributes:
        ids: ``[N]`` long, index into ``table`` per row, ``-1`` for unperturbed rows.
        table: the distinct perturbations of this forward.
    """

    ids: torch.Tensor
    table: tuple[Perturbation, ...]

    def rows(self, perturbation: Perturbation) -> torch.Tensor:
        """Bool ``[N]``: rows carrying ``perturbation``."""
        return self.ids == self.table.index(perturbation)

    def __iter__(self):
        for i, p in enumerate(self.table):
            yield p, self.ids == i


@dataclass
class StepStats:
    """What one guided step cost and did.

    ``nfe`` counts branch evaluations: each is one forward of the network on the whole batch
    (``B`` rows), however the branches were packed into calls. A cost term adds no NFE when its
    branch is evaluated anyway (the usual case: it reads the reference branch CFG needs).
    ``backward`` counts backward passes through the network — one per distinct
    ``(cost, branch)`` of the ``through_model=True`` terms active at this step, each over that
    one branch's ``B`` rows (about twice a forward's compute). ``cost_evals`` counts cost
    evaluations (cost forward + its gradient), one per distinct ``(cost, branch, through_model)``
    active at this step; a ``through_model=False`` term costs a cost evaluation but no backward
    pass through the network. Heun's corrector evaluations add theirs to the same step.

    Row-level counts: a branch may run on a subset of the batch (per-sample adaptive guidance
    compacts the batch for branches only some rows still need). ``row_evals`` counts the rows
    actually evaluated, summed over branches (``nfe·B`` when every branch ran on the whole
    batch), and :attr:`nfe_rows` = ``row_evals / batch`` is the exact cost in whole-batch
    evaluations; ``nfe`` counts a branch run on any rows as one. ``cached`` counts branch
    evaluations served from an exact output cache (the masked family, when no token changed),
    which are in neither ``nfe`` nor ``row_evals``.
    """

    step: int
    tau: float
    branches: tuple[str, ...]
    nfe: int  # branch evaluations (model evaluations of the batch)
    forward_calls: int  # batched forward passes actually launched
    backward: int = 0  # backward passes through the network (through_model cost terms)
    cost_evals: int = 0  # cost evaluations with their gradient (cost terms, both kinds)
    row_evals: int = 0  # rows evaluated, summed over branches
    batch: int = 0  # B, the rows of the sampled batch
    cached: int = 0  # branch evaluations reused from the exact output cache (not in nfe)
    guidance_norm: float | None = None  # mean ‖guided − unguided‖ when the reference was evaluated
    cosine: float | None = None  # mean cos(guided, unguided)
    extras: dict[str, float] = field(default_factory=dict)

    @property
    def nfe_rows(self) -> float:
        """Exact evaluations in whole-batch units: ``row_evals / batch`` (= ``nfe`` without
        per-row compaction)."""
        return self.row_evals / self.batch if self.batch else float(self.nfe)


@dataclass
class GuidedOutput:
    """The evaluated guidance of one step.

    Attributes:
        denoise: the guided prediction ``[B, ...]`` in ``space``.
        renoise: a separate prediction for re-noising (CFG++), else ``None``.
        space: the prediction space of ``denoise``/``renoise``.
        stats: per-step statistics.
        preds: raw per-branch outputs in the model's native space.
    """

    denoise: torch.Tensor
    renoise: torch.Tensor | None
    space: str
    stats: StepStats
    preds: dict[Branch, torch.Tensor]


class GuidanceState:
    """Per-run state: step counter, per-node state (momentum, switches), random source, history.

    Create a fresh one per sampling run with :meth:`Guider.new_state`. ``step`` counts sampler
    steps, not evaluations: a corrector evaluation (Heun's second stage) sees the same ``step``
    as its predictor and sets ``corrector``, so stateful operations (APG momentum, the
    adaptive switch) advance once per sampler step.
    """

    def __init__(self, generator: torch.Generator | None = None, reference: Branch | None = None) -> None:
        self.step = 0
        self.corrector = False
        self.generator = generator
        self.history: list[StepStats] = []
        self._nodes: dict[int, dict[str, Any]] = {}
        #: the expression's unguided branch: where cost terms read x̂0 unless told otherwise
        self.reference = reference
        #: filled by cost terms while the Guider plans a step (``(name, branch, through_model)``)
        self.planned_costs: dict[tuple[str, Branch, bool], CostGrad] | None = None
        #: filled by per-sample nodes while the Guider plans a step: branch → bool ``[B]`` rows
        self.planned_rows: dict[Branch, torch.Tensor] | None = None
        #: while planning inside a per-sample node: the bool ``[B]`` rows its sub-tree runs on
        self.row_scope: torch.Tensor | None = None
        #: network → (packed inputs, output) of its last forward (``Guider(reuse_unchanged=True)``)
        self.last_forward: dict[str, tuple[tuple, torch.Tensor]] = {}
        #: (network, branches) → (the step's condition batch, the branches' packed rows): reused while
        #: the batch is the same object and every branch keeps or nulls its conditions
        self.packed: dict[tuple[str, tuple[Branch, ...]], tuple[Conditions, Conditions]] = {}

    def need_rows(self, branch: Branch, rows: torch.Tensor) -> None:
        """While planning: ``branch`` is needed on the rows of bool mask ``rows`` ``[B]`` (only).

        A branch that any node needs on the whole batch (returned from ``needed``) is evaluated
        on the whole batch; otherwise on the union of the rows asked for here.
        """
        if self.planned_rows is None:
            raise RuntimeError("need_rows() is only valid while the Guider plans a step")
        if self.row_scope is not None:
            rows = rows & self.row_scope
        old = self.planned_rows.get(branch)
        self.planned_rows[branch] = rows.clone() if old is None else old | rows

    def of(self, node: Expr) -> dict[str, Any]:
        """The mutable state dict of one expression node."""
        return self._nodes.setdefault(id(node), {})

    @property
    def nfe(self) -> int:
        """Total branch evaluations so far in this run."""
        return sum(s.nfe for s in self.history)

    @property
    def backward(self) -> int:
        """Total backward passes through the network so far in this run."""
        return sum(s.backward for s in self.history)

    @property
    def nfe_rows(self) -> float:
        """Total evaluations so far in whole-batch units, counting rows exactly."""
        return sum(s.nfe_rows for s in self.history)


class _StepContext:
    """What expression nodes see while evaluating one step."""

    def __init__(self, x, t, tau, state, converter, native, preds, conditions=None, costs=None,
                 graphs=None, evaluated=None):
        self.x, self.t, self.tau, self.state = x, t, tau, state
        self.converter, self.native, self.preds = converter, native, preds
        #: branch → bool [B] rows it was evaluated on, for branches run on part of the batch
        self.evaluated: dict[Branch, torch.Tensor] = evaluated or {}
        #: the rows of the sampled batch this context sees (long [R]; all rows at the top level)
        self.batch_rows = torch.arange(x.shape[0], device=x.device)
        self.batch_size = x.shape[0]
        self.conditions, self.costs = conditions, costs or {}
        self.graphs: dict[Branch, tuple[torch.Tensor, torch.Tensor]] = graphs or {}
        self._converted: dict[tuple[Branch, str], torch.Tensor] = {}
        self._coefs: dict[int, dict[Expr, float]] = {}
        self._grads: dict[tuple[str, Branch, bool], torch.Tensor] = {}
        self.records: dict[str, float] = {}
        self.backward = 0
        self.cost_evals = 0

    def restrict(self, rows: torch.Tensor) -> _StepContext:
        """The same step seen on the rows ``rows`` (long ``[R]``, indices into this context's rows)
        only: ``x``, ``t``, conditions and
        every branch prediction evaluated on all of those rows are sliced; a branch evaluated
        on other rows only is absent (reading it raises). Records go to this context."""
        preds = {b: p[rows] for b, p in self.preds.items()
                 if b not in self.evaluated or bool(self.evaluated[b][rows].all())}
        sub = _StepContext(self.x[rows], self.t[rows], self.tau, self.state, self.converter,
                           self.native, preds,
                           self.conditions.index(rows) if self.conditions is not None else None,
                           self.costs)
        sub.records = self.records
        sub.batch_rows, sub.batch_size = self.batch_rows[rows], self.batch_size
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


def _same_inputs(a: tuple, b: tuple) -> bool:
    """Whether two packed forwards ``(x, t, conditions, perturbations)`` are exactly equal."""
    (xa, ta, ca, pa), (xb, tb, cb, pb) = a, b
    if not (torch.equal(xa, xb) and torch.equal(ta, tb)) or ca.values.keys() != cb.values.keys():
        return False
    if any(not torch.equal(ca.values[k], cb.values[k]) or not torch.equal(ca.present[k], cb.present[k])
           for k in ca.values):
        return False
    if (pa is None) != (pb is None):
        return False
    return pa is None or (pa.table == pb.table and torch.equal(pa.ids, pb.ids))


def _all_finite(v: torch.Tensor) -> bool:
    """Whether every entry of ``v`` is finite. A sum is non-finite whenever an entry is (NaN and
    ±inf propagate), so a finite sum proves it with one reduction and no mask; only a non-finite
    (or overflowing) sum needs the element-wise test."""
    return bool(torch.isfinite(v.sum())) or bool(torch.isfinite(v).all())


def _check_branch_output(branch: Branch, pred: torch.Tensor, excluding: bool, step: int, tau: float) -> None:
    """NaN and +inf are never legal; -inf only where it excludes tokens (``excluding``)."""
    if _all_finite(pred):
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
    _check_some_token_left(pred, f"branch {branch!r}", step, tau)


def _check_some_token_left(pred: torch.Tensor, what: str, step: int, tau: float) -> None:
    """A distribution whose every token is -inf has nothing to sample."""
    empty = torch.isneginf(pred).all(dim=-1)
    if bool(empty.any()):
        where = tuple(int(i) for i in empty.nonzero()[0])
        raise FloatingPointError(f"{what} marks every token -inf at index {where} (step {step}, "
                                 f"τ={tau:g}): no token is left to choose")


class Guider:
    """Evaluates a guidance expression against one or more networks, step by step.

    Args:
        expr: the guidance expression (coefficients must sum to 1; checked).
        models: a callable for ``"main"``, or a mapping network name → callable.
        native_space: the space the networks predict in (``"eps"``, ``"flow_v"``, ``"logits"``...).
        converter: the family's :class:`~framework.guidance.spaces.SpaceConverter`.
        specs: the model's condition specs; used to encode replacement values and validate
            names. Without them, names are validated against each step's batch.
        max_batch: upper bound on rows per forward call (``None``: one call per network).
        output_space: the space of the returned prediction (default ``native_space``).
        costs: cost name → ``cost(x0 [B, *shape], conditions) -> [B]`` for the expression's
            cost terms; every named cost must be here (checked). ``None`` skips the check
            (``polyguide explain`` plans without running anything).
        dropout: the model's training :class:`DropoutSpec`; when given, untrained condition
            subsets are reported (warning, or error with ``strict``).
        reuse_unchanged: when a network's packed inputs (state, time, branch conditions,
            perturbations, rows) are exactly those of its previous forward in this run, reuse
            that output instead of calling it again (the masked family: a step that committed no
            token). Exact for a deterministic network; never used when the conditioner draws CADS
            noise. Reused evaluations count in ``StepStats.cached``, not in ``nfe``.
    """

    def __init__(self, expr: Expr, models: ModelFn | Mapping[str, ModelFn], *, native_space: str,
                 converter: SpaceConverter, specs: Mapping[str, ConditionSpec] | None = None,
                 max_batch: int | None = None, output_space: str | None = None,
                 dropout: DropoutSpec | None = None, strict: bool = False,
                 costs: Mapping[str, CostFn] | None = None, reuse_unchanged: bool = False) -> None:
        if not isinstance(expr, Expr):
            raise TypeError(f"guidance must be an expression, got {type(expr).__name__}")
        self.expr = expr
        self.models = dict(models) if isinstance(models, Mapping) else {"main": models}
        self.native = native_space
        self.converter = converter
        self.specs = dict(specs) if specs is not None else None
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be ≥ 1, got {max_batch}")
        self.max_batch = max_batch
        self.reuse_unchanged = bool(reuse_unchanged)
        self.output_space = output_space or native_space
        self.costs = dict(costs) if costs is not None else None
        self._reference = expr.reference()
        self._validate()
        if dropout is not None:
            if self.specs is None:
                raise ValueError("checking guidance against a dropout spec needs the model's condition "
                                 "specs: pass specs= together with dropout=")
            if any(c.at is None for c in find_costs(expr)) and self._reference not in expr.branches():
                # cost terms read x̂0 of the reference: training must have covered it too
                expr = Linear.of((1.0, expr), (0.0, self._reference))
            dropout.check(expr, self.specs, strict=strict)
        self._replacements: dict[tuple[str, Replace], torch.Tensor] = {}

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        expr = self.expr
        expr.check()
        check_zero_directions(expr)
        for s in (self.native, self.output_space):
            if s not in self.converter.spaces:
                raise SpaceError(f"space {s!r} is not one of this family's "
                                 f"{sorted(self.converter.spaces)}")
        self._validate_costs()
        for node in expr.walk():
            if isinstance(node, Op) and node.space is not None and \
                    node.space not in self.converter.spaces:
                raise SpaceError(
                    f"{type(node).__name__} acts in {node.space!r} space, which this family "
                    f"cannot convert to from {self.native!r} (available: "
                    f"{sorted(self.converter.spaces)}): {node!r}")
            if isinstance(node, Renoised) and node is not expr:
                raise ValueError("cfg_pp (a separate renoise prediction) must be the whole "
                                 "guidance expression, not a part of it")
        for b in expr.branches():
            if b.network not in self.models:
                raise ValueError(f"branch {b!r} runs on network {b.network!r}, but only "
                                 f"{sorted(self.models)} were given")
            if self.specs is not None:
                for name in b.names:
                    if name not in self.specs:
                        raise _unknown(f"condition in branch {b!r}:", name, self.specs)
            for name, v in b.conds:
                if isinstance(v, Independent) and v.sampler == "prior":
                    spec = (self.specs or {}).get(name)
                    if spec is None or spec.kind != "categorical":
                        raise ConditionError(
                            f"branch {b!r}: independent('prior') needs a categorical spec for "
                            f"{name!r}; use independent('shuffle') for other conditions")

    def _validate_costs(self) -> None:
        nodes = find_costs(self.expr)
        if not nodes:
            return
        if "x0" not in self.converter.spaces or not self.native or self.native in ("logits", "logprobs"):
            raise SpaceError(
                f"cost guidance ({', '.join(map(repr, nodes))}) differentiates a cost of the clean "
                f"estimate x̂0, which only continuous families (diffusion, flow) predict; this family "
                f"predicts {self.native!r} over tokens, where a gradient w.r.t. discrete tokens is "
                f"not defined")
        if any(n.at is None for n in nodes) and self._reference.network not in self.models:
            raise ValueError(f"cost terms read x̂0 of the reference branch {self._reference!r}, whose "
                             f"network {self._reference.network!r} was not given")
        if self.costs is not None:
            for n in nodes:
                if n.name not in self.costs:
                    raise _unknown_cost(n.name, self.costs)

    # ------------------------------------------------------------------ running
    def new_state(self, generator: torch.Generator | None = None) -> GuidanceState:
        """Fresh per-run state (momentum buffers, switches and counters start empty)."""
        return GuidanceState(generator, reference=self._reference)

    def plan(self, tau: float, state: GuidanceState) -> dict[str, list[Branch]]:
        """Branches to evaluate at ``τ``, grouped by network, in a deterministic order."""
        return self._plan(tau, state)[0]

    def plan_costs(self, tau: float, state: GuidanceState) -> list[tuple[str, Branch, bool]]:
        """The cost gradients a step at ``τ`` computes: ``(cost name, branch read, through_model)``,
        one per distinct key (zero-weight and out-of-window terms are left out)."""
        return self._plan(tau, state)[1]

    def plan_rows(self, tau: float, state: GuidanceState) -> dict[Branch, torch.Tensor]:
        """Branches a step at ``τ`` evaluates on part of the batch only: branch → bool ``[B]``
        rows (per-sample adaptive guidance); every other planned branch runs on all rows."""
        return self._plan(tau, state)[2]

    def _plan(self, tau: float, state: GuidanceState
              ) -> tuple[dict[str, list[Branch]], list[tuple[str, Branch, bool]], dict[Branch, torch.Tensor]]:
        if state.reference is None:
            state.reference = self._reference
        state.planned_costs, state.planned_rows = {}, {}
        try:
            renoise = self.expr.renoise.needed(tau, state) if isinstance(self.expr, Renoised) else ()
            needed = self.expr.needed(tau, state) | frozenset(renoise)
            costs = sorted(state.planned_costs, key=repr)
            # whole-batch needs win over partial ones; a partial branch nobody needs is dropped
            partial = {b: r for b, r in state.planned_rows.items() if b not in needed and bool(r.any())}
        finally:
            state.planned_costs, state.planned_rows = None, None
        groups: dict[str, list[Branch]] = {}
        for b in sorted(needed | frozenset(partial), key=repr):
            groups.setdefault(b.network, []).append(b)
        return groups, costs, partial

    def step(self, x: torch.Tensor, t: torch.Tensor | float, tau: float, conditions: Conditions,
             state: GuidanceState, *, corrector: bool = False) -> GuidedOutput:
        """Evaluate the guided prediction at state ``x`` (``[B, ...]``), model time ``t``
        (``[B]`` or scalar), progress ``τ`` and a condition batch of ``B``.

        ``corrector=True`` marks a further evaluation within the sampler step just taken
        (e.g. Heun's second stage): it does not advance the step counter or per-run state,
        and its cost is added to that step's statistics.
        """
        if not corrector:
            return self._step(x, t, tau, conditions, state)
        if not state.history:
            raise RuntimeError("a corrector evaluation needs a preceding step in this run")
        state.step, state.corrector = state.step - 1, True
        try:
            return self._step(x, t, tau, conditions, state)
        finally:
            state.step, state.corrector = state.step + 1, False

    def combine(self, expr: Expr, out: GuidedOutput, x: torch.Tensor, t: torch.Tensor,
                tau: float, conditions: Conditions, state: GuidanceState,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        """Another expression over the branch outputs of a step already taken, without evaluating
        any network (e.g. the same family at other weights, for guidance distillation).

        Args:
            expr: an expression whose branches are among ``out.preds`` (checked).
            out: the :meth:`step` output at ``x`` ``[B, ...]``, ``t`` ``[B]``, ``conditions`` (B rows).
            state: the state its stateful operations read (pass a fresh one for a first step).
            rows: long ``[R]``: combine on these rows only (``None``: all ``B``).

        Returns:
            ``expr``'s prediction ``[R, ...]`` (or ``[B, ...]``) in this guider's output space.
        """
        if find_costs(expr):
            raise ValueError(f"cannot combine {expr!r} from a step's outputs: its cost terms need their own "
                             f"gradients (evaluate it with step)")
        missing = sorted((b for b in expr.needed(tau, state) if b not in out.preds), key=repr)
        if missing:
            raise ValueError(f"cannot combine {expr!r} from the step's branches: {missing[0]!r} was not "
                             f"evaluated (evaluated: {sorted(map(repr, out.preds))})")
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        ctx = _StepContext(x, t, tau, state, self.converter, self.native, out.preds, conditions, self.costs)
        if rows is not None:
            ctx = ctx.restrict(rows)
        return expr.value(ctx, self.output_space)

    def _step(self, x: torch.Tensor, t: torch.Tensor | float, tau: float, conditions: Conditions,
              state: GuidanceState) -> GuidedOutput:
        B = x.shape[0]
        t = torch.as_tensor(t, device=x.device)
        t = t.expand(B) if t.ndim == 0 else t
        if t.shape != (B,):
            raise ValueError(f"t must be a scalar or shape ({B},), got {tuple(t.shape)}")
        if conditions.batch_size not in (B, 0):
            raise ConditionError(f"conditions have batch size {conditions.batch_size}, x has {B}")
        if self.specs is None:
            for b in self.expr.branches():
                for name in b.names:
                    if name not in conditions.values:
                        raise _unknown(f"condition in branch {b!r}:", name, conditions.values)

        self.expr.check(taus=(tau,))  # weights are arbitrary callables of τ: check the τ actually used
        groups, costs, partial = self._plan(tau, state)
        if costs and self.costs is None:
            raise CostError(f"the guidance has cost terms {sorted({c[0] for c in costs})} but the "
                            f"Guider was given no costs=")
        needs_graph = {b for _, b, through in costs if through}
        preds: dict[Branch, torch.Tensor] = {}
        graphs: dict[Branch, tuple[torch.Tensor, torch.Tensor]] = {}
        calls = 0
        cached: set[Branch] = set()  # served by the exact output cache, not evaluated
        shuffle: dict[int, torch.Tensor] = {}  # one ICG permutation per step, shared by all conditions
        evaluated = {b: r for b, r in partial.items()}
        rows_of = {b: r.nonzero().squeeze(1) for b, r in partial.items()}
        for network, branches in groups.items():
            plain = [b for b in branches if b not in needs_graph]
            if plain:  # without a graph when others need one; else the caller's grad mode holds
                rows = [rows_of.get(b) for b in plain]
                compact = {"branch_rows": rows} if any(r is not None for r in rows) else {}
                with torch.no_grad() if needs_graph else contextlib.nullcontext():
                    out, n_calls = self._forward(network, plain, x, t, tau, conditions, state, shuffle,
                                                 **compact)
                calls += n_calls
                if n_calls == 0:
                    cached.update(plain)
                lo = 0
                for b, r in zip(plain, rows, strict=True):
                    n = B if r is None else r.numel()
                    if r is None:
                        preds[b] = out[lo:lo + n]
                    else:  # rows not evaluated are NaN: reading them by mistake cannot pass silently
                        preds[b] = out.new_full((B, *out.shape[1:]), float("nan"))
                        preds[b][r] = out[lo:lo + n]
                    lo += n
            graph = [b for b in branches if b in needs_graph]
            if graph:  # their own forward under autograd, so the plain branches keep no graph
                with torch.enable_grad():
                    xg = x.detach().requires_grad_(True)
                    out, n_calls = self._forward(network, graph, xg, t, tau, conditions, state, shuffle)
                    for i, b in enumerate(graph):  # sliced under autograd: a slice keeps the graph
                        graphs[b] = (out[i * B:(i + 1) * B], xg)
                        preds[b] = graphs[b][0].detach()
                calls += n_calls

        excluding = self.converter.allows_neg_inf  # logits: -inf marks a token never to choose
        for b, p in preds.items():
            _check_branch_output(b, p if b not in evaluated else p[evaluated[b]], excluding,
                                 state.step, tau)
        ctx = _StepContext(x, t, tau, state, self.converter, self.native, preds, conditions,
                           self.costs, graphs, evaluated)
        guided = self.expr.value(ctx, self.output_space)
        renoise = (self.expr.renoise.value(ctx, self.output_space)
                   if isinstance(self.expr, Renoised) else None)
        if not _all_finite(guided):
            if not excluding or bool(torch.isnan(guided).any() | torch.isposinf(guided).any()):
                raise FloatingPointError(
                    f"guided prediction at step {state.step} (τ={tau:g}) is not finite, though every "
                    f"branch output was {'finite or -inf' if excluding else 'finite'}: converting "
                    f"between spaces or combining {self.expr!r} overflowed at t={t[0].item():g}")
            _check_some_token_left(guided, f"the guided prediction of {self.expr!r}", state.step, tau)
        stats = StepStats(step=state.step, tau=float(tau),
                          branches=tuple(repr(b) for bs in groups.values() for b in bs),
                          nfe=len(preds) - len(cached), forward_calls=calls, backward=ctx.backward,
                          cost_evals=ctx.cost_evals, extras=ctx.records,
                          row_evals=sum(B if b not in rows_of else rows_of[b].numel()
                                        for b in preds if b not in cached),
                          batch=B, cached=len(cached))
        if self._reference in preds:
            ref = ctx.pred(self._reference, self.output_space)
            g, r = guided.reshape(B, -1).float(), ref.reshape(B, -1).float()
            if excluding:  # statistics over the tokens both allow
                both = torch.isfinite(g) & torch.isfinite(r)
                g, r = g.where(both, 0.0), r.where(both, 0.0)
            stats.guidance_norm = float((g - r).norm(dim=1).mean())
            stats.cosine = float(torch.nn.functional.cosine_similarity(g, r, dim=1).mean())
        if state.corrector:
            last = state.history[-1]
            last.nfe, last.forward_calls = last.nfe + stats.nfe, last.forward_calls + stats.forward_calls
            last.row_evals += stats.row_evals
            last.cached += stats.cached
            last.backward += stats.backward
            last.cost_evals += stats.cost_evals
            stats = last
        else:
            state.history.append(stats)
            state.step += 1
        return GuidedOutput(guided, renoise, self.output_space, stats, preds)

    # ------------------------------------------------------------------ batching
    def _forward(self, network: str, branches: list[Branch], x: torch.Tensor, t: torch.Tensor,
                 tau: float, conditions: Conditions, state: GuidanceState,
                 shuffle: dict[int, torch.Tensor], branch_rows: list[torch.Tensor | None] | None = None
                 ) -> tuple[torch.Tensor, int]:
        """One batched forward of every branch of one network → ``[Σ_b rows_b, ...]``, branch by
        branch: ``B`` rows each, or the rows ``branch_rows[i]`` (long indices) of branch ``i``."""
        B, k = x.shape[0], len(branches)
        branch_rows = branch_rows or [None] * k
        compact = any(r is not None for r in branch_rows)
        counts = torch.tensor([B if r is None else r.numel() for r in branch_rows])
        if not compact:
            xs = x if k == 1 else x.repeat(k, *[1] * (x.ndim - 1))
            ts = t if k == 1 else t.repeat(k)
        else:
            xs = torch.cat([x if r is None else x[r] for r in branch_rows])
            ts = torch.cat([t if r is None else t[r] for r in branch_rows])
        shifts = [b.perturbation.delta if isinstance(b.perturbation, TimeShift) else 0.0
                  for b in branches]
        if any(shifts):
            ts = ts + torch.tensor(shifts, dtype=ts.dtype if ts.is_floating_point() else
                                   torch.float32, device=ts.device).repeat_interleave(counts.to(ts.device))
            if self.converter.time_range is not None:  # e.g. t + 50 past the last diffusion step
                ts = ts.clamp(*self.converter.time_range)
        # whole-batch conditions first, then the rows: ICG shuffles and prior draws do not
        # depend on which rows a branch runs on
        conds = self._packed_conditions(network, branches, branch_rows, conditions, tau, state, shuffle)
        table = tuple(dict.fromkeys(b.perturbation for b in branches
                                    if b.perturbation is not None
                                    and not isinstance(b.perturbation, TimeShift)))
        perturb = None
        if table:
            ids = torch.tensor([table.index(b.perturbation) if b.perturbation in table else -1
                                for b in branches], device=x.device).repeat_interleave(counts.to(x.device))
            perturb = Perturbations(ids, table)
        inputs = (xs, ts, conds, perturb)
        reuse = self.reuse_unchanged and not conds.cads and not torch.is_grad_enabled()
        if reuse and network in state.last_forward and _same_inputs(state.last_forward[network][0], inputs):
            return state.last_forward[network][1], 0  # 0 calls: nothing was evaluated
        model = self.models[network]
        rows = int(counts.sum())
        step = self.max_batch or rows
        aware = {}
        if getattr(model, "branch_aware", False):
            # the network keeps per-branch state (e.g. KV caches) and must see whole branches
            if step < rows:
                raise ValueError(f"network {network!r} keeps per-branch state (KV caches) and cannot be "
                                 f"chunked: max_batch={self.max_batch} < {rows} rows")
            aware["branches"] = tuple(branches)
            if compact:
                if not getattr(model, "row_aware", False):
                    raise ValueError(f"network {network!r} keeps per-branch state but cannot follow "
                                     f"branches evaluated on part of the batch (per-sample adaptive "
                                     f"guidance); give it a row_aware rows= argument, or use "
                                     f"adaptive(..., per_sample=False)")
                full = torch.arange(B, device=x.device)
                aware["rows"] = tuple(full if r is None else r for r in branch_rows)
        outs = []
        for lo in range(0, rows, step):
            hi = min(rows, lo + step)
            sl = slice(lo, hi)
            kwargs = dict(aware)
            if perturb is not None:
                kwargs["perturbations"] = Perturbations(perturb.ids[sl], perturb.table)
            c = conds if (lo, hi) == (0, rows) else conds.index(sl)
            try:
                out = model(xs[sl], ts[sl], c, **kwargs)
            except TypeError as e:
                if perturb is not None and "perturbations" in str(e):
                    raise TypeError(f"network {network!r} does not accept perturbations, but "
                                    f"branches {[repr(b) for b in branches if b.perturbation]} "
                                    f"need them: {e}") from e
                raise
            if out.shape[0] != hi - lo:
                raise ValueError(f"network {network!r} returned {out.shape[0]} rows for a batch "
                                 f"of {hi - lo} (branches {[repr(b) for b in branches]})")
            outs.append(out)
        out = outs[0] if len(outs) == 1 else torch.cat(outs)
        if reuse:
            state.last_forward[network] = (inputs, out)
        return out, len(outs)

    def _packed_conditions(self, network: str, branches: list[Branch],
                           branch_rows: list[torch.Tensor | None], conditions: Conditions, tau: float,
                           state: GuidanceState, shuffle: dict[int, torch.Tensor]) -> Conditions:
        """The branches' condition batches, concatenated (``[Σ_b rows_b]``). Every step of a run that
        passes the same ``conditions`` object with the same branches on all rows, each keeping or
        nulling its conditions (nothing drawn, replaced or varying with τ), gets the same packed
        object: built once per run, and networks may cache what they derive from it by identity."""
        static = all(r is None for r in branch_rows) and all(
            b.value_of(name) in (None, KEEP) for b in branches for name in conditions.names)
        key = (network, tuple(branches))
        if static and key in state.packed and state.packed[key][0] is conditions:
            return state.packed[key][1]
        parts = [self._branch_conditions(b, conditions, tau, state, shuffle) for b in branches]
        conds = Conditions.cat([c if r is None else c.index(r)
                                for c, r in zip(parts, branch_rows, strict=True)])
        if static:
            state.packed[key] = (conditions, conds)
        return conds

    def _branch_conditions(self, branch: Branch, conds: Conditions, tau: float,
                           state: GuidanceState, shuffle: dict[int, torch.Tensor]) -> Conditions:
        """The condition batch one branch sees: kept, replaced, independent, noised or null."""
        B = conds.batch_size
        values, present, cads = dict(conds.values), {}, {}
        for name in conds.names:
            v = branch.value_of(name)
            dev = conds.values[name].device
            if v is None:
                present[name] = torch.zeros(B, dtype=torch.bool, device=dev)
            elif v is KEEP:
                present[name] = conds.present[name]
            elif isinstance(v, Replace):
                values[name] = self._replacement(name, v, conds.values[name])
                present[name] = torch.ones(B, dtype=torch.bool, device=dev)
            elif isinstance(v, Independent):
                values[name], present[name] = self._independent(name, v, conds, state, shuffle)
            elif isinstance(v, Noised):
                present[name] = conds.present[name]
                g = min(max(v.gamma(tau), 0.0), 1.0)
                cads[name] = torch.tensor([[g ** 0.5, v.s, v.psi]], device=dev).expand(B, 3)
        return Conditions(values, present, cads, state.generator)

    def _replacement(self, name: str, rep: Replace, like: torch.Tensor) -> torch.Tensor:
        key = (name, rep)
        if key not in self._replacements:
            if isinstance(rep.value, torch.Tensor):
                value = rep.value
            elif self.specs is not None:
                value = self.specs[name].encode(rep.value, 1)[0]
            else:
                value = torch.as_tensor(rep.value)
            self._replacements[key] = value.to(like.device)
        value = self._replacements[key]
        if value.shape == like.shape:
            return value.to(like.dtype)
        if value.shape != like.shape[1:]:
            raise ConditionError(f"replacement for condition {name!r} has shape "
                                 f"{tuple(value.shape)}; one sample's value has shape "
                                 f"{tuple(like.shape[1:])}")
        return value.to(like.dtype).expand_as(like)

    def _independent(self, name: str, ind: Independent, conds: Conditions, state: GuidanceState,
                     shuffle: dict[int, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        B = conds.batch_size
        value, present = conds.values[name], conds.present[name]
        if ind.sampler == "prior":
            n = len(self.specs[name].labels)
            draw = torch.randint(n, (B,), generator=state.generator).to(value.device)
            return draw, torch.ones_like(present)
        if B < 2:
            raise ConditionError(f"ICG: independent('shuffle') for {name!r} needs a batch of at "
                                 f"least 2 samples to shuffle; use independent('prior')")
        # a random cyclic shift is a derangement: no sample keeps its own condition. One shift per
        # step for every shuffled condition, so together they come from one other sample.
        if B not in shuffle:
            shift = int(torch.randint(1, B, (1,), generator=state.generator))
            shuffle[B] = (torch.arange(B) + shift) % B
        perm = shuffle[B]
        return value[perm.to(value.device)], present[perm.to(present.device)]


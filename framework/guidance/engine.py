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
from collections.abc import Mapping

import torch

from framework.core.conditions import ConditionError, Conditions, ConditionSpec, unknown_error
from framework.core.dropout import DropoutSpec
from framework.guidance.batching import BranchBatching, ModelFn
from framework.guidance.branches import Branch, Independent, Replace
from framework.guidance.context import StepContext, all_finite, check_branch_output, check_some_token_left
from framework.guidance.expr import Expr, Linear, check_zero_directions
from framework.guidance.ops.base import Op
from framework.guidance.ops.cfg_pp import Renoised
from framework.guidance.ops.cost_grad import CostError, CostFn, find_costs
from framework.guidance.ops.cost_grad import unknown_cost as _unknown_cost
from framework.guidance.spaces import SpaceConverter, SpaceError
from framework.guidance.state import GuidanceState, GuidedOutput, Perturbations, StepStats, statistics_enabled

__all__ = ["GuidanceState", "GuidedOutput", "Guider", "Perturbations", "StepStats"]


class Guider(BranchBatching):
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
        self._names: dict[Branch, str] = {}  # repr of each branch, made once (plans sort by it)
        # a sum of branches (CFG, nested, negative prompts...) is finite only if every branch it
        # evaluates is: the branch outputs are checked only when the guided prediction is not
        self._defer_checks = all(isinstance(n, (Linear, Branch)) for n in expr.walk())
        # with constant weights too, every step plans the same branches and the mass cannot change
        self._static = self._defer_checks and all(
            w.constant is not None for n in expr.walk() if isinstance(n, Linear) for w, _ in n.terms)
        self._static_plan: tuple[dict[str, list[Branch]], list, dict] | None = None

    def _name(self, branch: Branch) -> str:
        name = self._names.get(branch)
        if name is None:
            name = self._names[branch] = repr(branch)
        return name

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
                        raise unknown_error(f"condition in branch {b!r}:", name, self.specs)
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
        return {net: list(bs) for net, bs in self._plan(tau, state)[0].items()}

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
        if self._static and self._static_plan is not None:
            return self._static_plan
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
        for b in sorted(needed | frozenset(partial), key=self._name):
            groups.setdefault(b.network, []).append(b)
        if self._static:
            self._static_plan = (groups, costs, partial)
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
        ctx = StepContext(x, t, tau, state, self.converter, self.native, out.preds, conditions, self.costs)
        if rows is not None:
            ctx = ctx.restrict(rows)
        return expr.value(ctx, self.output_space)

    def _step(self, x: torch.Tensor, t: torch.Tensor | float, tau: float, conditions: Conditions,
              state: GuidanceState) -> GuidedOutput:
        B = x.shape[0]
        if not isinstance(t, torch.Tensor) or t.device != x.device:
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
                        raise unknown_error(f"condition in branch {b!r}:", name, conditions.values)

        if not self._static:  # weights are arbitrary callables of τ: check the τ actually used
            self.expr.check(taus=(tau,))
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
        unchecked: list[tuple[torch.Tensor, list[Branch], list[torch.Tensor | None]]] = []
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
                if self._defer_checks:
                    unchecked.append((out, plain, rows))
                else:
                    self._check_outputs(out, plain, rows, B, state, tau)
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
                    self._check_outputs(out.detach(), graph, [None] * len(graph), B, state, tau)
                    for i, b in enumerate(graph):  # sliced under autograd: a slice keeps the graph
                        graphs[b] = (out[i * B:(i + 1) * B], xg)
                        preds[b] = graphs[b][0].detach()
                calls += n_calls

        excluding = self.converter.allows_neg_inf  # logits: -inf marks a token never to choose
        ctx = StepContext(x, t, tau, state, self.converter, self.native, preds, conditions,
                           self.costs, graphs, evaluated)
        try:
            guided = self.expr.value(ctx, self.output_space)
        except FloatingPointError:
            for args in unchecked:  # a bad branch output is the first error to report
                self._check_outputs(*args, B, state, tau)
            raise
        renoise = (self.expr.renoise.value(ctx, self.output_space)
                   if isinstance(self.expr, Renoised) else None)
        if guided is not ctx.known_finite and not all_finite(guided):
            for args in unchecked:
                self._check_outputs(*args, B, state, tau)
            if not excluding or bool(torch.isnan(guided).any() | torch.isposinf(guided).any()):
                raise FloatingPointError(
                    f"guided prediction at step {state.step} (τ={tau:g}) is not finite, though every "
                    f"branch output was {'finite or -inf' if excluding else 'finite'}: converting "
                    f"between spaces or combining {self.expr!r} overflowed at t={t[0].item():g}")
            check_some_token_left(guided, f"the guided prediction of {self.expr!r}", state.step, tau)
        stats = StepStats(step=state.step, tau=float(tau),
                          branches=tuple(self._name(b) for bs in groups.values() for b in bs),
                          nfe=len(preds) - len(cached), forward_calls=calls, backward=ctx.backward,
                          cost_evals=ctx.cost_evals, extras=ctx.records,
                          row_evals=sum(B if b not in rows_of else rows_of[b].numel()
                                        for b in preds if b not in cached),
                          batch=B, cached=len(cached))
        if self._reference in preds and statistics_enabled():
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

    def _check_outputs(self, out: torch.Tensor, branches: list[Branch], rows: list[torch.Tensor | None],
                       batch: int, state: GuidanceState, tau: float) -> None:
        """One batched forward's output ``[Σ_b rows_b, ...]`` holds no NaN / +inf (nor -inf outside
        logit spaces): one reduction for the whole forward; only a failing one is checked branch by
        branch, to name the branch."""
        if all_finite(out):
            return
        if self.converter.allows_neg_inf and not bool(torch.isnan(out).any() | torch.isposinf(out).any()) \
                and not bool(torch.isneginf(out).all(dim=-1).any()):
            return  # only -inf, which excludes tokens, and every distribution keeps some token
        lo, B = 0, batch
        for b, r in zip(branches, rows, strict=True):
            n = B if r is None else r.numel()
            check_branch_output(b, out[lo:lo + n], self.converter.allows_neg_inf, state.step, tau)
            lo += n

"""Per-step results and per-run state of the guidance engine: which rows a forward perturbs
(:class:`Perturbations`, what networks receive), the statistics of a step (:class:`StepStats`),
its output (:class:`GuidedOutput`) and the state one sampling run carries (:class:`GuidanceState`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from framework.guidance.branches import Branch, Perturbation

if TYPE_CHECKING:
    from framework.core.conditions import Conditions
    from framework.guidance.expr import Expr
    from framework.guidance.ops.cost_grad import CostGrad

__all__ = ["GuidanceState", "GuidedOutput", "Perturbations", "StepStats", "statistics_enabled",
           "step_statistics"]

_STATISTICS: ContextVar[bool] = ContextVar("guidance_step_statistics", default=True)


@contextlib.contextmanager
def step_statistics(enabled: bool) -> Iterator[None]:
    """Within the block, guided steps compute (``True``, the default) or skip (``False``) the
    comparison of the guided and unguided predictions (:attr:`StepStats.guidance_norm`,
    :attr:`StepStats.cosine`, left ``None``): a few full-size reductions and a host sync per step
    that nothing in sampling needs. The counts (NFE, rows, calls) are always kept."""
    token = _STATISTICS.set(bool(enabled))
    try:
        yield
    finally:
        _STATISTICS.reset(token)


def statistics_enabled() -> bool:
    """Whether guided steps compute the guided-vs-unguided statistics here (:func:`step_statistics`)."""
    return _STATISTICS.get()


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
    #: mean ‖guided − unguided‖ when the reference was evaluated (``None`` under ``step_statistics(False)``)
    guidance_norm: float | None = None
    cosine: float | None = None  # mean cos(guided, unguided), likewise
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
